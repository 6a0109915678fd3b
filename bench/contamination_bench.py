"""make bench-contamination: how fast the 8-gram Bloom filter of the contamination report builds, and the false-positive
rates it ends with, on real text (docs/CONTAMINATION.md quotes these figures).

- corpus: the Debian Administrator's Handbook, every page of its 26 language folders, main text by trafilatura
  (cached in runs/eval-dedup/debian-handbook.json, shared with `make eval-dedup`), as one Parquet shard;
- `count`: pass 1 alone (`count_corpus_ngrams`); `build`: both passes (`build_filter`, which counts, sizes the
  filter and adds every n-gram); MB/s of text and n-grams/s, the median of `--runs` runs;
- the filter's own figures: bytes, k, `expected_fp_rate` (formula, repeats counted) and `fp_rate_from_fill`;
- `insert`: random hashes added to filters of 7 MB and 960 MB, in M items/s (scattered writes: the big filter
  misses the caches, as a full-size corpus filter does).

    python bench/contamination_bench.py [--runs 3] [--ngram 8] [--fp-rate 1e-4]
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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.eval_dedup import OUT, SHARED, extracted  # noqa: E402
from pipeline.corpus.contamination import BloomFilter, build_filter, count_corpus_ngrams  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def insert_rate(megabytes: float, items: int, rng: np.random.Generator) -> float:
    bf = BloomFilter(int(megabytes * 8e6) // 64 * 64, 13)
    hashes = rng.integers(0, 2**63, size=items, dtype=np.uint64)
    seconds, _ = timed(lambda: bf.add(hashes))
    return items / seconds / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ngram", type=int, default=8)
    ap.add_argument("--fp-rate", type=float, default=1e-4)
    args = ap.parse_args()
    texts = extracted(
        SHARED / "web-corpus" / "debian-handbook_11.20220922_html.tar.xz",
        lambda n: n.endswith(".html"),
        OUT / "debian-handbook.json",
    )
    docs = [t for t in texts.values() if t]
    mb = sum(len(t.encode()) for t in docs) / 1e6
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="owt-contamination-") as tmp:
        shard = Path(tmp) / "handbook.parquet"
        pq.write_table(pa.table({"text": docs}), shard)
        counts, builds, bf = [], [], None
        for _ in range(args.runs):
            seconds, n_items = timed(lambda: count_corpus_ngrams([shard], args.ngram, None, progress=False))
            counts.append(seconds)
            seconds, bf = timed(lambda: build_filter([shard], args.ngram, args.fp_rate, None, progress=False))
            builds.append(seconds)
    inserts = {mb_: [insert_rate(mb_, 2_000_000, rng) for _ in range(args.runs)] for mb_ in (7, 960)}
    p = bf.params()
    result = {
        "corpus": {"documents": len(docs), "text_mb": round(mb, 1), "ngrams": n_items},
        "count_mb_per_s": round(mb / statistics.median(counts), 2),
        "build_s": round(statistics.median(builds), 2),
        "build_mb_per_s": round(mb / statistics.median(builds), 2),
        "build_m_ngrams_per_s": round(n_items / statistics.median(builds) / 1e6, 3),
        "all_build_s": [round(s, 2) for s in builds],
        "filter": {k: p[k] for k in ("bytes", "k", "items_added", "expected_fp_rate", "fill", "fp_rate_from_fill")},
        "insert_m_per_s": {f"{k} MB": round(statistics.median(v), 2) for k, v in inserts.items()},
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"contamination filter: {result['build_mb_per_s']} MB/s of text ({result['build_m_ngrams_per_s']} M "
        f"{args.ngram}-grams/s) over both passes; expected fp {p['expected_fp_rate']:.1e}, from fill "
        f"{p['fp_rate_from_fill']:.1e}; inserts {result['insert_m_per_s']} (median of {args.runs})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
