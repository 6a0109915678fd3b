"""dedup: exact duplicates (hash of normalized text), then MinHash LSH near-duplicates (datasketch).

Three phases, like datatrove's: signatures per shard (parallel) -> clusters (one task over ids and hashes only,
never texts) -> removal per shard (parallel). One keeper per cluster: highest Reddit score, then earliest, then
smallest id, so the result does not depend on shard order or task timing.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH
from pydantic import Field

from pipeline.config import StageConfig
from pipeline.dataset import Dataset, read_parquet, write_parquet
from pipeline.stage import ShardTask, StageRun, combined_fingerprint, finish_shard


class DedupConfig(StageConfig):
    input: str
    output: str
    ngram: int = Field(5, ge=1)  # OpenWebText: LSH over word 5-gram sets
    num_perm: int = Field(128, ge=16, le=1024)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)  # OpenWebText: Jaccard similarity > 0.5
    seed: int = 1


# datasketch >= 2.0's default permutation scheme; signatures of different schemes cannot be compared.
SCHEME = "affine32"
WORD = re.compile(r"\w+", re.UNICODE)
SIG_SCHEMA = pa.schema(
    [
        ("url_hash", pa.string()),
        ("score", pa.int64()),
        ("first_created_utc", pa.int64()),
        ("text_hash", pa.string()),
        ("minhash", pa.list_(pa.uint32())),
    ]
)
REMOVED_SCHEMA = pa.schema([("url_hash", pa.string()), ("reason", pa.string()), ("duplicate_of", pa.string())])


def words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


def text_hash(text: str) -> str:
    """Exact-duplicate key: case, punctuation and whitespace differences do not count."""
    return hashlib.sha1(" ".join(words(text)).encode()).hexdigest()


def shingles(text: str, n: int) -> set[bytes]:
    w = words(text)
    if len(w) <= n:
        return {" ".join(w).encode()}
    return {" ".join(w[i : i + n]).encode() for i in range(len(w) - n + 1)}


def signature(text: str, cfg: DedupConfig) -> np.ndarray:
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=SCHEME)
    m.update_batch(list(shingles(text, cfg.ngram)))
    return m.hashvalues


def signatures_shard(task: ShardTask) -> dict[str, Any]:
    cfg: DedupConfig = task.config
    (path,) = task.inputs
    t = read_parquet(path, columns=["url_hash", "score", "first_created_utc", "text"])
    texts = t.column("text").to_pylist()
    sig = pa.table(
        {
            "url_hash": t.column("url_hash"),
            "score": t.column("score"),
            "first_created_utc": t.column("first_created_utc"),
            "text_hash": [text_hash(x) for x in texts],
            "minhash": [signature(x, cfg).tolist() for x in texts],
        },
        schema=SIG_SCHEMA,
    )
    out = Path(task.output) / "_work" / "signatures" / f"{task.name}.parquet"
    write_parquet(sig, out)
    return finish_shard(task, [out], rows_in=t.num_rows, rows_out=t.num_rows, records_dir="_work/signatures")


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The root is the member that comes first in keeper order, so it is the cluster's keeper.
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(sigs: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Pure core: signatures of every document -> the ones to remove, with reason and keeper."""
    # Columns to Python once: per-row scalar access to an Arrow table is slow at millions of rows.
    score, created, url_hash = (sigs[c].to_pylist() for c in ("score", "first_created_utc", "url_hash"))
    text_hashes = sigs["text_hash"].to_pylist()
    order = sorted(range(sigs.num_rows), key=lambda i: (-(score[i] or 0), created[i] or 0, url_hash[i]))
    ids = [url_hash[i] for i in order]
    hashes = [text_hashes[i] for i in order]
    minhash = sigs["minhash"].combine_chunks()
    minhashes = [minhash[i].values.to_numpy() for i in order]
    removed: dict[str, list[str]] = {"url_hash": [], "reason": [], "duplicate_of": []}

    first_of_hash: dict[str, int] = {}
    survivors = []
    for rank, h in enumerate(hashes):
        if h in first_of_hash:
            removed["url_hash"].append(ids[rank])
            removed["reason"].append("exact_duplicate")
            removed["duplicate_of"].append(ids[first_of_hash[h]])
        else:
            first_of_hash[h] = rank
            survivors.append(rank)

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    uf = UnionFind(len(ids))
    for rank in survivors:
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashvalues=minhashes[rank], scheme=SCHEME)
        for other in lsh.query(m):
            uf.union(rank, other)
        lsh.insert(rank, m)
    for rank in survivors:
        root = uf.find(rank)
        if root != rank:
            removed["url_hash"].append(ids[rank])
            removed["reason"].append("near_duplicate")
            removed["duplicate_of"].append(ids[root])
    return pa.table(removed, schema=REMOVED_SCHEMA).sort_by("url_hash")


def cluster_task(task: ShardTask) -> dict[str, Any]:
    sigs = pa.concat_tables([read_parquet(p) for p in task.inputs]) if task.inputs else SIG_SCHEMA.empty_table()
    removed = find_duplicates(sigs, task.config)
    out = Path(task.output) / "_work" / "removed.parquet"
    write_parquet(removed, out)
    return finish_shard(
        task, [out], rows_in=sigs.num_rows, rows_out=sigs.num_rows - removed.num_rows, records_dir="_work/clusters"
    )


def remove_shard(task: ShardTask) -> dict[str, Any]:
    path, removed_path = task.inputs
    t = read_parquet(path)
    removed = read_parquet(removed_path)
    mask = pc.is_in(t.column("url_hash"), value_set=removed.column("url_hash"))
    reasons = removed.filter(pc.is_in(removed.column("url_hash"), value_set=t.column("url_hash"))).column("reason")
    drops = {k: int(v) for k, v in zip(*[c.to_pylist() for c in pc.value_counts(reasons).flatten()])}
    kept = t.filter(pc.invert(mask))
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(kept, out)
    return finish_shard(task, [out], rows_in=t.num_rows, rows_out=kept.num_rows, drops=drops)


def run(cfg: DedupConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    src = Dataset(cfg.input)
    run_ = StageRun("dedup", cfg, cfg.output, {str(src.path): src.fingerprint()}, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out_dir = run_.out.path.resolve()
    out = str(out_dir)
    inputs = [(p.resolve(), sha) for p, sha in src.shard_entries(".parquet")]
    sig_recs = run_.map(
        signatures_shard,
        [ShardTask(p.stem, [str(p)], out, cfg, {"input_fingerprint": sha}) for p, sha in inputs],
        "signatures",
        records_dir="_work/signatures",
    )
    sig_files = [str(out_dir / r["files"][0]["path"]) for r in sig_recs]
    sig_fp = combined_fingerprint([r["files"][0]["sha256"] for r in sig_recs])
    (cluster_rec,) = run_.map(
        cluster_task,
        [ShardTask("clusters", sig_files, out, cfg, {"input_fingerprint": sig_fp})],
        "clusters",
        records_dir="_work/clusters",
    )
    removed = str(out_dir / cluster_rec["files"][0]["path"])
    removed_sha = cluster_rec["files"][0]["sha256"]
    shards = run_.map(
        remove_shard,
        [
            ShardTask(p.stem, [str(p), removed], out, cfg, {"input_fingerprint": f"{sha}:{removed_sha}"})
            for p, sha in inputs
        ],
        "remove",
    )
    return run_.finish(shards)
