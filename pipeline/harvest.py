"""harvest: Reddit submissions -> one row per normalized outbound URL.

Rules (defaults reproduce WebText/OpenWebText; see docs/HARVEST.md for each default and its source): score >= 3,
created before 2017-12-01, no self posts, no NSFW, http(s) only, media/social hosts and non-HTML file extensions
blocked. Two Ray phases: map (one task per dump file: parse, apply rules, merge within the file, tag each URL
with a hash bucket) then reduce (one task per bucket: merge the same URL across files, decide, write a shard).
"""

from __future__ import annotations

import gc
import itertools
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from pipeline.config import StageConfig
from pipeline.dataset import Dataset, shard_name, write_parquet
from pipeline.dumps import DumpReader, expand_inputs
from pipeline.errors import PipelineError
from pipeline.stage import ShardTask, StageRun, combined_fingerprint, finish_shard
from pipeline.urls import parse_url, registered_domain, url_hash

MONTHS = re.compile(r"^(\d{4})-(\d{2})\.\.(\d{4})-(\d{2})$")
FILE_MONTH = re.compile(r"(\d{4})-(\d{2})")


class HarvestConfig(StageConfig):
    input: list[str] = Field(description="dump files, directories or globs")
    output: str
    months: str | None = None  # e.g. "2005-06..2017-11": only dumps whose name carries a month in the range
    min_score: int = 3  # WebText: "at least 3 karma"
    score_mode: Literal["per_submission", "summed"] = "per_submission"  # OpenWebText / OpenWebText2
    created_before: date = date(2017, 12, 1)  # WebText: links up to December 2017
    drop_self_posts: bool = True
    drop_nsfw: bool = True  # OpenWebText skipped over_18 submissions; false keeps them
    num_shards: int = Field(16, ge=1, le=100_000)
    # A map task writes its URLs out in parts of at most this many, so a 40M-line month fits a worker's memory.
    max_urls_in_memory: int = Field(1_000_000, ge=1)
    blocked_domains: str | None = None  # a file, one domain per line; None = pipeline/data/blocked_domains.txt
    blocked_extensions: str | None = None  # likewise, pipeline/data/blocked_extensions.txt

    transport_keys = frozenset({"max_urls_in_memory"})  # changes the intermediate parts, not the output

    @field_validator("months")
    @classmethod
    def _months(cls, v: str | None) -> str | None:
        if v is not None and not MONTHS.match(v):
            raise ValueError("must look like 2005-06..2017-11")
        return v


LINK_SCHEMA = pa.schema(
    [
        ("url_hash", pa.string()),
        ("url", pa.string()),
        ("domain", pa.string()),  # the host
        ("registered_domain", pa.string()),  # public-suffix aware: bbc.co.uk for news.bbc.co.uk
        ("score", pa.int64()),  # what the min_score rule judged: best submission score, or the sum (score_mode)
        ("score_sum", pa.int64()),
        ("n_submissions", pa.int64()),
        ("first_created_utc", pa.int64()),
        ("submission_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
    ]
)
MAP_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("domain", pa.string()),
        ("score_max", pa.int64()),
        ("score_sum", pa.int64()),
        ("n_submissions", pa.int64()),
        ("first_created_utc", pa.int64()),
        ("submission_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
        ("bucket", pa.int32()),
    ]
)


def _read_list(path: str | None, bundled: str) -> frozenset[str]:
    text = Path(path).read_text() if path else resources.files("pipeline.data").joinpath(bundled).read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=8)
def blocklists(domains_file: str | None, extensions_file: str | None) -> tuple[frozenset[str], frozenset[str]]:
    return _read_list(domains_file, "blocked_domains.txt"), _read_list(extensions_file, "blocked_extensions.txt")


def domain_blocked(host: str, blocked: frozenset[str]) -> bool:
    """The host or any parent domain is listed (i.imgur.com matches imgur.com)."""
    while True:
        if host in blocked:
            return True
        dot = host.find(".")
        if dot < 0:
            return False
        host = host[dot + 1 :]


def extension_blocked(path: str, blocked: frozenset[str]) -> bool:
    last = path.rsplit("/", 1)[-1]
    return "." in last and last.rsplit(".", 1)[-1].lower() in blocked


def parse_created(value: Any) -> int | None:
    """created_utc is an int in most months, a string in 2014-01..2015-11, sometimes a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


class SubmissionRules:
    """Decides, per submission, keep (with its normalized URL and host) or drop with a reason."""

    def __init__(self, cfg: HarvestConfig):
        self.cfg = cfg
        self.cutoff = int(datetime(*cfg.created_before.timetuple()[:3], tzinfo=timezone.utc).timestamp())
        self.per_submission = cfg.score_mode == "per_submission"
        # Plain attributes: judge() runs for every line of every dump.
        self.drop_self, self.drop_nsfw, self.min_score = cfg.drop_self_posts, cfg.drop_nsfw, cfg.min_score
        self.blocked_domains, self.blocked_extensions = blocklists(cfg.blocked_domains, cfg.blocked_extensions)
        # The same URL is posted again and again (reposts, crossposts): normalize each raw string once.
        self._seen: dict[str, tuple[str, str] | str] = {}

    def judge(self, rec: Any) -> tuple[str | None, str | None, str | None]:
        """(normalized_url, host, None) to keep, or (None, None, reason) to drop."""
        if type(rec) is not dict:
            return None, None, "not_an_object"
        get = rec.get
        if self.drop_self and get("is_self"):
            return None, None, "self_post"
        score = get("score")
        if type(score) is not int:  # also refuses bools, which are ints to isinstance
            return None, None, "no_score"
        if self.per_submission and score < self.min_score:
            return None, None, "low_score"
        created = get("created_utc")
        if type(created) is not int:
            created = parse_created(created)
            if created is None:
                return None, None, "no_created_utc"
        if created >= self.cutoff:
            return None, None, "after_cutoff"
        if self.drop_nsfw and get("over_18"):
            return None, None, "nsfw"
        raw = get("url")
        if type(raw) is not str or not raw or raw.isspace():
            return None, None, "no_url"
        seen = self._seen.get(raw)
        if seen is None:
            seen = self._classify(raw)
            if len(self._seen) > 2_000_000:  # bound memory on a 40M-line month
                self._seen.clear()
            self._seen[raw] = seen
        if isinstance(seen, str):
            return None, None, seen
        return seen[0], seen[1], None

    def _classify(self, raw: str) -> tuple[str, str] | str:
        # Most media links are decided by their host alone: look at it before paying for a full parse.
        rough = ""
        if raw[:8].lower().startswith(("http://", "https://")):
            rough = raw.split("/", 3)[2].rpartition("@")[2].partition(":")[0].lower()
            if domain_blocked(rough, self.blocked_domains):
                return "blocked_domain"
        try:
            u = parse_url(raw)
            if u is None:
                return "not_http_url"
            host = (u.raw_host or "").lower()
            if host != rough and domain_blocked(host, self.blocked_domains):
                return "blocked_domain"
            if extension_blocked(u.raw_path, self.blocked_extensions):
                return "blocked_extension"
            return str(u), host
        except ValueError:  # yarl validates ports and hosts lazily
            return "not_http_url"


def harvest_lines(
    lines: Iterable[bytes],
    rules: SubmissionRules,
    source: str,
    drops: Counter,
    notes: Counter,
    examples: list[str],
    spill: Callable[[dict[str, dict[str, Any]]], None] | None = None,
    max_urls: int = 0,
) -> dict[str, dict[str, Any]]:
    """Pure core: lines -> {url: aggregate}. Bad lines are counted, the first few named. With `spill`, every time
    `max_urls` URLs are held they are handed to it and forgotten (the reduce merges the parts)."""
    # The aggregates are acyclic dicts and sets, freed by reference counting: the cyclic collector would only
    # rescan the growing heap again and again (about 8% of the time on a million lines).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        links: dict[str, dict[str, Any]] = {}
        parsed = 0
        for lineno, line in enumerate(lines, start=1):
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                rec = _repair(line)
                if rec is None:
                    if not line.strip():
                        drops["blank_line"] += 1
                        continue
                    drops["bad_json"] += 1
                    if len(examples) < 5:
                        examples.append(f"{source}:{lineno}: bad JSON ({e})")
                    continue
                notes["repaired_utf8"] += 1
            parsed += 1
            url, host, reason = rules.judge(rec)
            if url is None:
                drops[reason] += 1  # type: ignore[index]
                continue
            score, created, sub = rec["score"], rec["created_utc"], rec.get("subreddit")
            if type(created) is not int:
                created = parse_created(created)
            sid, sub = str(rec.get("id") or ""), (str(sub) if sub else "")
            agg = links.get(url)
            if agg is None:  # merge_link's work, inlined for the common first sighting
                links[url] = {
                    "host": host,
                    "max": score,
                    "sum": score,
                    "n": 1,
                    "created": created,
                    "ids": {sid},
                    "subs": {sub},
                }
            else:
                merge_link(links, url, host, score, score, 1, created, [sid], [sub])
            if spill is not None and len(links) >= max_urls:
                spill(links)
                links = {}
        notes["parsed"] += parsed
        return links
    finally:
        if gc_was_enabled:
            gc.enable()


def _repair(line: bytes) -> Any:
    """Lines with invalid UTF-8 bytes (seen in real dumps): parse with the bad bytes replaced."""
    try:
        return orjson.loads(line.decode("utf-8", errors="replace"))
    except orjson.JSONDecodeError:
        return None


def merge_link(
    links: dict[str, dict[str, Any]],
    url: str,
    host: str,
    score_max: int,
    score_sum: int,
    n: int,
    created: int,
    ids: list[str],
    subs: list[str],
) -> None:
    """Fold one sighting (or an already merged group) of `url` into `links`."""
    agg = links.get(url)
    if agg is None:
        links[url] = {
            "host": host,
            "max": score_max,
            "sum": score_sum,
            "n": n,
            "created": created,
            "ids": set(ids),
            "subs": set(subs),
        }
    else:
        agg["max"] = max(agg["max"], score_max)
        agg["sum"] += score_sum
        agg["n"] += n
        agg["created"] = min(agg["created"], created)
        agg["ids"].update(ids)
        agg["subs"].update(subs)


def _lists(links: dict[str, dict[str, Any]], urls: list[str], key: str) -> list[list[str]]:
    out = []
    for u in urls:
        values = links[u][key]
        if len(values) == 1:  # the common case: one submission, one subreddit; no sort needed
            (x,) = values
            out.append([x] if x else [])
        else:
            out.append(sorted(x for x in values if x))
    return out


def bucket_of(url: str, num_shards: int) -> int:
    """Which reduce task merges this URL: any stable hash will do, and crc32 is the cheapest in the stdlib."""
    return zlib.crc32(url.encode()) % num_shards


def map_table(links: dict[str, dict[str, Any]], num_shards: int) -> pa.Table:
    # Sorted by (bucket, url): each bucket is a contiguous run of row groups, so a reduce task's
    # `bucket == b` filter skips the other buckets' row groups by their statistics instead of reading them.
    keyed = sorted((bucket_of(u, num_shards), u) for u in links)
    urls = [u for _, u in keyed]
    return pa.table(
        {
            "url": urls,
            "domain": [links[u]["host"] for u in urls],
            "score_max": [links[u]["max"] for u in urls],
            "score_sum": [links[u]["sum"] for u in urls],
            "n_submissions": [links[u]["n"] for u in urls],
            "first_created_utc": [links[u]["created"] for u in urls],
            "submission_ids": _lists(links, urls, "ids"),
            "subreddits": _lists(links, urls, "subs"),
            "bucket": [b for b, _ in keyed],
        },
        schema=MAP_SCHEMA,
    )


def links_table(links: dict[str, dict[str, Any]], score_mode: str = "per_submission") -> pa.Table:
    urls = sorted(links)
    return pa.table(
        {
            "url_hash": [url_hash(u) for u in urls],
            "url": urls,
            "domain": [links[u]["host"] for u in urls],
            "registered_domain": [registered_domain(links[u]["host"]) for u in urls],
            "score": [links[u]["max" if score_mode == "per_submission" else "sum"] for u in urls],
            "score_sum": [links[u]["sum"] for u in urls],
            "n_submissions": [links[u]["n"] for u in urls],
            "first_created_utc": [links[u]["created"] for u in urls],
            "submission_ids": _lists(links, urls, "ids"),
            "subreddits": _lists(links, urls, "subs"),
        },
        schema=LINK_SCHEMA,
    )


PROGRESS_EVERY_S = 30.0


def _reporting(reader: DumpReader, name: str) -> Iterator[list[bytes]]:
    """A month is minutes of work for one task: say how far it got every so often (Ray forwards it to the driver)."""
    start = last = time.monotonic()
    for batch in reader.batches():
        yield batch
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            print(
                f"harvest: {name}: {reader.lines:,} lines, {reader.lines / (now - start):,.0f} lines/s",
                file=sys.stderr,
                flush=True,
            )


def map_dump(task: ShardTask) -> dict[str, Any]:
    cfg: HarvestConfig = task.config
    (path,) = task.inputs
    reader = DumpReader(path)
    drops: Counter = Counter()
    notes: Counter = Counter()
    examples: list[str] = []
    parts: list[Path] = []
    kept = 0

    def spill(links: dict[str, dict[str, Any]]) -> None:
        nonlocal kept
        part = Path(task.output) / "_map" / f"{task.name}.{len(parts):04d}.parquet"
        write_parquet(map_table(links, cfg.num_shards), part)
        parts.append(part)
        kept += sum(v["n"] for v in links.values())

    lines = itertools.chain.from_iterable(_reporting(reader, Path(path).name))
    rest = harvest_lines(
        lines, SubmissionRules(cfg), Path(path).name, drops, notes, examples, spill, cfg.max_urls_in_memory
    )
    if rest or not parts:
        spill(rest)
    return finish_shard(
        task,
        parts,
        rows_in=reader.lines,
        rows_out=kept,
        drops=drops,
        records_dir="_map",
        extra={
            "dump": {"name": Path(path).name, "sha256": reader.sha256, "bytes": reader.bytes},
            "lines_parsed": notes["parsed"],
            "repaired_utf8": notes["repaired_utf8"],
            "examples": examples,
        },
    )


def reduce_bucket(task: ShardTask) -> dict[str, Any]:
    cfg: HarvestConfig = task.config
    links: dict[str, dict[str, Any]] = {}
    for part in task.inputs:
        for r in pq.read_table(part, filters=[("bucket", "=", task.extra["bucket"])]).to_pylist():
            merge_link(
                links,
                r["url"],
                r["domain"],
                r["score_max"],
                r["score_sum"],
                r["n_submissions"],
                r["first_created_utc"],
                r["submission_ids"],
                r["subreddits"],
            )
    rows_in = sum(v["n"] for v in links.values())
    drops: Counter = Counter()
    if cfg.score_mode == "summed":  # only now is the whole sum known
        for u in [u for u, v in links.items() if v["sum"] < cfg.min_score]:
            drops["low_score"] += links.pop(u)["n"]
    drops["duplicate_url"] = sum(v["n"] - 1 for v in links.values())
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(links_table(links, cfg.score_mode), out)
    return finish_shard(task, [out], rows_in=rows_in, rows_out=len(links), drops=+drops)


def select_dumps(cfg: HarvestConfig) -> list[Path]:
    dumps = expand_inputs(cfg.input)
    if cfg.months is None:
        return dumps
    y0, m0, y1, m1 = map(int, MONTHS.match(cfg.months).groups())  # type: ignore[union-attr]
    chosen = []
    for p in dumps:
        m = FILE_MONTH.search(p.name)
        if m and (y0, m0) <= (int(m[1]), int(m[2])) <= (y1, m1):
            chosen.append(p)
    if not chosen:
        raise PipelineError(f"harvest: no dump among {len(dumps)} input files has a name month in {cfg.months}")
    return chosen


def run(cfg: HarvestConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    dumps = select_dumps(cfg)
    # Dumps are named by size and mtime here (cheap); their sha256 is computed while reading, into the manifest.
    inputs = {str(p): f"{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in dumps}
    run_ = StageRun("harvest", cfg, cfg.output, inputs, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out_dir = run_.out.path.resolve()
    map_tasks = [
        ShardTask(f"map-{i:05d}", [str(p)], str(out_dir), cfg, {"input_fingerprint": inputs[str(p)]})
        for i, p in enumerate(dumps)
    ]
    mapped = run_.map(map_dump, map_tasks, "map", records_dir="_map")
    parts = [str(out_dir / f["path"]) for rec in mapped for f in rec["files"]]
    parts_fp = combined_fingerprint([f["sha256"] for rec in mapped for f in rec["files"]])
    reduce_tasks = [
        ShardTask(shard_name(b), parts, str(out_dir), cfg, {"bucket": b, "input_fingerprint": parts_fp})
        for b in range(cfg.num_shards)
    ]
    shards = run_.map(reduce_bucket, reduce_tasks, "reduce")
    drops: Counter = Counter()
    for rec in mapped + shards:
        drops.update(rec["drops"])
    domains: Counter = Counter()
    for p in (out_dir / s["files"][0]["path"] for s in shards):
        domains.update(pq.read_table(p, columns=["registered_domain"]).column(0).to_pylist())
    return run_.finish(
        shards,
        rows_in=sum(r["rows_in"] for r in mapped),
        drops=+drops,
        extra={
            "dumps": [r["dump"] for r in mapped],
            "lines_read": sum(r["rows_in"] for r in mapped),
            "lines_parsed": sum(r["lines_parsed"] for r in mapped),
            "repaired_utf8": sum(r["repaired_utf8"] for r in mapped),
            "submissions_kept": sum(r["rows_out"] for r in mapped),
            "examples": [e for r in mapped for e in r["examples"]][:20],
            "top_domains": dict(sorted(domains.items(), key=lambda kv: (-kv[1], kv[0]))[:1000]),
        },
    )


def read_links(path: str | Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in Dataset(path).shard_files()])
