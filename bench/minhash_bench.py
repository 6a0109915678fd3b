"""make bench-dedup, part 1: MinHash signatures per second on one core, ours against datasketch, in the same run.

2,000-word documents cut from real article text (html-benchmark ground truth), 128 permutations, 5-grams.
Measured, interleaved, in every run:
- ours: text -> signature (normalization, words, shingle hashes, permutations: everything);
- datasketch update_batch: `MinHash(scheme="affine32").update_batch(shingles)` with its default sha1 hash, the
  shingles built beforehand and not timed (the issue's baseline);
- datasketch, same hash: the same with our shingle hash function, whose signatures equal ours exactly (checked).

    python bench/minhash_bench.py [--docs 150] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from datasketch import MinHash
from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

from pipeline.text.minhash import SCHEME, MinHasher, shingle_hash, shingles


def documents(n: int, words: int = 2000) -> list[str]:
    pages = json.loads((SHARED / "html-benchmark" / "ground-truth.json").read_text())
    lines = [line for p in pages.values() for line in p["articleBody"].split("\n")]
    docs, current, count, i = [], [], 0, 0
    while len(docs) < n:  # whole lines, so documents keep their paragraphs; wraps around the corpus
        line = lines[i % len(lines)]
        current.append(line)
        count += len(line.split())
        i += 1
        if count >= words:
            docs.append("\n".join(current))
            current, count = [], 0
    return docs


def per_doc_ms(fn, items) -> float:
    t = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - t) / len(items) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=150)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    docs = documents(args.docs)
    hasher = MinHasher(num_perm=128, seed=1, ngram=5)
    sets = [list(shingles(d, 5)) for d in docs]

    def datasketch_default(s: list[bytes]) -> None:
        MinHash(num_perm=128, seed=1, scheme=SCHEME).update_batch(s)

    def datasketch_same_hash(s: list[bytes]) -> None:
        MinHash(num_perm=128, seed=1, scheme=SCHEME, hashfunc=shingle_hash).update_batch(s)

    for d in docs:  # the exactness claim, on the benchmark's own documents
        assert np.array_equal(hasher.signature(d), hasher.reference(d))
    ours, base, same = [], [], []
    for _ in range(args.runs):
        ours.append(per_doc_ms(hasher.signature, docs))
        base.append(per_doc_ms(datasketch_default, sets))
        same.append(per_doc_ms(datasketch_same_hash, sets))
    o, b, s = (statistics.median(x) for x in (ours, base, same))
    result = {
        "docs": len(docs),
        "words_per_doc": round(statistics.mean(len(d.split()) for d in docs)),
        "shingles_per_doc": round(statistics.mean(len(x) for x in sets)),
        "runs": args.runs,
        "ours_ms_per_doc": round(o, 3),
        "ours_signatures_per_s": round(1e3 / o),
        "datasketch_update_batch_ms": round(b, 3),
        "datasketch_signatures_per_s": round(1e3 / b),
        "speedup_vs_datasketch": round(statistics.median(x / y for x, y in zip(base, ours)), 2),
        "datasketch_same_hash_ms": round(s, 3),
        "speedup_vs_datasketch_same_hash": round(statistics.median(x / y for x, y in zip(same, ours)), 2),
        "signatures_identical": True,
        "all_ours_ms": [round(x, 3) for x in ours],
        "all_datasketch_ms": [round(x, 3) for x in base],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"signatures: ours {1e3 / o:,.0f}/s per core ({o:.2f} ms/doc, text to signature); datasketch update_batch "
        f"{1e3 / b:,.0f}/s ({b:.2f} ms, shingles given); {result['speedup_vs_datasketch']}x; identical signatures"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
