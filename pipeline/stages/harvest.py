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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import simdjson
from pydantic import Field, field_validator

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import Dataset, shard_name, write_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, StageRun, combined_fingerprint, finish_shard
from pipeline.text.dumps import DumpReader, Inputs, find_dumps
from pipeline.text.urls import bucket_of, parse_url, registered_domain, split_plain, url_hash

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
    # A map task writes the submissions it keeps out in parts of at most this many, so a 40M-line month fits a
    # worker's memory (~200 bytes each).
    max_kept_in_memory: int = Field(1_000_000, ge=1)
    blocked_domains: str | None = None  # a file, one domain per line; None = pipeline/data/blocked_domains.txt
    blocked_extensions: str | None = None  # likewise, pipeline/data/blocked_extensions.txt

    transport_keys = frozenset({"max_kept_in_memory"})  # changes the intermediate parts, not the output

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
    _, dot, ext = path.rpartition(".")
    return bool(dot) and "/" not in ext and ext.lower() in blocked


def parse_created(value: Any) -> int | None:
    """created_utc is an int in most months, a string in 2014-01..2015-11, sometimes a float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _int64(value)
    if isinstance(value, str):
        try:
            return _int64(float(value))
        except ValueError:
            return None
    return None


def _int64(x: float) -> int | None:
    # Found by fuzzing: "inf" or "1e400" raised OverflowError (the whole dump failed), and -1e30 was kept, then
    # failed the int64 column of the map table. NaN fails both comparisons.
    return int(x) if -(2.0**63) <= x < 2.0**63 else None


class Submission(msgspec.Struct, gc=False):
    """The fields the rules read (a 2017 record has ~100 more). Untyped on purpose: the dumps disagree on types
    (created_utc as a string, null scores), and the rules decide what is usable. A msgspec Struct because it is the
    cheapest record Python can build: one is made per line."""

    id: Any = None
    url: Any = None
    score: Any = None
    created_utc: Any = None
    is_self: Any = None
    over_18: Any = None
    subreddit: Any = None

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Submission:
        return cls(**{f: obj.get(f) for f in cls.__struct_fields__})


_NESTED = (simdjson.Object, simdjson.Array)


class SubmissionDecoder:
    """Bytes of one line -> Submission. simdjson indexes the whole line at SIMD speed and only the seven fields read
    become Python objects: ~1.3 µs/line less than a typed msgspec decode that skips the other fields, 3x less than
    `orjson.loads` (BENCHMARKS.md). Raises (ValueError, RuntimeError, UnicodeDecodeError) on anything unusual
    (invalid JSON or UTF-8, not an object, integers over 64 bits); `parse_slowly` then has the last word.
    Two differences from `orjson.loads` remain: of duplicate keys, simdjson reads the first, orjson the last; and a
    nested object or array comes back as a simdjson proxy, which the rules judge as they judge orjson's dict or list
    (by type and emptiness only). As `id` or `subreddit` one is refused: those are written out with str(), and a
    proxy's str() is its memory address (found by fuzzing)."""

    def __init__(self) -> None:
        # One parser, reused: its buffers are sized once. It refuses to parse while a value of the previous line is
        # still alive (a nested object as `url`, say); that line then takes the slow path, and the next is fine.
        self._parse = simdjson.Parser().parse

    def __call__(self, line: bytes, Object: type = simdjson.Object, nested: tuple = _NESTED) -> Submission:
        doc = self._parse(line)
        if type(doc) is not Object:
            raise ValueError("not an object")
        get = doc.get  # type: ignore[union-attr]  # an Object, checked above
        sid, sub = get("id"), get("subreddit")
        if type(sid) in nested or type(sub) in nested:
            raise ValueError("nested id or subreddit")
        return Submission(sid, get("url"), get("score"), get("created_utc"), get("is_self"), get("over_18"), sub)


DECODE_ERRORS = (ValueError, RuntimeError)  # UnicodeDecodeError is a ValueError
MAX_SCORE = 2**31 - 1  # summed over fewer than 2**32 submissions of one URL, still an int64


def parse_slowly(line: bytes) -> tuple[Submission | None, str, str]:
    """Lines the fast decoder refused: (submission, "repaired_utf8" or "", "") or (None, drop reason, message).
    A general decoder has the last word, so odd lines are judged exactly as `orjson.loads` sees them."""
    repaired = ""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:  # invalid bytes in a field we read (seen in real dumps): replace them
        line, repaired = line.decode("utf-8", errors="replace").encode(), "repaired_utf8"
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return None, ("bad_json" if line.strip() else "blank_line"), str(e)
    if type(obj) is not dict:
        return None, "not_an_object", ""
    return Submission.of(obj), repaired, ""


class SubmissionRules:
    """Decides, per submission, keep (with its normalized URL and host) or drop with a reason."""

    def __init__(self, cfg: HarvestConfig):
        self.cfg = cfg
        self.cutoff = int(datetime(*cfg.created_before.timetuple()[:3], tzinfo=UTC).timestamp())
        self.per_submission = cfg.score_mode == "per_submission"
        # Plain attributes: judge() runs for every line of every dump.
        self.drop_self, self.drop_nsfw, self.min_score = cfg.drop_self_posts, cfg.drop_nsfw, cfg.min_score
        self.blocked_domains, self.blocked_extensions = blocklists(cfg.blocked_domains, cfg.blocked_extensions)
        # The same URL is posted again and again (reposts, crossposts): normalize each raw string once; and a few
        # thousand hosts carry most links: decide each host once.
        self._seen: dict[str, tuple[str, str] | str] = {}
        self._hosts: dict[str, bool] = {}

    def judge(self, rec: Submission) -> tuple[str | None, str | None, str | None]:
        """(normalized_url, host, None) to keep, or (None, None, reason) to drop."""
        if self.drop_self and rec.is_self:
            return None, None, "self_post"
        score = rec.score
        # type(): also refuses bools, which are ints to isinstance. The range (found by fuzzing): a score past int64
        # failed the map table, and sums of huge ones wrapped around in Arrow; no real score is near 2**31.
        if type(score) is not int or not -MAX_SCORE <= score <= MAX_SCORE:
            return None, None, "no_score"
        if self.per_submission and score < self.min_score:
            return None, None, "low_score"
        created = rec.created_utc
        if type(created) is not int:
            created = parse_created(created)
            if created is None:
                return None, None, "no_created_utc"
        if created >= self.cutoff:
            return None, None, "after_cutoff"
        if self.drop_nsfw and rec.over_18:
            return None, None, "nsfw"
        raw = rec.url
        if type(raw) is not str or not raw or raw.isspace():
            return None, None, "no_url"
        seen = self._seen.get(raw)
        if seen is None:
            seen = self._classify(raw)
            if len(self._seen) > 2_000_000:  # bound memory on a 40M-line month
                self._seen.clear()
                self._hosts.clear()
            self._seen[raw] = seen
        if isinstance(seen, str):
            return None, None, seen
        return seen[0], seen[1], None

    def _host_blocked(self, host: str) -> bool:
        blocked = self._hosts.get(host)
        if blocked is None:
            blocked = self._hosts[host] = domain_blocked(host, self.blocked_domains)
        return blocked

    def _classify(self, raw: str) -> tuple[str, str] | str:
        plain = split_plain(raw)
        if plain is not None:  # already normal: no parse needed
            url, host, path = plain
            if self._host_blocked(host):
                return "blocked_domain"
            if extension_blocked(path, self.blocked_extensions):
                return "blocked_extension"
            return url, host
        # Most media links are decided by their host alone: look at it before paying for a full parse.
        rough = ""
        if raw[:8].lower().startswith(("http://", "https://")):
            rough = raw.split("/", 3)[2].rpartition("@")[2].partition(":")[0].lower()
            if self._host_blocked(rough):
                return "blocked_domain"
        try:
            u = parse_url(raw)
            if u is None:
                return "not_http_url"
            host = (u.raw_host or "").lower()
            if host != rough and self._host_blocked(host):
                return "blocked_domain"
            if extension_blocked(u.raw_path, self.blocked_extensions):
                return "blocked_extension"
            return str(u), host
        except ValueError:  # yarl validates lazily: a bad port or host surfaces on use
            return "not_http_url"


class Sightings:
    """Kept submissions as columns, one entry per submission. Appending is the only per-line work; merging the
    sightings of one URL happens once per part, in Arrow (`map_table`), instead of per line in Python."""

    __slots__ = ("url", "host", "score", "created", "id", "subreddit")

    def __init__(self) -> None:
        self.url: list[str] = []
        self.host: list[str | None] = []  # never None where the url is kept; typed as judge() returns it
        self.score: list[int] = []
        self.created: list[int | None] = []
        self.id: list[str | None] = []
        self.subreddit: list[str | None] = []

    def __len__(self) -> int:
        return len(self.url)

    def clear(self) -> None:  # in place: harvest_lines holds the lists' bound append methods
        for column in self.url, self.host, self.score, self.created, self.id, self.subreddit:
            column.clear()


def harvest_lines(
    lines: Iterable[bytes],
    rules: SubmissionRules,
    source: str,
    drops: Counter,
    notes: Counter,
    examples: list[str],
    spill: Callable[[Sightings], None] | None = None,
    max_sightings: int = 0,
) -> Sightings:
    """Pure core: lines -> the kept submissions. Bad lines are counted, the first few named. With `spill`, every
    time `max_sightings` are held they are handed to it and forgotten (the reduce merges the parts)."""
    # No reference cycles are made here, yet the cyclic collector would keep rescanning the growing URL cache.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        kept = Sightings()
        # Bound methods in locals: this loop runs once per line of every dump.
        add_url, add_host, add_score = kept.url.append, kept.host.append, kept.score.append
        add_created, add_id, add_sub = kept.created.append, kept.id.append, kept.subreddit.append
        judge = rules.judge
        decode = SubmissionDecoder()
        dropped: dict[str, int] = {}  # a plain dict: cheaper per line than the Counter it is added to at the end
        unparsed = lineno = 0
        rec: Submission | None
        for lineno, line in enumerate(lines, start=1):
            try:
                rec = decode(line)
            except DECODE_ERRORS:
                rec, note, message = parse_slowly(line)
                if rec is None:
                    drops[note] += 1
                    unparsed += note != "not_an_object"  # that one is valid JSON, only not a submission
                    if note == "bad_json" and len(examples) < 5:
                        examples.append(f"{source}:{lineno}: bad JSON ({message})")
                    continue
                if note:
                    notes[note] += 1
            url, host, reason = judge(rec)
            if url is None:
                dropped[reason] = dropped.get(reason, 0) + 1  # type: ignore[index,arg-type]  # a str here
                continue
            created, sid, sub = rec.created_utc, rec.id, rec.subreddit
            add_url(url)
            add_host(host)
            add_score(rec.score)
            add_created(created if type(created) is int else parse_created(created))
            add_id(str(sid) if sid else None)
            add_sub(str(sub) if sub else None)
            if spill is not None and len(kept.url) >= max_sightings:
                spill(kept)
                kept.clear()
        drops.update(dropped)
        notes["parsed"] += lineno - unparsed
        return kept
    finally:
        if gc_was_enabled:
            gc.enable()


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


_DISTINCT = pc.CountOptions(mode="only_valid")  # missing ids and subreddits are nulls: leave them out of the lists


def map_table(kept: Sightings, num_shards: int) -> pa.Table:
    """One row per URL of a map part: its sightings merged, tagged with its reduce bucket."""
    sightings = pa.table(
        {
            "url": pa.array(kept.url, pa.string()),
            "domain": pa.array(kept.host, pa.string()),
            "score": pa.array(kept.score, pa.int64()),
            "created": pa.array(kept.created, pa.int64()),
            "id": pa.array(kept.id, pa.string()),
            "subreddit": pa.array(kept.subreddit, pa.string()),
        }
    )
    merged = sightings.group_by("url", use_threads=False).aggregate(
        [
            ("domain", "min"),  # one host per normalized URL; min just picks it
            ("score", "max"),
            ("score", "sum"),
            ("score", "count"),
            ("created", "min"),
            ("id", "distinct", _DISTINCT),
            ("subreddit", "distinct", _DISTINCT),
        ]
    )
    buckets = pa.array([bucket_of(u, num_shards) for u in merged.column("url").to_pylist()], pa.int32())
    # Sorted by (bucket, url): each bucket is a contiguous run of row groups, so a reduce task's
    # `bucket == b` filter skips the other buckets' row groups by their statistics instead of reading them.
    return (
        pa.table(
            [merged.column(c) for c in ("url", "domain_min", "score_max", "score_sum", "score_count", "created_min")]
            + [merged.column("id_distinct"), merged.column("subreddit_distinct"), buckets],
            schema=MAP_SCHEMA,
        )
        .sort_by([("bucket", "ascending"), ("url", "ascending")])
        .combine_chunks()
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


def map_dump(task: ShardTask[HarvestConfig, None]) -> Record:
    cfg: HarvestConfig = task.config
    (path,) = task.inputs
    reader = DumpReader(path)
    drops: Counter = Counter()
    notes: Counter = Counter()
    examples: list[str] = []
    parts: list[Path] = []
    kept = 0

    def spill(sightings: Sightings) -> None:
        nonlocal kept
        part = Path(task.output) / "_map" / f"{task.name}.{len(parts):04d}.parquet"
        write_parquet(map_table(sightings, cfg.num_shards), part)
        parts.append(part)
        kept += len(sightings)

    lines = itertools.chain.from_iterable(_reporting(reader, Path(path).name))
    rest = harvest_lines(
        lines, SubmissionRules(cfg), Path(path).name, drops, notes, examples, spill, cfg.max_kept_in_memory
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


def reduce_bucket(task: ShardTask[HarvestConfig, int]) -> Record:
    """payload: the hash bucket this task merges (bucket_of)."""
    cfg: HarvestConfig = task.config
    links: dict[str, dict[str, Any]] = {}
    for part in task.inputs:
        for r in pq.read_table(storage.pull(part), filters=[("bucket", "=", task.payload)]).to_pylist():
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


def select_dumps(cfg: HarvestConfig) -> Inputs:
    """The dumps to read, and every file of the input that is not read, with the reason (recorded in the stage
    manifest as `skipped_files`)."""
    inputs = find_dumps(cfg.input)
    if cfg.months is None:
        return inputs
    y0, m0, y1, m1 = map(int, MONTHS.match(cfg.months).groups())  # type: ignore[union-attr]
    chosen = []
    for p in inputs.dumps:
        m = FILE_MONTH.search(p.name)
        if m and (y0, m0) <= (int(m[1]), int(m[2])) <= (y1, m1):
            chosen.append(p)
        else:
            inputs.skipped.append(
                {"file": storage.uri_of(p), "reason": f"the month in its name is not in months={cfg.months}"}
            )
    if not chosen:
        raise PipelineError(f"harvest: no dump among {len(inputs.dumps)} input files has a name month in {cfg.months}")
    return Inputs(chosen, sorted(inputs.skipped, key=lambda s: s["file"]))


SKIPPED_SHOWN = 10


def report_skipped(skipped: list[dict[str, str]]) -> None:
    for s in skipped[:SKIPPED_SHOWN]:
        print(f"harvest: skipped {s['file']}: {s['reason']}", file=sys.stderr)
    if len(skipped) > SKIPPED_SHOWN:
        print(
            f"harvest: skipped {len(skipped) - SKIPPED_SHOWN} more files (all in _stage.json: skipped_files)",
            file=sys.stderr,
        )


def run(cfg: HarvestConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    selected = select_dumps(cfg)
    dumps = selected.dumps
    report_skipped(selected.skipped)
    # Dumps are named by size and mtime here (cheap); their sha256 is computed while reading, into the manifest.
    inputs = {storage.uri_of(p): "{}:{}".format(*storage.stat(p)) for p in dumps}
    run_ = StageRun("harvest", cfg, cfg.output, inputs, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out_dir = run_.out.path.resolve()
    map_tasks = [
        ShardTask(f"map-{i:05d}", [str(p)], str(out_dir), cfg, None, inputs[storage.uri_of(p)])
        for i, p in enumerate(dumps)
    ]
    mapped = run_.map(map_dump, map_tasks, "map", records_dir="_map")
    parts = [str(out_dir / f["path"]) for rec in mapped for f in rec["files"]]
    parts_fp = combined_fingerprint([f["sha256"] for rec in mapped for f in rec["files"]])
    reduce_tasks = [ShardTask(shard_name(b), parts, str(out_dir), cfg, b, parts_fp) for b in range(cfg.num_shards)]
    shards = run_.map(reduce_bucket, reduce_tasks, "reduce")
    drops: Counter = Counter()
    for rec in mapped + shards:
        drops.update(rec["drops"])
    domains: Counter = Counter()
    for p in (out_dir / s["files"][0]["path"] for s in shards):
        domains.update(pq.read_table(storage.pull(p), columns=["registered_domain"]).column(0).to_pylist())
    return run_.finish(
        shards,
        rows_in=sum(r["rows_in"] for r in mapped),
        drops=+drops,
        extra={
            "dumps": [r["dump"] for r in mapped],
            "skipped_files": selected.skipped,
            "lines_read": sum(r["rows_in"] for r in mapped),
            "lines_parsed": sum(r["lines_parsed"] for r in mapped),
            "repaired_utf8": sum(r["repaired_utf8"] for r in mapped),
            "submissions_kept": sum(r["rows_out"] for r in mapped),
            "examples": [e for r in mapped for e in r["examples"]][:20],
            "top_domains": dict(sorted(domains.items(), key=lambda kv: (-kv[1], kv[0]))[:1000]),
        },
    )


def read_links(path: str | Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(storage.pull(p)) for p in Dataset(path).shard_files()])
