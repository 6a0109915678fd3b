"""make bench-scale: the extract stage (CPU-bound: trafilatura) on a one-node and on a two-node local Ray cluster.

Both clusters are started on this machine with `pipeline cluster up` (1 CPU per node) and stay up together; runs
alternate between them so both see the same machine load. Each run is the stage CLI as a driver joining the cluster
(`python -m pipeline extract --address ...`) over the same fetched dataset of real pages (bench/pages.py) dealt
into `--shards` shards, into a fresh output directory. Reported: the stage's own wall time (from its _stage.json),
pages/s, and the two-node / one-node throughput ratio (median of the runs' own ratios).

    python bench/scale_bench.py [--runs 5] [--shards 8] [--python-pages 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import fetched_dataset, real_pages  # noqa: E402
from pipeline.core.dataset import read_json  # noqa: E402
from pipeline.ops.cluster import cluster_down, cluster_up  # noqa: E402


def run_extract(address: str, fetched: Path, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipeline", "extract", "--set", f"input={fetched}", "--set", f"output={out}"]
    t = time.perf_counter()
    p = subprocess.run(cmd + ["--address", address], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"extract failed on {address}:\n{p.stderr[-3000:]}")
    stage = read_json(out / "_stage.json")
    workers = [read_json(f)["worker"] for f in (out / "_shards").glob("*.json")]
    busy: dict[str, float] = {}
    for w in workers:
        busy[w["node"]] = busy.get(w["node"], 0.0) + (w.get("task_s") or 0.0)
    nodes = set(busy)
    return {
        "stage_s": stage["wall_time_s"],
        "process_s": wall,
        "rows_in": stage["rows_in"],
        "rows_out": stage["rows_out"],
        "nodes": len(nodes),
        # seconds of task time per node, and the share of the stage's wall time the nodes were busy
        "busy_s": sorted(round(b, 1) for b in busy.values()),
        "utilization": round(sum(busy.values()) / (len(nodes) * stage["wall_time_s"]), 3),
        "task_s_per_page": round(sum(busy.values()) / stage["rows_in"], 4),
        # the slowest and the median shard task: a straggler leaves a node idle at the end
        "slowest_task_s": round(max(w.get("task_s") or 0.0 for w in workers), 2),
        "median_task_s": round(statistics.median(w.get("task_s") or 0.0 for w in workers), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--python-pages", type=int, default=200)
    args = ap.parse_args()
    pages = real_pages(args.python_pages)
    with tempfile.TemporaryDirectory(prefix="owt-scale-") as tmp:
        root = Path(tmp)
        fetched = fetched_dataset(pages, root / "fetched", shards=args.shards)
        clusters = {}
        try:
            for n in (1, 2):
                clusters[n] = cluster_up(root / f"c{n}", workers=n - 1, cpus=1, memory_gb=3)
            rows = []
            for run in range(args.runs):
                row = {}
                for n in (1, 2):
                    r = run_extract(clusters[n]["address"], fetched, root / f"out-{n}-{run}")
                    assert r["rows_in"] == len(pages), r  # every page went through the stage
                    row[n] = r
                    print(json.dumps({"run": run, "nodes": n, **r}), flush=True)
                rows.append(row)
        finally:
            for n in clusters:
                cluster_down(root / f"c{n}")
    pps = {n: [len(pages) / r[n]["stage_s"] for r in rows] for n in (1, 2)}
    ratios = [r[1]["stage_s"] / r[2]["stage_s"] for r in rows]
    result = {
        "pages": len(pages),
        "shards": args.shards,
        "runs": args.runs,
        "one_node_pages_per_s": round(statistics.median(pps[1]), 2),
        "two_nodes_pages_per_s": round(statistics.median(pps[2]), 2),
        "speedup": round(statistics.median(ratios), 3),
        "all_speedups": [round(x, 3) for x in ratios],
        "nodes_used": {n: rows[0][n]["nodes"] for n in (1, 2)},
        "utilization": {n: statistics.median(r[n]["utilization"] for r in rows) for n in (1, 2)},
        "task_s_per_page": {n: statistics.median(r[n]["task_s_per_page"] for r in rows) for n in (1, 2)},
        "slowest_task_s": {n: statistics.median(r[n]["slowest_task_s"] for r in rows) for n in (1, 2)},
        "median_task_s": {n: statistics.median(r[n]["median_task_s"] for r in rows) for n in (1, 2)},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"extract: 1 node {result['one_node_pages_per_s']} pages/s, 2 nodes {result['two_nodes_pages_per_s']} pages/s:"
        f" {result['speedup']}x (ideal 2x; median of {args.runs} runs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
