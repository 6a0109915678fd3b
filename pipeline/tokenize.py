"""tokenize: documents -> GPT-2 token shards (uint16, EOT after every document), split train/val by doc hash.

Per input shard: `train/<shard>.arrow`, `val/<shard>.arrow` (see pipeline/token_format.py) and
`docs/<shard>.parquet`, which maps each document to its split, token offset and length (provenance).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.config import StageConfig
from pipeline.dataset import read_parquet, write_parquet
from pipeline.errors import PipelineError
from pipeline.resources import tokenizer, vocab_sha256
from pipeline.stage import ShardTask, finish_shard, run_shardwise
from pipeline.token_format import write_token_shard


class TokenizeConfig(StageConfig):
    input: str
    output: str
    tokenizer: str = "gpt2"
    val_fraction: float = Field(0.0005, ge=0.0, le=1.0)  # nanoGPT's OpenWebText split
    threads: int = Field(2, ge=1)

    transport_keys = frozenset({"threads"})


def split_of(url_hash: str, val_fraction: float) -> str:
    """By document hash, so a document stays in its split when the corpus grows."""
    return "val" if int(url_hash, 16) / 2**64 < val_fraction else "train"


DOCS_SCHEMA = pa.schema(
    [
        ("url_hash", pa.string()),
        ("url", pa.string()),
        ("split", pa.string()),
        ("token_start", pa.int64()),
        ("n_tokens", pa.int64()),
    ]
)


def tokenize_shard(task: ShardTask) -> dict[str, Any]:
    cfg: TokenizeConfig = task.config
    (path,) = task.inputs
    t = read_parquet(path, columns=["url_hash", "url", "text"])
    enc = tokenizer(cfg.tokenizer)
    if enc.n_vocab > 1 << 16:
        raise PipelineError(f"tokenizer {cfg.tokenizer!r} has {enc.n_vocab:,} tokens: more than uint16 shards hold")
    # encode_to_numpy with no special tokens is encode_ordinary, straight into a uint32 array: no Python list of ints
    # per document (faster than encode_ordinary_batch itself; make bench-tokenize).
    encode = partial(enc.encode_to_numpy, disallowed_special=())
    texts = t.column("text").to_pylist()
    if cfg.threads > 1:
        with ThreadPoolExecutor(cfg.threads) as pool:
            encoded = list(pool.map(encode, texts))
    else:
        encoded = [encode(x) for x in texts]
    ids, urls = t.column("url_hash").to_pylist(), t.column("url").to_pylist()
    eot = np.array([enc.eot_token], dtype=np.uint32)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    pos = {"train": 0, "val": 0}
    docs: dict[str, list[Any]] = {name: [] for name in DOCS_SCHEMA.names}
    for uid, url, toks in zip(ids, urls, encoded):
        split = split_of(uid, cfg.val_fraction)
        n = len(toks) + 1  # EOT after every document
        for k, v in (
            ("url_hash", uid),
            ("url", url),
            ("split", split),
            ("token_start", pos[split]),
            ("n_tokens", n),
        ):
            docs[k].append(v)
        parts[split] += (toks, eot)
        pos[split] += n
    out = Path(task.output)
    meta = {
        "tokenizer": cfg.tokenizer,
        "vocab_sha256": vocab_sha256(cfg.tokenizer),
        "eot_token": str(enc.eot_token),
        "source_shard": task.name,
    }
    files = []
    for split, arrays in parts.items():
        flat = np.concatenate(arrays).astype(np.uint16) if arrays else np.empty(0, np.uint16)
        p = out / split / f"{task.name}.arrow"
        write_token_shard(p, flat, meta | {"split": split, "n_docs": str(len(arrays) // 2)})
        files.append(p)
    docs_path = out / "docs" / f"{task.name}.parquet"
    write_parquet(pa.table(docs, schema=DOCS_SCHEMA), docs_path)
    files.append(docs_path)
    return finish_shard(
        task,
        files,
        rows_in=t.num_rows,
        rows_out=t.num_rows,
        extra={
            "tokens": {"train": pos["train"], "val": pos["val"]},
            "docs": {k: len(v) // 2 for k, v in parts.items()},
        },
    )


def _totals(shards: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: {s: sum(r[key][s] for r in shards) for s in ("train", "val")} for key in ("tokens", "docs")}


def run(cfg: TokenizeConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    return run_shardwise("tokenize", cfg, tokenize_shard, runner, overwrite, desc="documents", totals=_totals)
