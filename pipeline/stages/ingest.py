"""ingest: your own text as a documents dataset, so it can enter the pipeline at any stage after extraction and
the trainer can learn from it. `python -m pipeline ingest` runs it, then the stages from
the entry point on (pipeline/ops/ingest.py).

Input: Parquet files, or JSON Lines (.jsonl/.json/.ndjson, plain or .gz/.zst/.xz/.bz2), one document a row, with a
text column; optionally an id column (else the url, else the file's name and row number make the id) and a url
column. Every other column is kept as the documents' metadata. One task per input file; each writes shards of at
most `shard_rows` documents. Rows without usable text are dropped with a reason (`no_text`, `bad_json`), and
the first few are named `file:line`.

Written in the contract extract writes (url_hash, url, final_url, domain, the Reddit columns null, text, html_lang)
plus `source` (the file's name) and `source_row`, so every stage after it reads it unchanged.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import read_parquet, write_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, StageRun, finish_shard
from pipeline.stages.extract import CARRIED
from pipeline.stages.fetch import FETCH_COLUMNS
from pipeline.stages.harvest import LINK_SCHEMA
from pipeline.text.dumps import DumpReader
from pipeline.text.urls import host_of, url_hash

# The documents contract after extract (its CARRIED columns, typed as harvest and fetch write them, then text and
# html_lang), and where each ingested row came from.
_TYPES = {f.name: f.type for f in LINK_SCHEMA} | dict(FETCH_COLUMNS)
CONTRACT = pa.schema(
    [(name, _TYPES[name]) for name in CARRIED]
    + [("text", pa.string()), ("html_lang", pa.string()), ("source", pa.string())]
    + [("source_row", pa.int64())]  # 0-based row (Parquet) or 1-based line (JSON Lines)
)
# Columns later stages add: a metadata column of that name would be overwritten or collide.
RESERVED = {"lang", "lang_score", "n_tokens", "split", "drop_reason"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


class IngestConfig(StageConfig):
    input: list[str] = Field(min_length=1)  # Parquet or JSON Lines files
    output: str
    text_column: str = "text"
    id_column: str | None = None  # a unique id per document; None: the url, else <file name>:<row>
    url_column: str | None = None
    shard_rows: int = Field(100_000, ge=1)  # documents per output shard


def is_json_lines(path: Path) -> bool:
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".xz", ".bz2"):
        name = name.removesuffix(suffix)
    return name.endswith(JSON_SUFFIXES)


def read_rows(path: Path, drops: Counter[str], examples: list[str]) -> tuple[pa.Table, list[int]]:
    """The file as a table, and each row's position in it (0-based row, or 1-based line for JSON Lines)."""
    if is_json_lines(path):
        rows, where = [], []
        for lineno, line in enumerate(DumpReader(path), start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                drops["bad_json"] += 1
                if len(examples) < 5:
                    examples.append(f"{path.name}:{lineno}: bad JSON ({e})")
                continue
            if not isinstance(obj, dict):
                drops["not_an_object"] += 1
                continue
            rows.append(obj)
            where.append(lineno)
        try:
            return pa.Table.from_pylist(rows), where
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise PipelineError(f"{path}: its columns do not hold one type each ({e}); fix or drop them") from None
    if path.suffix.lower() == ".parquet":
        try:
            table = pq.read_table(storage.pull(path))
        except (OSError, pa.ArrowInvalid) as e:
            raise PipelineError(f"{path}: unreadable Parquet file ({e})") from None
        return table, list(range(table.num_rows))
    raise PipelineError(f"{path}: not Parquet or JSON Lines (.parquet, .jsonl, .json, .ndjson, optionally .gz/.zst)")


def documents(table: pa.Table, where: list[int], source: str, cfg: IngestConfig) -> tuple[pa.Table, Counter[str]]:
    """Pure core: a table of the user's rows -> documents in the contract, and the rows dropped by reason."""
    drops: Counter[str] = Counter()
    for column in [cfg.text_column, cfg.id_column, cfg.url_column]:
        if column is not None and column not in table.column_names and table.num_rows:
            raise PipelineError(f"{source}: no column {column!r} (it has {', '.join(table.column_names)})")
    mine = {c for c in (cfg.text_column, cfg.id_column, cfg.url_column) if c}
    clash = sorted((set(table.column_names) - mine) & (set(CONTRACT.names) | RESERVED))
    if clash:
        raise PipelineError(f"{source}: metadata columns {clash} are the pipeline's own; rename them")
    if table.num_rows == 0:
        return CONTRACT.empty_table(), drops
    texts = table.column(cfg.text_column)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type) or pa.types.is_null(texts.type)):
        raise PipelineError(f"{source}: column {cfg.text_column!r} is {texts.type}, not text")
    texts = texts.cast(pa.string())
    keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0).fill_null(False)  # null or blank: no text
    drops["no_text"] = table.num_rows - int(pc.sum(keep).as_py() or 0)
    kept_rows = [w for w, k in zip(where, keep.to_pylist()) if k]
    table = table.filter(keep)
    urls: list[str | None] = (
        [None if u is None else str(u) for u in table.column(cfg.url_column).to_pylist()]
        if cfg.url_column
        else [None] * table.num_rows
    )
    ids = [str(i) for i in table.column(cfg.id_column).to_pylist()] if cfg.id_column else [None] * table.num_rows
    hashes = [
        url_hash(f"id:{i}") if i is not None else url_hash(u) if u else url_hash(f"row:{source}:{row}")
        for i, u, row in zip(ids, urls, kept_rows)
    ]
    n = table.num_rows
    columns: dict[str, Any] = {
        "url_hash": hashes,
        "url": urls,
        "final_url": urls,
        "domain": [host_of(u) or None if u else None for u in urls],
        "score": [None] * n,
        "n_submissions": [None] * n,
        "first_created_utc": [None] * n,
        "submission_ids": [None] * n,
        "subreddits": [None] * n,
        "text": texts.filter(keep),
        "html_lang": [None] * n,
        "source": [source] * n,
        "source_row": kept_rows,
    }
    out = pa.table({name: columns[name] for name in CONTRACT.names}, schema=CONTRACT)
    for name in table.column_names:
        if name not in mine:
            out = out.append_column(table.schema.field(name), table.column(name))
    return out, +drops


def ingest_file(task: ShardTask[IngestConfig, None]) -> Record:
    cfg = task.config
    (path,) = task.inputs
    drops: Counter[str] = Counter()
    examples: list[str] = []
    table, where = read_rows(Path(path), drops, examples)
    rows_in = table.num_rows + sum(drops.values())
    docs, dropped = documents(table, where, Path(path).name, cfg)
    drops.update(dropped)
    files = []
    for k, lo in enumerate(range(0, max(docs.num_rows, 1), cfg.shard_rows)):
        files.append(Path(task.output) / f"{task.name}-{k:05d}.parquet")
        write_parquet(docs.slice(lo, cfg.shard_rows), files[-1])
    return finish_shard(
        task, files, rows_in=rows_in, rows_out=docs.num_rows, drops=+drops, extra={"examples": examples}
    )


def check_unique(out: Path, shards: list[Record]) -> None:
    """Documents are told apart by url_hash (dedup's keeper, the train/val split): two rows with one id are refused."""
    seen: dict[str, str] = {}
    for rec in shards:
        for f in rec["files"]:
            t = read_parquet(out / f["path"], ["url_hash", "source", "source_row"])
            for h, src, row in zip(*(t.column(c).to_pylist() for c in ("url_hash", "source", "source_row"))):
                if h in seen:
                    raise PipelineError(
                        f"ingest: {seen[h]} and {src}:{row} have the same id (url_hash {h}); give unique ids "
                        "(--id-column) or leave them out"
                    )
                seen[h] = f"{src}:{row}"


def run(cfg: IngestConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    files = [Path(p) for p in cfg.input]
    for p in files:
        if not storage.is_file(p):
            raise PipelineError(f"ingest: {p}: no such file")
    # Named by size and mtime (cheap); the shards' own hashes are in their records.
    inputs = {storage.uri_of(p): "{}:{}".format(*storage.stat(p)) for p in files}
    run_ = StageRun("ingest", cfg, cfg.output, inputs, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out = run_.out.path.resolve()
    tasks = [
        ShardTask(f"part-{i:05d}", [str(p)], str(out), cfg, None, inputs[storage.uri_of(p)])
        for i, p in enumerate(files)
    ]
    shards = run_.map(ingest_file, tasks, "files")
    check_unique(out, shards)
    examples = [e for r in shards for e in r["examples"]][:20]
    return run_.finish(shards, extra={"examples": examples})
