"""make bench-tokenize: MB/s per core of the tokenize stage's shard task against raw tiktoken
`encode_ordinary_batch` on the same texts, in the same run (one thread each: per core).

The shard: the html-benchmark articles repeated to ~9 MB of text, as a finished dedup-output dataset of one shard.
Ours = the whole tokenize stage in-process on one core (threads=1): read the shard, encode, append EOT, split
train/val by hash, write the document shard and the encoded tokens, pack them into token shards of 1M tokens with
their indexes, hash every file, write the stage manifest.

    python bench/tokenize_bench.py [--repeat 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

from pipeline.core.dataset import file_entry, write_json, write_parquet
from pipeline.core.runner import LocalRunner
from pipeline.stages.tokenize import TokenizeConfig
from pipeline.stages.tokenize import run as tokenize_run
from pipeline.text.vocab import tokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    pages = json.loads((SHARED / "html-benchmark" / "ground-truth.json").read_text())
    texts = [p["articleBody"] for p in pages.values()] * args.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    enc = tokenizer("gpt2")
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "in" / "part-00000.parquet"
        n = len(texts)
        write_parquet(
            pa.table(
                {"url_hash": [f"{i * 2654435761 % 2**64:016x}" for i in range(n)], "url": ["u"] * n, "text": texts}
            ),
            shard,
        )
        entry = file_entry(shard, shard.parent)
        write_json(
            shard.parent / "_stage.json",
            {"stage": "dedup", "output_fingerprint": entry["sha256"], "shards": [{"files": [entry]}]},
        )
        raw, ours = [], []
        for i in range(args.runs):  # interleaved
            t = time.perf_counter()
            enc.encode_ordinary_batch(texts, num_threads=1)
            raw.append(mb / (time.perf_counter() - t))
            out = str(Path(tmp) / f"out-{i}")
            cfg = TokenizeConfig(input=str(shard.parent), output=out, threads=1, shard_tokens=1_000_000)
            t = time.perf_counter()
            tokenize_run(cfg, LocalRunner())
            ours.append(mb / (time.perf_counter() - t))
    r, o = statistics.median(raw), statistics.median(ours)
    ratio = statistics.median(y / x for x, y in zip(raw, ours))
    result = {
        "mb_text": round(mb, 2),
        "docs": n,
        "runs": args.runs,
        "raw_mb_per_s": round(r, 2),
        "tokenize_mb_per_s": round(o, 2),
        "ratio_tokenize_vs_raw": round(ratio, 3),
        "all_raw": [round(x, 2) for x in raw],
        "all_tokenize": [round(x, 2) for x in ours],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    print(f"tokenize {o:.2f} MB/s per core; raw encode_ordinary_batch {r:.2f} MB/s; ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
