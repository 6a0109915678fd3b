"""tokenize: documents -> GPT-2 token shards of a set size (uint16, EOT after every document), split by doc hash.

Two phases, each resumable shard by shard:

1. encode (one task per input shard): tiktoken over every document (threads), EOT after each; writes the
   published document shard `documents/<shard>.parquet` (every input column + `split`) and, under `_work/`, the
   shard's tokens per split with each document's length.
2. pack (one task per output shard): the encoded documents, in input order, cut at document boundaries into
   shards of about `shard_tokens` tokens: `train/tokens-00000.arrow`, `val/tokens-00000.arrow` (format:
   pipeline/text/token_format.py) and beside each its index `index/<split>-00000.parquet`: per document its token
   start and length in the shard and where its text is (documents file, row). `_work/` is removed at the end.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.core.config import Resources, StageConfig
from pipeline.core.dataset import Dataset, read_parquet, write_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, StageRun, combined_fingerprint, finish_shard, verify_entries
from pipeline.text.token_format import INDEX_SCHEMA, mmap_tokens, shard_paths, write_token_shard
from pipeline.text.vocab import tokenizer, vocab_sha256

SPLITS = ("train", "val")
WORK = "_work/encoded"


class TokenizeConfig(StageConfig):
    input: str
    output: str
    tokenizer: str = "gpt2"
    val_fraction: float = Field(0.0005, ge=0.0, le=1.0)  # nanoGPT's OpenWebText split
    # ~100M tokens = 200 MB a shard: few files for 9B tokens, each small enough to hash, copy and map at once.
    shard_tokens: int = Field(100_000_000, ge=1)
    # tiktoken threads per encode task, and the CPUs each task asks Ray for; None: the task's resources.cpus (1)
    threads: int | None = Field(None, ge=1)

    transport_keys = frozenset({"threads"})

    @property
    def encode_threads(self) -> int:
        return self.threads or max(1, int(self.resources.cpus))

    def task_resources(self) -> Resources:
        return self.resources.model_copy(update={"cpus": float(self.encode_threads)})


def split_of(url_hash: str, val_fraction: float) -> str:
    """By document hash, so a document stays in its split when the corpus grows."""
    return "val" if int(url_hash, 16) / 2**64 < val_fraction else "train"


LENGTHS_SCHEMA = pa.schema([("row", pa.int64()), ("n_tokens", pa.int64())])


def token_meta(cfg: TokenizeConfig, eot: int) -> dict[str, str]:
    return {"tokenizer": cfg.tokenizer, "vocab_sha256": vocab_sha256(cfg.tokenizer), "eot_token": str(eot)}


def encode_texts(texts: list[str], name: str, threads: int) -> list[np.ndarray]:
    enc = tokenizer(name)
    if enc.n_vocab > 1 << 16:
        raise PipelineError(f"tokenizer {name!r} has {enc.n_vocab:,} tokens: more than uint16 shards hold")
    # encode_to_numpy with no special tokens is encode_ordinary, straight into a uint32 array: no Python list of ints
    # per document (faster than encode_ordinary_batch itself; make bench-tokenize).
    encode = partial(enc.encode_to_numpy, disallowed_special=())
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(encode, texts))
    return [encode(x) for x in texts]


def encode_shard(task: ShardTask[TokenizeConfig, None]) -> Record:
    cfg = task.config
    (path,) = task.inputs
    docs = read_parquet(path)
    encoded = encode_texts(docs.column("text").to_pylist(), cfg.tokenizer, cfg.encode_threads)
    eot_id = tokenizer(cfg.tokenizer).eot_token
    eot = np.array([eot_id], dtype=np.uint32)
    splits = [split_of(h, cfg.val_fraction) for h in docs.column("url_hash").to_pylist()]
    out = Path(task.output)
    documents = out / "documents" / f"{task.name}.parquet"
    write_parquet(docs.append_column("split", pa.array(splits, pa.string())), documents)
    files, tokens, counts = [documents], {}, {}
    for split in SPLITS:
        rows = [i for i, s in enumerate(splits) if s == split]
        flat = np.concatenate([a for i in rows for a in (encoded[i], eot)]) if rows else np.empty(0, np.uint32)
        tok_path, len_path = out / WORK / split / f"{task.name}.arrow", out / WORK / split / f"{task.name}.parquet"
        write_token_shard(tok_path, flat.astype(np.uint16), token_meta(cfg, eot_id))
        lengths = [len(encoded[i]) + 1 for i in rows]
        write_parquet(pa.table({"row": rows, "n_tokens": lengths}, schema=LENGTHS_SCHEMA), len_path)
        files += [tok_path, len_path]
        tokens[split], counts[split] = int(sum(lengths)), len(rows)
    return finish_shard(
        task,
        files,
        rows_in=docs.num_rows,
        rows_out=docs.num_rows,
        extra={"tokens": tokens, "docs": counts},
        records_dir="_encode",
    )


@dataclass(frozen=True)
class Piece:
    """A run of consecutive documents of one encoded shard, as they go into a token shard."""

    source: str  # the encoded shard (= input shard) name
    token_lo: int  # [token_lo, token_hi) of its tokens in that split
    token_hi: int
    rows: list[int]  # the documents' rows in its documents/ file
    lengths: list[int]  # their token counts, EOT included


@dataclass(frozen=True)
class Pack:
    """The payload of a pack task: which token shard it writes, from which pieces."""

    split: str
    index: int
    pieces: list[Piece]


def layout(encoded: list[tuple[str, dict[str, pa.Table]]], split: str, shard_tokens: int) -> list[list[Piece]]:
    """Output shards of one split as lists of pieces (a run of consecutive documents of one encoded shard).

    A shard closes at the first document boundary at or past `shard_tokens`, so documents are never cut and every
    shard but the last holds at least `shard_tokens` tokens (and less than that plus one document)."""
    shards: list[list[Piece]] = []
    current: list[Piece] = []
    filled = 0
    for name, by_split in encoded:
        lengths = by_split[split].column("n_tokens").to_numpy()
        rows = by_split[split].column("row").to_numpy()
        ends = np.cumsum(lengths)
        lo = 0  # first document of this encoded shard not yet placed
        while lo < len(lengths):
            base = ends[lo - 1] if lo else 0
            # the first document whose end reaches the remaining room closes the shard
            room = shard_tokens - filled
            hi = int(np.searchsorted(ends - base, room, side="left")) + 1
            hi = min(hi, len(lengths))
            current.append(Piece(name, int(base), int(ends[hi - 1]), rows[lo:hi].tolist(), lengths[lo:hi].tolist()))
            filled += int(ends[hi - 1] - base)
            lo = hi
            if filled >= shard_tokens:
                shards.append(current)
                current, filled = [], 0
    if current:
        shards.append(current)
    return shards


def pack_shard(task: ShardTask[TokenizeConfig, Pack]) -> Record:
    cfg = task.config
    split, pieces = task.payload.split, task.payload.pieces
    out = Path(task.output)
    arrays: list[np.ndarray] = []
    index: dict[str, list[Any]] = {name: [] for name in INDEX_SCHEMA.names}
    start = 0
    for p in pieces:
        src = out / WORK / split / f"{p.source}.arrow"
        arrays.append(mmap_tokens(src)[p.token_lo : p.token_hi])
        url_hashes = read_parquet(out / "documents" / f"{p.source}.parquet", columns=["url_hash"]).column(0)
        starts = start + np.concatenate([[0], np.cumsum(p.lengths)[:-1]])
        index["token_start"] += starts.tolist()
        index["n_tokens"] += p.lengths
        index["url_hash"] += url_hashes.take(p.rows).to_pylist()
        index["documents_file"] += [f"documents/{p.source}.parquet"] * len(p.rows)
        index["documents_row"] += p.rows
        start += p.token_hi - p.token_lo
    tokens = np.concatenate(arrays) if arrays else np.empty(0, np.uint16)
    enc = tokenizer(cfg.tokenizer)
    meta = token_meta(cfg, enc.eot_token) | {"split": split, "n_docs": str(len(index["url_hash"]))}
    tok_path, idx_path = shard_paths(out, split, task.payload.index)
    write_token_shard(tok_path, tokens, meta)
    write_parquet(pa.table(index, schema=INDEX_SCHEMA), idx_path)
    n_docs = len(index["url_hash"])
    return finish_shard(
        task,
        [tok_path, idx_path],
        rows_in=n_docs,
        rows_out=n_docs,
        extra={"split": split, "tokens": len(tokens), "documents": n_docs},
        records_dir="_pack",
    )


def run(cfg: TokenizeConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    src = Dataset(cfg.input)
    # _work/ (the encoded tokens) goes once _stage.json is written, also when a rerun finds a run killed in between.
    run_ = StageRun("tokenize", cfg, cfg.output, {src.uri: src.fingerprint()}, runner, overwrite, scratch=("_work",))
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out = run_.out.path.resolve()
    enc_tasks = [
        ShardTask(p.stem, [str(p.resolve())], str(out), cfg, None, e["sha256"], verify_entries(src.path, [e]))
        for p, e in src.shard_entries(".parquet")
    ]
    encoded = run_.map(encode_shard, enc_tasks, "documents", records_dir="_encode")
    lengths = [(t.name, {s: read_parquet(out / WORK / s / f"{t.name}.parquet") for s in SPLITS}) for t in enc_tasks]
    enc_fp = combined_fingerprint([f["sha256"] for r in encoded for f in r["files"]])
    pack_tasks: list[ShardTask[TokenizeConfig, Pack]] = []
    for split in SPLITS:
        for i, pieces in enumerate(layout(lengths, split, cfg.shard_tokens)):
            # the same pieces from the same encoded bytes: the packed shard on disk is still right
            fp = combined_fingerprint([enc_fp, repr([(p.source, p.token_lo, p.token_hi) for p in pieces])])
            pack_tasks.append(ShardTask(f"{split}-{i:05d}", [], str(out), cfg, Pack(split, i, pieces), fp))
    packed = run_.map(pack_shard, pack_tasks, "token shards", records_dir="_pack")
    shards = [{**r, "files": [f for f in r["files"] if not f["path"].startswith("_work/")]} for r in encoded]
    shards += packed
    totals = {
        "tokens": {s: sum(r["tokens"][s] for r in encoded) for s in SPLITS},
        "docs": {s: sum(r["docs"][s] for r in encoded) for s in SPLITS},
        "token_shards": {s: sum(r["split"] == s for r in packed) for s in SPLITS},
    }
    for s in SPLITS:
        packed_tokens = sum(r["tokens"] for r in packed if r["split"] == s)
        if packed_tokens != totals["tokens"][s]:
            raise PipelineError(f"tokenize: {s} shards hold {packed_tokens:,} tokens, encoded {totals['tokens'][s]:,}")
    # Documents are counted once, by their document shards (the token shards hold the same documents).
    docs_total = sum(r["rows_out"] for r in encoded)
    return run_.finish(shards, rows_in=docs_total, rows_out=docs_total, extra=totals)
