"""The tokenizer and a fingerprint of its vocabulary, loaded once per worker process (never per document)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from pipeline.core.errors import PipelineError


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


def token_counts(texts: list[str], name: str = "gpt2") -> list[int]:
    return [len(t) for t in tokenizer(name).encode_ordinary_batch(texts)] if texts else []
