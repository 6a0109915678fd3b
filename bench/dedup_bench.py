"""make bench-dedup, part 2: the dedup stage end to end on generated documents with planted clusters, on the local
2-core Ray, against datatrove's MinHash dedup on the same shards in the same run.

Documents: 100-400 words drawn from the word frequencies of real articles (html-benchmark); 10% of them are bases of
planted clusters with 1-3 copies each: exact copies (case and punctuation changed) and near copies (1% or 2% of
words replaced: Jaccard of 5-grams ~0.9 and ~0.8). Everything else is unrelated (Jaccard ~0).
Reported: wall time, peak memory (resident set of the whole process tree, sampled every 0.2 s: Ray workers, raylet
and object store included; pages shared between processes are counted once per process, so it overstates), the
removed count against the planted truth, and agreement with datatrove (identical clusters; removed sets).

    python bench/dedup_bench.py [--docs 1000000] [--shard-docs 25000] [--skip-datatrove]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.dataset import STAGE_FILE, file_entry, shard_name, write_json, write_parquet

ROOT = Path(__file__).resolve().parents[1]
from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

DATATROVE_PY = ROOT / ".venv-datatrove" / "bin" / "python"


def vocabulary() -> tuple[np.ndarray, np.ndarray]:
    pages = json.loads((SHARED / "html-benchmark" / "ground-truth.json").read_text())
    counts = Counter(w for p in pages.values() for w in p["articleBody"].split())
    words, freq = zip(*counts.most_common())
    p = np.array(freq, dtype=np.float64)
    return np.array(words, dtype=object), p / p.sum()


def generate(root: Path, n_docs: int, shard_docs: int, seed: int = 0) -> dict[str, int]:
    """Write the input dataset; return the planted cluster of every planted document (url_hash -> base index)."""
    if (root / STAGE_FILE).is_file():
        return json.loads((root / "planted.json").read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    words, p = vocabulary()
    texts: list[str] = []
    planted: dict[str, int] = {}
    while len(texts) < n_docs:
        length = int(rng.integers(100, 401))
        base = words[rng.choice(len(words), size=length, p=p)]
        index = len(texts)
        texts.append(" ".join(base))
        if rng.random() < 0.1:  # a planted cluster: 1-3 copies of this document
            planted[f"{index:016x}"] = index
            for _ in range(int(rng.integers(1, 4))):
                if len(texts) >= n_docs:
                    break
                kind = rng.random()
                if kind < 0.3:  # exact copy, up to case and punctuation
                    text = " ".join(base).upper() + " !"
                else:
                    copy = base.copy()
                    rate = 0.01 if kind < 0.65 else 0.02
                    where = rng.random(length) < rate
                    copy[where] = words[rng.choice(len(words), size=int(where.sum()), p=p)]
                    text = " ".join(copy)
                planted[f"{len(texts):016x}"] = index
                texts.append(text)
    order = rng.permutation(n_docs)  # copies spread over all shards, not next to their base
    shards = []
    for s, lo in enumerate(range(0, n_docs, shard_docs)):
        rows = order[lo : lo + shard_docs]
        table = pa.table(
            {
                "url_hash": [f"{i:016x}" for i in rows],
                "score": [3] * len(rows),  # equal scores and dates: the keeper is the smallest url_hash
                "first_created_utc": [0] * len(rows),
                "text": [texts[i] for i in rows],
            }
        )
        path = root / f"{shard_name(s)}.parquet"
        write_parquet(table, path)
        shards.append(
            {"name": path.stem, "rows_in": 0, "rows_out": len(rows), "drops": {}, "files": [file_entry(path, root)]}
        )
    (root / "planted.json").write_text(json.dumps(planted))
    write_json(
        root / STAGE_FILE, {"stage": "generated", "shards": shards, "output_fingerprint": f"bench-{n_docs}-{seed}"}
    )
    return planted


class PeakMemory:
    """Peak summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.proc, self.interval, self.peak, self.peak_single = psutil.Process(pid), interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                break
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            self.peak, self.peak_single = max(self.peak, sum(rss)), max(self.peak_single, max(rss, default=0))
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_rss_tree_gb": round(self.peak / 2**30, 2),
            "peak_rss_one_process_gb": round(self.peak_single / 2**30, 2),
        }


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, dict[str, float], str]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    mem = PeakMemory(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    memory = mem.stop()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, memory, out


def ours(docs: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipeline", "dedup", "--set", f'input="{docs}"', "--set", f'output="{out}"']
    wall, memory, _ = timed(cmd, env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"})
    manifest = json.loads((out / STAGE_FILE).read_text())
    removed = pq.read_table(out / "_work" / "removed.parquet").to_pylist()
    clusters = {r["url_hash"]: r["duplicate_of"] for r in removed}
    clusters |= {keeper: keeper for keeper in set(clusters.values())}
    return {
        "wall_s": round(wall, 1),
        **memory,
        "removed": [r["url_hash"] for r in removed],
        "clusters": clusters,
        "drops": manifest["drops"],
        "phases": manifest.get("lsh"),
    }


def datatrove(docs: Path, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    wall, memory, out = timed([str(DATATROVE_PY), str(ROOT / "bench" / "datatrove_dedup.py"), str(docs), str(work)])
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": round(wall, 1), **memory, **result}


def groups(clusters: dict[str, object]) -> set[frozenset[str]]:
    by: dict[object, set[str]] = defaultdict(set)
    for doc, c in clusters.items():
        by[c].add(doc)
    return {frozenset(m) for m in by.values() if len(m) > 1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--shard-docs", type=int, default=25_000)
    ap.add_argument("--skip-datatrove", action="store_true")
    args = ap.parse_args()
    base = ROOT / "runs" / "bench-dedup"
    docs = base / f"docs-{args.docs}"
    t = time.perf_counter()
    planted = generate(docs, args.docs, args.shard_docs)
    print(f"{args.docs:,} documents in {docs} ({time.perf_counter() - t:.0f}s to generate or find)", flush=True)
    truth = groups(planted)
    expected_removed = sum(len(g) - 1 for g in truth)
    result: dict = {"docs": args.docs, "planted_clusters": len(truth), "planted_removals": expected_removed}
    runs = {"ours": ours(docs, base / "out-ours")}
    print(f"ours: {runs['ours']['wall_s']}s", flush=True)
    if not args.skip_datatrove:
        runs["datatrove"] = datatrove(docs, base / "work-datatrove")
        print(f"datatrove: {runs['datatrove']['wall_s']}s", flush=True)
    for name, r in runs.items():
        found = groups(r["clusters"])
        result[name] = {k: r[k] for k in ("wall_s", "peak_rss_tree_gb", "peak_rss_one_process_gb") if k in r} | {
            "removed": len(r["removed"]),
            "planted_clusters_found_exactly": len(found & truth),
            "clusters_not_planted": len(found - truth),
        }
        if name == "datatrove":
            result[name]["steps_s"] = r["times_s"]
    if "datatrove" in runs:
        a, b = set(runs["ours"]["removed"]), set(runs["datatrove"]["removed"])
        ga, gb = groups(runs["ours"]["clusters"]), groups(runs["datatrove"]["clusters"])
        result["ratio_time_ours_vs_datatrove"] = round(runs["ours"]["wall_s"] / runs["datatrove"]["wall_s"], 3)
        result["agreement"] = {
            "identical_clusters": len(ga & gb),
            "clusters_only_ours": len(ga - gb),
            "clusters_only_datatrove": len(gb - ga),
            "removed_both": len(a & b),
            "removed_only_ours": len(a - b),
            "removed_only_datatrove": len(b - a),
            "removed_sets_jaccard": round(len(a & b) / max(len(a | b), 1), 4),
        }
        # datatrove keeps an arbitrary member (its union-find root); with our keeper rule on its clusters:
        b_ours_rule = {doc for g in gb for doc in sorted(g)[1:]}  # equal scores and dates: smallest url_hash keeps
        result["agreement"]["removed_sets_jaccard_same_keeper_rule"] = round(
            len(a & b_ours_rule) / max(len(a | b_ours_rule), 1), 4
        )
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
