"""harvest: Reddit submissions -> one row per normalized outbound URL.

Rules (defaults reproduce WebText/OpenWebText): score >= 3, created before 2017-12-01, no self posts,
http(s) only, media/social hosts and non-HTML file extensions blocked. Two Ray phases:
map (one task per dump file: parse, apply rules, dedup within the file, tag each URL with a hash bucket)
then reduce (one task per bucket: merge the same URL across files). Output shards are URL-hash partitions.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.config import StageConfig
from pipeline.dataset import Dataset, shard_name, write_parquet
from pipeline.dumps import DumpReader, expand_inputs
from pipeline.stage import ShardTask, StageRun, finish_shard
from pipeline.urls import host_of, normalize_url, url_id


class HarvestConfig(StageConfig):
    input: list[str] = Field(description="dump files, directories or globs")
    output: str
    min_score: int = 3  # WebText: "at least 3 karma"
    created_before: date = date(2017, 12, 1)  # WebText: links up to December 2017
    drop_self_posts: bool = True
    drop_nsfw: bool = False  # OpenWebText kept NSFW links; set true to drop them
    num_shards: int = Field(16, ge=1, le=100_000)
    blocked_domains: str | None = None  # a file, one domain per line; None = the bundled list
    blocked_extensions: str | None = None  # likewise


LINK_SCHEMA = pa.schema(
    [
        ("url_id", pa.string()),
        ("url", pa.string()),
        ("domain", pa.string()),
        ("score", pa.int64()),  # the best score among the submissions that link it
        ("num_submissions", pa.int64()),
        ("created_utc", pa.int64()),  # first seen
        ("submission_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
    ]
)
MAP_SCHEMA = LINK_SCHEMA.append(pa.field("bucket", pa.int32()))


def _read_list(path: str | None, bundled: str) -> frozenset[str]:
    text = Path(path).read_text() if path else resources.files("pipeline.data").joinpath(bundled).read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=8)
def blocklists(domains_file: str | None, extensions_file: str | None) -> tuple[frozenset[str], frozenset[str]]:
    return _read_list(domains_file, "blocked_domains.txt"), _read_list(extensions_file, "blocked_extensions.txt")


def domain_blocked(host: str, blocked: frozenset[str]) -> bool:
    parts = host.split(".")
    return any(".".join(parts[i:]) in blocked for i in range(len(parts) - 1))


def extension_blocked(url: str, blocked: frozenset[str]) -> bool:
    path = urlsplit(url).path
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
    """Decides, per submission, keep (with its normalized URL) or drop with a reason."""

    def __init__(self, cfg: HarvestConfig):
        self.cfg = cfg
        self.cutoff = int(datetime(*cfg.created_before.timetuple()[:3], tzinfo=timezone.utc).timestamp())
        self.blocked_domains, self.blocked_extensions = blocklists(cfg.blocked_domains, cfg.blocked_extensions)

    def judge(self, rec: Any) -> tuple[str | None, str | None]:
        """Returns (normalized_url, None) to keep or (None, reason) to drop."""
        if not isinstance(rec, dict):
            return None, "not_an_object"
        if self.cfg.drop_self_posts and rec.get("is_self"):
            return None, "self_post"
        score = rec.get("score")
        if not isinstance(score, int) or isinstance(score, bool):
            return None, "no_score"
        if score < self.cfg.min_score:
            return None, "low_score"
        created = parse_created(rec.get("created_utc"))
        if created is None:
            return None, "no_created_utc"
        if created >= self.cutoff:
            return None, "after_cutoff"
        if self.cfg.drop_nsfw and rec.get("over_18"):
            return None, "nsfw"
        raw = rec.get("url")
        if not isinstance(raw, str) or not raw.strip():
            return None, "no_url"
        url = normalize_url(raw)
        if url is None:
            return None, "not_http_url"
        if domain_blocked(host_of(url), self.blocked_domains):
            return None, "blocked_domain"
        if extension_blocked(url, self.blocked_extensions):
            return None, "blocked_extension"
        return url, None


def harvest_lines(lines, rules: SubmissionRules, source: str, drops: Counter, examples: list[str]) -> dict:
    """Pure core: (lineno, bytes) lines -> {url: aggregate}. Bad lines are counted, the first few named."""
    links: dict[str, dict[str, Any]] = {}
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            drops["bad_json"] += 1
            if len(examples) < 5:
                examples.append(f"{source}:{lineno}: bad JSON ({e})")
            continue
        url, reason = rules.judge(rec)
        if url is None:
            drops[reason] += 1  # type: ignore[index]
            continue
        merge_link(
            links,
            url,
            rec["score"],
            1,
            parse_created(rec["created_utc"]),
            [str(rec.get("id") or "")],
            [str(rec.get("subreddit") or "")],
        )
    return links


def merge_link(
    links: dict[str, dict[str, Any]], url: str, score: int, n: int, created: int, ids: list[str], subs: list[str]
) -> None:
    """Fold one sighting (or an already merged group) of `url` into `links`: best score, first seen, all ids."""
    agg = links.get(url)
    if agg is None:
        links[url] = {"score": score, "n": n, "created": created, "ids": set(ids), "subs": set(subs)}
    else:
        agg["score"] = max(agg["score"], score)
        agg["n"] += n
        agg["created"] = min(agg["created"], created)
        agg["ids"].update(ids)
        agg["subs"].update(subs)


def links_table(links: dict[str, dict[str, Any]], num_shards: int | None = None) -> pa.Table:
    urls = sorted(links)
    cols: dict[str, list[Any]] = {
        "url_id": [url_id(u) for u in urls],
        "url": urls,
        "domain": [host_of(u) for u in urls],
        "score": [links[u]["score"] for u in urls],
        "num_submissions": [links[u]["n"] for u in urls],
        "created_utc": [links[u]["created"] for u in urls],
        "submission_ids": [sorted(x for x in links[u]["ids"] if x) for u in urls],
        "subreddits": [sorted(x for x in links[u]["subs"] if x) for u in urls],
    }
    if num_shards is None:
        return pa.table(cols, schema=LINK_SCHEMA)
    cols["bucket"] = [int(i[:8], 16) % num_shards for i in cols["url_id"]]
    return pa.table(cols, schema=MAP_SCHEMA)


def map_dump(task: ShardTask) -> dict[str, Any]:
    cfg: HarvestConfig = task.config
    (path,) = task.inputs
    reader = DumpReader(path)
    drops: Counter = Counter()
    examples: list[str] = []
    lines_read = 0

    def counted():
        nonlocal lines_read
        for item in reader:
            lines_read = item[0]
            yield item

    links = harvest_lines(counted(), SubmissionRules(cfg), Path(path).name, drops, examples)
    out = Path(task.output) / "_map" / f"{task.name}.parquet"
    write_parquet(links_table(links, cfg.num_shards), out)
    qualifying = sum(v["n"] for v in links.values())
    if qualifying > len(links):
        drops["duplicate_url"] += qualifying - len(links)
    return finish_shard(
        task,
        [out],
        rows_in=lines_read,
        rows_out=len(links),
        drops=drops,
        records_dir="_map",
        extra={"dump": {"name": Path(path).name, "sha256": reader.sha256, "bytes": reader.bytes}, "examples": examples},
    )


def reduce_bucket(task: ShardTask) -> dict[str, Any]:
    bucket = task.extra["bucket"]
    links: dict[str, dict[str, Any]] = {}
    rows_in = 0
    for part in task.inputs:
        table = pq.read_table(part, filters=[("bucket", "=", bucket)])
        rows_in += table.num_rows
        for r in table.to_pylist():
            merge_link(
                links,
                r["url"],
                r["score"],
                r["num_submissions"],
                r["created_utc"],
                r["submission_ids"],
                r["subreddits"],
            )
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(links_table(links), out)
    drops = {"duplicate_url": rows_in - len(links)} if rows_in > len(links) else {}
    return finish_shard(task, [out], rows_in=rows_in, rows_out=len(links), drops=drops)


def run(cfg: HarvestConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    dumps = expand_inputs(cfg.input)
    # Dumps are named by size and mtime here (cheap); their sha256 is computed while reading, into the manifest.
    inputs = {str(p): f"{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in dumps}
    run_ = StageRun("harvest", cfg, cfg.output, inputs, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out = str(run_.out.path.resolve())
    map_tasks = [ShardTask(f"map-{i:05d}", [str(p)], out, cfg) for i, p in enumerate(dumps)]
    mapped = run_.map(map_dump, map_tasks, "map", records_dir="_map")
    parts = [str(run_.out.path.resolve() / rec["files"][0]["path"]) for rec in mapped]
    reduce_tasks = [ShardTask(shard_name(b), parts, out, cfg, {"bucket": b}) for b in range(cfg.num_shards)]
    shards = run_.map(reduce_bucket, reduce_tasks, "reduce")
    drops: Counter = Counter()
    for rec in mapped:
        drops.update(rec["drops"])
    drops["duplicate_url"] = drops.get("duplicate_url", 0) + sum(s["drops"].get("duplicate_url", 0) for s in shards)
    return run_.finish(
        shards,
        rows_in=sum(r["rows_in"] for r in mapped),
        drops={k: v for k, v in drops.items() if v},
        extra={"dumps": [r["dump"] for r in mapped], "examples": [e for r in mapped for e in r["examples"]][:20]},
    )


def read_links(path: str | Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in Dataset(path).shard_files()])
