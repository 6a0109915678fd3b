"""datatrove's MinHash dedup on a folder of parquet shards, run in .venv-datatrove by bench/dedup_bench.py.

The four steps of datatrove's own example (signatures, buckets, clusters, filter), local executor, `workers`
processes; 5-grams and the same LSH shape as ours (32 buckets x 4 hashes). Prints JSON: wall time per step and the
cluster of every duplicated document (id -> cluster number).

    .venv-datatrove/bin/python bench/datatrove_dedup.py <parquet dir> <work dir> [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.stages.dedup import (
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.stages.dedup.minhash import MinhashConfig
from datatrove.pipeline.writers import JsonlWriter


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("docs")
    ap.add_argument("work")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--buckets", type=int, default=32)
    ap.add_argument("--hashes", type=int, default=4)
    args = ap.parse_args()
    work = Path(args.work)
    shards = sorted(Path(args.docs).glob("*.parquet"))
    config = MinhashConfig(n_grams=5, num_buckets=args.buckets, hashes_per_bucket=args.hashes)

    def reader() -> ParquetReader:
        return ParquetReader(args.docs, glob_pattern="*.parquet", text_key="text", id_key="url_hash")

    steps = {
        "signatures": LocalPipelineExecutor(
            [reader(), MinhashDedupSignature(output_folder=str(work / "signatures"), config=config)],
            tasks=len(shards),
            workers=args.workers,
            logging_dir=str(work / "logs" / "signatures"),
        ),
        "buckets": LocalPipelineExecutor(
            [
                MinhashDedupBuckets(
                    input_folder=str(work / "signatures"), output_folder=str(work / "buckets"), config=config
                )
            ],
            tasks=config.num_buckets,
            workers=args.workers,
            logging_dir=str(work / "logs" / "buckets"),
        ),
        "clusters": LocalPipelineExecutor(
            [
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"),
                    output_folder=str(work / "remove_ids"),
                    config=config,
                    save_cluster_id=True,
                )
            ],
            tasks=1,
            logging_dir=str(work / "logs" / "clusters"),
        ),
        "filter": LocalPipelineExecutor(
            [
                reader(),
                MinhashDedupFilter(
                    input_folder=str(work / "remove_ids"),
                    exclusion_writer=JsonlWriter(str(work / "removed"), compression=None),
                ),
                JsonlWriter(str(work / "output")),
            ],
            tasks=len(shards),
            workers=args.workers,
            logging_dir=str(work / "logs" / "filter"),
        ),
    }
    times = {}
    for name, executor in steps.items():
        t = time.perf_counter()
        executor.run()
        times[name] = round(time.perf_counter() - t, 2)
    # The cluster of every duplicated document, named by its id: file index -> shard, row -> url_hash.
    import pyarrow.parquet as pq

    ids = [pq.read_table(p, columns=["url_hash"])["url_hash"].to_pylist() for p in shards]
    clusters: dict[str, int] = {}
    for f in sorted((work / "remove_ids").glob("*.clusters")):
        data = f.read_bytes()
        file = int(f.stem)
        for doc, cluster in struct.iter_unpack("<II", data):
            clusters[ids[file][doc]] = cluster
    removed = []
    for f in sorted((work / "removed").glob("*.jsonl")):
        removed += [json.loads(line)["id"] for line in f.read_text().splitlines() if line]
    print(json.dumps({"times_s": times, "clusters": clusters, "removed": removed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
