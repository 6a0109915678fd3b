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
from collections.abc import Iterator
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
Chunk = tuple[pa.Table, list[int]]  # rows of a file, and each one's position in it


class IngestConfig(StageConfig):
    input: list[str] = Field(min_length=1)  # Parquet or JSON Lines files
    output: str
    text_column: str = "text"
    id_column: str | None = None  # a unique id per document; None: the url, else <file name>:<row>
    url_column: str | None = None
    metadata: bool = True  # keep the files' other columns beside the text (every file must have the same ones)
    shard_rows: int = Field(100_000, ge=1)  # rows read at a time, and documents per output shard at most


def is_json_lines(path: Path) -> bool:
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".xz", ".bz2"):
        name = name.removesuffix(suffix)
    return name.endswith(JSON_SUFFIXES)


def json_objects(path: Path, drops: Counter[str] | None, examples: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every line that is a JSON object; the others counted (when `drops` is given)."""
    for lineno, line in enumerate(DumpReader(path), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if drops is not None:
                drops["bad_json"] += 1
                if len(examples) < 5:
                    examples.append(f"{path.name}:{lineno}: bad JSON ({e})")
            continue
        if isinstance(obj, dict):
            yield lineno, obj
        elif drops is not None:
            drops["not_an_object"] += 1


def json_schema(path: Path, text_column: str, sample: int = 1000) -> dict[str, pa.DataType]:
    """A first pass: every key of the file, in the order they appear, typed from up to `sample` of its values, so
    every chunk of the file gets the same columns (a key a line lacks is null there)."""
    seen: dict[str, list[Any]] = {}
    for _, obj in json_objects(path, None, []):
        for key, value in obj.items():
            values = seen.setdefault(key, [])
            if value is not None and len(values) < sample:
                values.append(value)
    types = {}
    for key, values in seen.items():
        try:
            types[key] = pa.string() if key == text_column else pa.array(values).type
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise PipelineError(f"{path}: key {key!r} holds values of several types ({e}); fix or drop it") from None
        if pa.types.is_null(types[key]):
            types[key] = pa.string()  # never a value: text
    return types


def json_chunks(path: Path, rows: int, drops: Counter[str], examples: list[str], text_column: str) -> Iterator[Chunk]:
    """JSON Lines in tables of at most `rows` objects, with each object's line number; a text that is not a string
    counts as none."""
    types = json_schema(path, text_column)
    objs: list[dict[str, Any]] = []
    lines: list[int] = []

    def chunk() -> Chunk:
        columns = {}
        for key, kind in types.items():
            values = [o.get(key) for o in objs]
            if key == text_column:
                values = [v if isinstance(v, str) else None for v in values]
            try:
                columns[key] = pa.array(values, type=kind)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise PipelineError(
                    f"{path}: key {key!r} holds values of several types ({e}); fix or drop it"
                ) from None
        return pa.table(columns), list(lines)

    for lineno, obj in json_objects(path, drops, examples):
        objs.append(obj)
        lines.append(lineno)
        if len(objs) == rows:
            yield chunk()
            objs.clear()
            lines.clear()
    if objs:
        yield chunk()


def parquet_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    try:
        f = pq.ParquetFile(storage.pull(path))
        start = 0
        for batch in f.iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch]), list(range(start, start + batch.num_rows))
            start += batch.num_rows
    except (OSError, pa.ArrowInvalid) as e:
        raise PipelineError(f"{path}: unreadable Parquet file ({e})") from None


def chunks(path: Path, rows: int, drops: Counter[str], examples: list[str], text_column: str) -> Iterator[Chunk]:
    """The file in tables of at most `rows` rows, with each row's position (0-based row, or 1-based line)."""
    if is_json_lines(path):
        return json_chunks(path, rows, drops, examples, text_column)
    if path.name.lower().endswith(".parquet"):
        return parquet_chunks(path, rows)
    raise PipelineError(f"{path}: not Parquet or JSON Lines (.parquet, .jsonl, .json, .ndjson, optionally .gz/.zst)")


def documents(table: pa.Table, where: list[int], source: str, cfg: IngestConfig) -> tuple[pa.Table, Counter[str]]:
    """Pure core: a table of the user's rows -> documents in the contract, and the rows dropped by reason. `source`
    names the file in messages and rows; ids fall back to the url, then to (source, row)."""
    drops: Counter[str] = Counter()
    for column in [cfg.text_column, cfg.id_column, cfg.url_column]:
        if column is not None and column not in table.column_names and table.num_rows:
            raise PipelineError(f"{source}: no column {column!r} (it has {', '.join(table.column_names)})")
    mine = {c for c in (cfg.text_column, cfg.id_column, cfg.url_column) if c}
    clash = sorted((set(table.column_names) - mine) & (set(CONTRACT.names) | RESERVED))
    if clash and cfg.metadata:
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
    n = table.num_rows

    def values(column: str | None) -> list[str | None]:
        if column is None:
            return [None] * n
        return [None if v is None else str(v) for v in table.column(column).to_pylist()]

    urls, ids = values(cfg.url_column), values(cfg.id_column)
    hashes = [
        url_hash(f"id:{i}") if i is not None else url_hash(u) if u else url_hash(f"row:{source}:{row}")
        for i, u, row in zip(ids, urls, kept_rows)
    ]
    columns: dict[str, Any] = {
        "url_hash": hashes,
        "url": urls,
        "final_url": urls,
        "domain": [(host_of(u) or None) if u else None for u in urls],
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
    for field in table.schema if cfg.metadata else []:
        if field.name not in mine:
            column = table.column(field.name)
            if pa.types.is_null(field.type):  # no value in this chunk: typed as text, not as Arrow's null type
                column, field = column.cast(pa.string()), field.with_type(pa.string())
            out = out.append_column(field, column)
    return out, +drops


def ingest_file(task: ShardTask[IngestConfig, str]) -> Record:
    """payload: the file's name as documents name their source (its path relative to the inputs' common folder)."""
    cfg = task.config
    (path,) = task.inputs
    drops: Counter[str] = Counter()
    examples: list[str] = []
    files, rows_in, rows_out = [], 0, 0
    for k, (table, where) in enumerate(chunks(Path(path), cfg.shard_rows, drops, examples, cfg.text_column)):
        docs, dropped = documents(table, where, task.payload, cfg)
        drops.update(dropped)
        rows_in, rows_out = rows_in + table.num_rows, rows_out + docs.num_rows
        files.append(Path(task.output) / f"{task.name}-{k:05d}.parquet")
        write_parquet(docs, files[-1])
    if not files:  # an empty file: one empty shard, so every file is accounted for
        files.append(Path(task.output) / f"{task.name}-00000.parquet")
        write_parquet(CONTRACT.empty_table(), files[-1])
    rows_in += drops["bad_json"] + drops["not_an_object"]
    if rows_out == 0 and drops["not_an_object"]:
        raise PipelineError(
            f"{path}: no line is a JSON object ({drops['not_an_object']:,} are other values): one document a line "
            "(JSON Lines), not a JSON array"
        )
    return finish_shard(task, files, rows_in=rows_in, rows_out=rows_out, drops=+drops, extra={"examples": examples})


def check_shards(out: Path, shards: list[Record]) -> None:
    """Documents are told apart by url_hash (dedup's keeper, the train/val split): two rows with one id are refused.
    And every shard with documents must have the same columns, so the corpus reads as one table (HF datasets,
    Croissant)."""
    seen: dict[str, str] = {}
    first: tuple[str, pa.Schema] | None = None
    for rec in shards:
        for f in rec["files"]:
            path = storage.pull(out / f["path"])
            if pq.read_metadata(path).num_rows == 0:
                continue
            schema = pq.read_schema(path)
            if first is None:
                first = (f["path"], schema)
            elif [(c.name, str(c.type)) for c in schema] != [(c.name, str(c.type)) for c in first[1]]:
                raise PipelineError(
                    f"ingest: {f['path']} and {first[0]} differ in their metadata columns "
                    f"({schema_diff(schema, first[1])}); give every file the same columns and types, or pass "
                    "--no-metadata"
                )
            t = read_parquet(path, ["url_hash", "source", "source_row"])
            for h, src, row in zip(*(t.column(c).to_pylist() for c in ("url_hash", "source", "source_row"))):
                if h in seen:
                    raise PipelineError(
                        f"ingest: {seen[h]} and {src}:{row} have the same id (url_hash {h}); give unique ids "
                        "(--id-column) or leave them out"
                    )
                seen[h] = f"{src}:{row}"


def schema_diff(a: pa.Schema, b: pa.Schema) -> str:
    mine, theirs = {f.name: str(f.type) for f in a}, {f.name: str(f.type) for f in b}
    names = sorted(n for n in set(mine) | set(theirs) if mine.get(n) != theirs.get(n))
    return ", ".join(f"{n}: {mine.get(n, '-')} vs {theirs.get(n, '-')}" for n in names)


def run(cfg: IngestConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    files = [storage.local_view(p) for p in cfg.input]  # a URI: its mirror path
    for p in files:
        if not storage.is_file(p):
            raise PipelineError(f"ingest: {storage.uri_of(p)}: no such file")
    # Named by size and mtime (cheap); the shards' own hashes are in their records.
    inputs = {storage.uri_of(p): "{}:{}".format(*storage.stat(p)) for p in files}
    run_ = StageRun("ingest", cfg, cfg.output, inputs, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out = run_.out.path.resolve()
    names = source_names(list(inputs))
    tasks = [
        ShardTask(f"part-{i:05d}", [str(p)], str(out), cfg, names[i], inputs[storage.uri_of(p)])
        for i, p in enumerate(files)
    ]
    shards = run_.map(ingest_file, tasks, "files")
    check_shards(out, shards)
    examples = [e for r in shards for e in r["examples"]][:20]
    return run_.finish(shards, extra={"examples": examples})


def source_names(uris: list[str]) -> list[str]:
    """Each input as its path below the folder all of them share (their names, when they share one folder): what
    documents keep as `source`, and part of the id of a row without id or url."""
    parts = [u.split("?")[0].split("/") for u in uris]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return ["/".join(p[common:]) for p in parts]
