"""The token-shard format shared by `tokenize` (writer) and the trainer (reader).

A shard is an Arrow IPC file with one uint16 column `tokens` in a single chunk, so `pa.memory_map` +
`to_numpy(zero_copy_only=True)` gives the tokens without a copy. Every document is followed by EOT (50256):
`doc0 EOT doc1 EOT ...`, as in GPT-2's and nanoGPT's OpenWebText preparation. Schema metadata says how the
tokens were made; a reader that expects another tokenizer or version gets an explanation, not garbage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core import storage
from pipeline.core.dataset import atomic_path
from pipeline.core.errors import PipelineError

FORMAT = "owt-tokens"
FORMAT_VERSION = "1"
EOT_POSITION = "after"


def write_token_shard(path: str | Path, tokens: np.ndarray, meta: dict[str, str]) -> None:
    assert tokens.dtype == np.uint16
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": "uint16",
        "eot_position": EOT_POSITION,
        "n_tokens": str(len(tokens)),
        **meta,
    }
    schema = pa.schema([pa.field("tokens", pa.uint16())], metadata=metadata)
    table = pa.table({"tokens": pa.array(tokens, type=pa.uint16())}, schema=schema)
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink:
        with pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(table, max_chunksize=max(1, len(tokens)))


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with pa.memory_map(str(storage.pull(path))) as source:
            schema = pa.ipc.open_file(source).schema
    except (OSError, pa.ArrowInvalid) as e:
        raise PipelineError(f"{path}: not a readable token shard ({e}); rerun `tokenize`") from None
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def check_metadata(
    path: str | Path, meta: dict[str, str], tokenizer: str, vocab_sha256: str | None, eot_token: int | None = None
) -> None:
    """A shard's schema metadata against what the reader expects; a mismatch is explained in one line."""
    if meta.get("format") != FORMAT:
        raise PipelineError(f"{path}: not an {FORMAT} shard (format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise PipelineError(
            f"{path}: token format version {meta.get('format_version')}, this code reads {FORMAT_VERSION}; "
            "re-tokenize with this version or check out a matching one"
        )
    if meta.get("tokenizer") != tokenizer:
        raise PipelineError(
            f"{path}: tokenized with {meta.get('tokenizer')!r} but the model expects {tokenizer!r}; "
            "re-tokenize or change the model's tokenizer"
        )
    if vocab_sha256 and meta.get("vocab_sha256") != vocab_sha256:
        raise PipelineError(f"{path}: vocabulary hash differs from this machine's {tokenizer} (different BPE files?)")
    if meta.get("dtype") != "uint16":
        raise PipelineError(f"{path}: dtype {meta.get('dtype')!r}, expected uint16")
    if meta.get("eot_position") != EOT_POSITION:
        raise PipelineError(
            f"{path}: EOT {meta.get('eot_position')!r} each document, this code reads EOT {EOT_POSITION!r} it"
        )
    if eot_token is not None and meta.get("eot_token") != str(eot_token):
        raise PipelineError(f"{path}: EOT token {meta.get('eot_token')}, the model's {tokenizer} uses {eot_token}")


def mmap_tokens(path: str | Path) -> np.ndarray:
    """The shard's tokens as a read-only uint16 array backed by the memory-mapped file (no copy)."""
    source = pa.memory_map(str(storage.pull(path)))
    table = pa.ipc.open_file(source).read_all()
    col = table.column("tokens")
    if col.num_chunks == 0:
        return np.empty(0, dtype=np.uint16)
    if col.num_chunks != 1:
        raise PipelineError(f"{path}: {col.num_chunks} chunks, expected 1 (not written by `tokenize`?)")
    return col.chunk(0).to_numpy(zero_copy_only=True)


# Beside each token shard, its index: one row per document.
INDEX_SCHEMA = pa.schema(
    [
        ("token_start", pa.int64()),
        ("n_tokens", pa.int64()),  # EOT included
        ("url_hash", pa.string()),
        ("documents_file", pa.string()),  # relative to the dataset root
        ("documents_row", pa.int64()),
    ]
)


def shard_paths(out: Path, split: str, i: int) -> tuple[Path, Path]:
    """The i-th token shard of a split and its index: <out>/train/tokens-00003.arrow, <out>/index/train-00003.parquet"""
    return out / split / f"tokens-{i:05d}.arrow", out / "index" / f"{split}-{i:05d}.parquet"


def index_of(shard: Path) -> Path:
    return shard_paths(shard.parent.parent, shard.parent.name, int(shard.stem.rsplit("-", 1)[1]))[1]
