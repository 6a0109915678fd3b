"""make bench-tokenize: MB/s per core of the tokenize stage's shard task against raw tiktoken
`encode_ordinary_batch` on the same texts, in the same run (one thread each: per core).

The shard: the html-benchmark articles repeated to ~9 MB of text, as a dedup-output parquet shard. Ours = what one
tokenize task does: read the shard, encode, append EOT, split train/val by hash, flatten to uint16, write the token
shards and the provenance table.

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

from pipeline.dataset import write_parquet
from pipeline.resources import tokenizer
from pipeline.stage import ShardTask
from pipeline.tokenize import TokenizeConfig, tokenize_shard

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
        cfg = TokenizeConfig(input=str(shard.parent), output=str(Path(tmp) / "out"), threads=1)
        raw, ours = [], []
        for _ in range(args.runs):  # interleaved
            t = time.perf_counter()
            enc.encode_ordinary_batch(texts, num_threads=1)
            raw.append(mb / (time.perf_counter() - t))
            t = time.perf_counter()
            tokenize_shard(ShardTask("part-00000", [str(shard)], cfg.output, cfg, {"input_fingerprint": "x"}))
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
