"""whereis: a token position in a token shard -> its document -> its URL and the Reddit submissions behind it.

    python -m pipeline whereis <tokens>/<split>/tokens-<n>.arrow <position>

The shard's index (`<tokens>/index/<split>-<n>.parquet`) gives the document that holds the position and its row in
the document shards; the stage manifests lead back, input by input, through every dataset before it to harvest's
links row of its URL: Reddit score, submission ids, subreddits, first submission time. A published or
downloaded corpus (no stage manifests) answers from the document row, which carries the same columns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from pipeline.core.dataset import Dataset, lineage, read_parquet, shard_name
from pipeline.core.errors import PipelineError
from pipeline.text.token_format import index_of, mmap_tokens, read_metadata
from pipeline.text.urls import bucket_of
from pipeline.text.vocab import tokenizer


def locate(shard: str | Path, position: int, context: int = 8) -> dict[str, Any]:
    shard = Path(shard)
    tokens = mmap_tokens(shard)
    if not 0 <= position < len(tokens):
        raise PipelineError(f"{shard}: position {position} is outside the shard (0..{len(tokens) - 1})")
    tokens_dir = shard.parent.parent
    index = read_parquet(index_of(shard))
    starts = index["token_start"].to_numpy()
    i = int(np.searchsorted(starts, position, side="right")) - 1
    if i < 0:
        raise PipelineError(f"{index_of(shard)}: no document starts at or before token {position}")
    doc = index.slice(i, 1).to_pylist()[0]
    row = read_parquet(tokens_dir / doc["documents_file"]).slice(doc["documents_row"], 1).to_pylist()[0]
    if row["url_hash"] != doc["url_hash"]:
        raise PipelineError(f"{index_of(shard)} row {i}: points at another document in {doc['documents_file']}")
    enc = tokenizer(read_metadata(shard).get("tokenizer", "gpt2"))
    lo, hi = max(doc["token_start"], position - context), min(doc["token_start"] + doc["n_tokens"], position + context)
    return {
        "shard": str(shard),
        "position": position,
        "token": int(tokens[position]),
        "context": enc.decode(tokens[lo:hi].tolist()),
        "document": {
            "url_hash": doc["url_hash"],
            "url": row["url"],
            "split": row.get("split"),
            "documents_file": doc["documents_file"],
            "documents_row": doc["documents_row"],
            "token_start": doc["token_start"],
            "n_tokens": doc["n_tokens"],
            "offset_in_document": position - doc["token_start"],
        },
        "reddit": reddit_of(tokens_dir, row),
    }


REDDIT_KEYS = ("score", "n_submissions", "submission_ids", "subreddits", "first_created_utc", "domain")


def reddit_of(tokens_dir: Path, row: dict[str, Any]) -> dict[str, Any] | None:
    """The Reddit side of a document: the columns its row carries (so a published or downloaded corpus answers
    too), and, in a pipeline run's output, the harvest links row itself, found through the stage manifests."""
    out = {k: row[k] for k in REDDIT_KEYS if k in row}
    if Dataset(tokens_dir).is_complete():
        out |= links_row(tokens_dir, row["url"], row["url_hash"]) or {}
    return out or None


def links_row(tokens_dir: Path, url: str, url_hash: str) -> dict[str, Any] | None:
    """The links row (harvest output) of a URL; None if not there. Harvest put the URL in the shard of its bucket,
    so only that shard is read."""
    harvested = [(ds, m) for ds, m in lineage(tokens_dir) if m["stage"] == "harvest"]
    if not harvested:
        return None
    ds, manifest = harvested[0]
    shard = ds.path / f"{shard_name(bucket_of(url, manifest['config']['num_shards']))}.parquet"
    links = read_parquet(shard)
    row = links.filter(pc.equal(links["url_hash"], url_hash))
    if not row.num_rows:
        return None
    r = row.to_pylist()[0]
    return {k: r[k] for k in REDDIT_KEYS if k in r} | {"links_shard": str(shard)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline whereis", description=__doc__.splitlines()[0])
    ap.add_argument("shard", help="a token shard: <tokens>/train/tokens-00000.arrow")
    ap.add_argument("position", type=int, help="token position in that shard")
    args = ap.parse_args(argv)
    print(json.dumps(locate(args.shard, args.position), indent=2, ensure_ascii=False))
    return 0
