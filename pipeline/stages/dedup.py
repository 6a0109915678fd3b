"""dedup: exact duplicates (same word sequence), then MinHash LSH near-duplicates, as a distributed computation.

Four phases; only ids and hashes cross tasks, never texts (docs/DEDUP.md has the design and its figures):

1. signatures, one task per shard: exact key and MinHash signature of every document (pipeline/text/minhash.py,
   identical to datasketch's), written as a memory-mappable Arrow file; the LSH band keys and the exact key of every
   document, split by hash into `partitions` files (the shuffle's map side).
2. buckets, one task per partition: the (band, key) groups of every shard's file for that partition; each group of
   two or more documents gives candidate edges (every member to the group's first).
3. clusters, one task: candidate edges verified (same exact key; or estimated Jaccard from the signatures, or exact
   Jaccard of the shingle sets, >= threshold), connected components, one keeper per component: highest Reddit score,
   then earliest, then smallest url_hash, so the result depends on neither shard order nor task timing.
4. remove, one task per shard: drop what phase 3 listed, counting each drop by reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from pydantic import Field, model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import Dataset, atomic_path, read_parquet, write_parquet
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, StageRun, combined_fingerprint, finish_shard, verify_entries
from pipeline.text.minhash import MinHasher, fmix64


class DedupConfig(StageConfig):
    input: str
    output: str
    ngram: int = Field(5, ge=1, le=64)  # OpenWebText: LSH over word 5-gram sets
    num_perm: int = Field(128, ge=16, le=1024)  # OpenWebText: datasketch's default, 128
    threshold: float = Field(0.5, gt=0.0, lt=1.0)  # OpenWebText: Jaccard similarity > 0.5
    seed: int = 1
    # LSH bands x rows <= num_perm; unset: the most rows that still make a pair 0.1 above the threshold a candidate
    # with probability >= 0.98 (32 x 4 at 0.5 / 128: see lsh_params). OpenWebText used datasketch's 25 x 5.
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    # Candidates are checked before they join a cluster: "signature" (estimated Jaccard from the full signatures,
    # no extra data), "exact" (Jaccard of the shingle-hash sets, stored per document in phase 1), "none" (every LSH
    # candidate is a duplicate, as in OpenWebText).
    verify: Literal["signature", "exact", "none"] = "signature"
    partitions: int = Field(16, ge=1, le=4096)  # shuffle partitions: phase-2 tasks

    @property
    def lsh(self) -> tuple[int, int]:
        """(bands, rows) in use: as set, or chosen from the threshold."""
        return lsh_params(self.threshold, self.num_perm, self.bands, self.rows)

    @model_validator(mode="after")
    def _bands_fit(self) -> DedupConfig:
        b, r = self.lsh
        if b * r > self.num_perm:
            raise ValueError(f"bands x rows = {b} x {r} needs more than num_perm = {self.num_perm} values")
        return self


def lsh_params(threshold: float, num_perm: int, bands: int | None = None, rows: int | None = None) -> tuple[int, int]:
    """(bands, rows). P(a pair of Jaccard J shares a band) = 1 - (1 - J**rows)**bands: more rows make fewer false
    candidates, fewer bands miss more true pairs; choose the most rows that still catch J = threshold + 0.1 with
    probability >= 0.98 (the pairs below are then mostly removed by verification)."""
    if bands and rows:
        return bands, rows
    if rows:
        return num_perm // rows, rows
    if bands:
        return bands, num_perm // bands
    j = min(threshold + 0.1, 0.99)
    best = 1
    for r in range(1, num_perm + 1):
        if 1 - (1 - j**r) ** (num_perm // r) >= 0.98:
            best = r
    return num_perm // best, best


# ---- phase 1: signatures and the shuffle's map side ----


def signature_schema(num_perm: int, with_shingles: bool = False) -> pa.Schema:
    fields = [
        ("url_hash", pa.string()),
        ("score", pa.int64()),
        ("first_created_utc", pa.int64()),
        ("text_key", pa.binary(16)),
        ("minhash", pa.list_(pa.uint32(), num_perm)),
    ]
    if with_shingles:
        fields.append(("shingles", pa.list_(pa.uint32())))  # sorted, unique: for verify = "exact"
    return pa.schema(fields)


ENTRY_SCHEMA = pa.schema([("band", pa.uint16()), ("key", pa.uint64()), ("doc", pa.uint64())])
EDGE_SCHEMA = pa.schema([("a", pa.uint64()), ("b", pa.uint64())])
REMOVED_SCHEMA = pa.schema([("url_hash", pa.string()), ("reason", pa.string()), ("duplicate_of", pa.string())])


def signature_table(docs: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Documents (url_hash, score, first_created_utc, text) -> one signature row each."""
    hasher = MinHasher(cfg.num_perm, cfg.seed, cfg.ngram)
    exact = cfg.verify == "exact"
    sketches = [hasher.sketch(t, exact) for t in docs.column("text").to_pylist()]
    sigs = np.stack([s.signature for s in sketches]) if sketches else np.empty((0, cfg.num_perm), np.uint32)
    columns: dict[str, Any] = {
        "url_hash": docs.column("url_hash"),
        "score": docs.column("score"),
        "first_created_utc": docs.column("first_created_utc"),
        "text_key": pa.array([s.key for s in sketches], pa.binary(16)),
        "minhash": pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), cfg.num_perm),
    }
    if exact:
        columns["shingles"] = [s.shingles for s in sketches]
    return pa.table(columns, schema=signature_schema(cfg.num_perm, exact))


def _rows_view(col: pa.ChunkedArray, flat: Callable[[pa.Array], np.ndarray], width: int) -> np.ndarray:
    """(n, width) numpy view of a fixed-width column whose values `flat` exposes as one array; no copy when the
    column is one chunk (as read from a memory-mapped file)."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return flat(arr)[arr.offset * width : (arr.offset + len(arr)) * width].reshape(-1, width)


def minhash_matrix(sigs: pa.Table) -> np.ndarray:
    """(n, num_perm) uint32 signatures."""
    col = sigs.column("minhash")
    return _rows_view(col, lambda a: a.values.to_numpy(zero_copy_only=False), col.type.list_size)


def key_matrix(sigs: pa.Table) -> np.ndarray:
    """(n, 2) uint64: the 16-byte exact keys."""
    return _rows_view(sigs.column("text_key"), lambda a: np.frombuffer(a.buffers()[1] or b"", dtype=np.uint64), 2)


def band_keys(minhash: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, num_perm) uint32 -> (n, bands) uint64: one key per band, equal when the band's `rows` values are equal
    (and, with 64 bits, almost never otherwise: ~n**2 / 2**65 chance of any false match per band)."""
    n = minhash.shape[0]
    v = minhash[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    key = np.zeros((n, bands), dtype=np.uint64)
    for j in range(rows):  # a polynomial over the rows, then mixed: order matters, as it should
        key = fmix64(key * np.uint64(0x100000001B3) + v[:, :, j] + np.uint64(j + 1))
    return key


def shuffle_entries(sigs: pa.Table, shard_index: int, cfg: DedupConfig) -> list[pa.Table]:
    """One table per partition: (band, key, doc) for every band of every document, plus band = bands for the exact
    key. doc = shard_index << 32 | row, a global id that needs no coordination."""
    bands, rows = cfg.lsh
    n = sigs.num_rows
    keys = np.concatenate([band_keys(minhash_matrix(sigs), bands, rows), key_matrix(sigs)[:, :1]], 1)
    band = np.broadcast_to(np.arange(bands + 1, dtype=np.uint16), keys.shape).ravel()
    doc = np.broadcast_to(
        (np.uint64(shard_index) << np.uint64(32)) + np.arange(n, dtype=np.uint64)[:, None], keys.shape
    )
    keys, doc = keys.ravel(), doc.ravel()
    part = (fmix64(keys ^ band.astype(np.uint64)) % np.uint64(cfg.partitions)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(cfg.partitions + 1))
    return [
        pa.table(
            {"band": band[order[lo:hi]], "key": keys[order[lo:hi]], "doc": doc[order[lo:hi]]},
            schema=ENTRY_SCHEMA,
        )
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]


# ---- phase 2: buckets -> candidate edges ----


def candidate_edges(entries: pa.Table) -> pa.Table:
    """Every (band, key) group of two or more documents links each member to the group's smallest doc id. A star
    keeps the edges linear in the group size; two members both unlike the first still meet in other bands."""
    if entries.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    band = entries["band"].to_numpy()
    key = entries["key"].to_numpy()
    doc = entries["doc"].to_numpy()
    order = np.lexsort((doc, key, band))
    band, key, doc = band[order], key[order], doc[order]
    new_group = np.r_[True, (band[1:] != band[:-1]) | (key[1:] != key[:-1])]
    first = doc[np.flatnonzero(new_group)[np.cumsum(new_group) - 1]]
    linked = ~new_group
    a, b = doc[linked], first[linked]
    if len(a) == 0:
        return EDGE_SCHEMA.empty_table()
    return unique_edges(pa.table({"a": a, "b": b}, schema=EDGE_SCHEMA))


def unique_edges(edges: pa.Table) -> pa.Table:
    """The same pair from several bands counts once; sorted, so the output does not depend on arrival order."""
    if edges.num_rows == 0:
        return edges
    pairs = np.unique(np.stack([edges["a"].to_numpy(), edges["b"].to_numpy()], axis=1), axis=0)
    return pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}, schema=EDGE_SCHEMA)


# ---- phase 3: verified edges -> clusters -> removals ----


class SignatureStore:
    """The signature files of every shard, memory-mapped: rows fetched by global doc id without reading the rest."""

    def __init__(self, paths: list[str]):
        self.tables = [read_arrow(p) for p in paths]
        self.matrices = [minhash_matrix(t) for t in self.tables]
        self.keys = [key_matrix(t) for t in self.tables]

    def _split(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (docs >> np.uint64(32)).astype(np.int64), (docs & np.uint64(0xFFFFFFFF)).astype(np.int64)

    def minhash(self, docs: np.ndarray) -> np.ndarray:
        return self._rows(self.matrices, docs)

    def key(self, docs: np.ndarray) -> np.ndarray:
        return self._rows(self.keys, docs)

    def _rows(self, arrays: list[np.ndarray], docs: np.ndarray) -> np.ndarray:
        shard, row = self._split(docs)
        out = np.empty((len(docs), arrays[0].shape[1] if arrays else 0), dtype=arrays[0].dtype if arrays else None)
        for s in np.unique(shard):
            at = shard == s
            out[at] = arrays[s][row[at]]
        return out

    def column(self, name: str, docs: np.ndarray) -> list[Any]:
        shard, row = self._split(docs)
        out: list[Any] = [None] * len(docs)
        for s in np.unique(shard):
            at = np.flatnonzero(shard == s)
            for i, v in zip(at, self.tables[s][name].take(pa.array(row[at])).to_pylist()):
                out[i] = v
        return out

    def shingles(self, doc: int) -> np.ndarray:
        s, r = int(doc) >> 32, int(doc) & 0xFFFFFFFF
        return self.tables[s]["shingles"][r].values.to_numpy()


Edges = tuple[np.ndarray, np.ndarray]  # (a, b) global doc ids, (n_edges,) uint64 each


def verified(edges: pa.Table, store: SignatureStore, cfg: DedupConfig, chunk: int = 1 << 16) -> Edges:
    """The candidate edges that pass verification: exact twins always; the others by cfg.verify."""
    a, b = edges["a"].to_numpy(), edges["b"].to_numpy()
    if len(a) == 0 or cfg.verify == "none":
        return a, b
    keep = np.zeros(len(a), dtype=bool)
    for lo in range(0, len(a), chunk):  # (chunk, num_perm) signatures at a time: bounded memory
        x, y = a[lo : lo + chunk], b[lo : lo + chunk]
        twins = (store.key(x) == store.key(y)).all(axis=1)
        if cfg.verify == "signature":
            keep[lo : lo + chunk] = twins | ((store.minhash(x) == store.minhash(y)).mean(axis=1) >= cfg.threshold)
        else:
            for i in np.flatnonzero(~twins):
                sx, sy = store.shingles(x[i]), store.shingles(y[i])
                inter = len(np.intersect1d(sx, sy, assume_unique=True))
                twins[i] = inter / (len(sx) + len(sy) - inter) >= cfg.threshold
            keep[lo : lo + chunk] = twins
    return a[keep], b[keep]


def clusters_to_removals(a: np.ndarray, b: np.ndarray, store: SignatureStore) -> pa.Table:
    """Connected components of the verified edges; in each, every document but the keeper is removed."""
    if len(a) == 0:
        return REMOVED_SCHEMA.empty_table()
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (inverse[: len(a)], inverse[len(a) :])), (len(nodes),) * 2)
    _, label = connected_components(graph, directed=False)
    score = np.array([s if s is not None else 0 for s in store.column("score", nodes)], dtype=np.int64)
    created = np.array([c if c is not None else 0 for c in store.column("first_created_utc", nodes)], dtype=np.int64)
    url_hash = np.array(store.column("url_hash", nodes))
    key = store.key(nodes)
    order = np.lexsort((url_hash, created, -score, label))  # by component, then keeper order
    first = np.r_[True, label[order][1:] != label[order][:-1]]
    keeper = order[np.flatnonzero(first)[np.cumsum(first) - 1]]  # the keeper of each node, in `order`
    gone = ~first
    member, keeper = order[gone], keeper[gone]
    return pa.table(
        {
            "url_hash": url_hash[member],
            "reason": np.where((key[member] == key[keeper]).all(axis=1), "exact_duplicate", "near_duplicate"),
            "duplicate_of": url_hash[keeper],
        },
        schema=REMOVED_SCHEMA,
    ).sort_by("url_hash")


def removals(edge_tables: list[pa.Table], store: SignatureStore, cfg: DedupConfig) -> tuple[pa.Table, int, int]:
    """Phase 3: the candidate edges of every partition -> (removal list, candidate edges, verified edges)."""
    edges = pa.concat_tables(edge_tables) if edge_tables else EDGE_SCHEMA.empty_table()
    edges = unique_edges(edges)  # a pair found in several bands lands in several partitions
    a, b = verified(edges, store, cfg)
    return clusters_to_removals(a, b, store), edges.num_rows, len(a)


def find_duplicates(sigs: pa.Table, cfg: DedupConfig, workdir: Path) -> pa.Table:
    """All phases in one process, for one signature table: what the stage computes over many."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "signatures.arrow"
    write_arrow(sigs, path)
    edges = [candidate_edges(t) for t in shuffle_entries(sigs, 0, cfg)]
    return removals(edges, SignatureStore([str(path)]), cfg)[0]


# ---- Ray layer ----


@dataclass(frozen=True)
class ClusterInputs:
    """The clusters task reads every partition's edges and every shard's signatures."""

    edges: list[str]
    signatures: list[str]


def write_arrow(table: pa.Table, path: str | Path) -> None:
    """Uncompressed Arrow IPC, atomically: memory-mappable, so phase 3 reads only the rows it needs."""
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table)


def read_arrow(path: str | Path) -> pa.Table:
    return ipc.open_file(pa.memory_map(str(storage.pull(path)))).read_all()


def signatures_shard(task: ShardTask[DedupConfig, int]) -> Record:
    """payload: the shard's index, the high half of its documents' ids."""
    cfg: DedupConfig = task.config
    (path,) = task.inputs
    docs = read_parquet(path, columns=["url_hash", "score", "first_created_utc", "text"])
    sigs = signature_table(docs, cfg)
    work = Path(task.output) / "_work"
    files = [work / "signatures" / f"{task.name}.arrow"]
    write_arrow(sigs, files[0])
    for p, entries in enumerate(shuffle_entries(sigs, task.payload, cfg)):
        files.append(work / "entries" / f"p{p:04d}" / f"{task.name}.arrow")
        write_arrow(entries, files[-1])
    return finish_shard(task, files, rows_in=docs.num_rows, rows_out=docs.num_rows, records_dir="_work/signatures")


def bucket_task(task: ShardTask[DedupConfig, None]) -> Record:
    entries = pa.concat_tables([read_arrow(p) for p in task.inputs]) if task.inputs else ENTRY_SCHEMA.empty_table()
    edges = candidate_edges(entries)
    out = Path(task.output) / "_work" / "edges" / f"{task.name}.arrow"
    write_arrow(edges, out)
    return finish_shard(task, [out], rows_in=entries.num_rows, rows_out=edges.num_rows, records_dir="_work/edges")


def cluster_task(task: ShardTask[DedupConfig, ClusterInputs]) -> Record:
    cfg: DedupConfig = task.config
    store = SignatureStore(task.payload.signatures)
    removed, candidates, kept = removals([read_arrow(p) for p in task.payload.edges], store, cfg)
    out = Path(task.output) / "_work" / "removed.parquet"
    write_parquet(removed, out)
    n_docs = sum(t.num_rows for t in store.tables)
    return finish_shard(
        task,
        [out],
        rows_in=n_docs,
        rows_out=n_docs - removed.num_rows,
        extra={"candidate_edges": candidates, "verified_edges": kept},
        records_dir="_work/clusters",
    )


def remove_shard(task: ShardTask[DedupConfig, None]) -> Record:
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


def run(cfg: DedupConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    src = Dataset(cfg.input)
    run_ = StageRun("dedup", cfg, cfg.output, {src.uri: src.fingerprint()}, runner, overwrite)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out_dir = run_.out.path.resolve()
    out = str(out_dir)
    inputs = [(p.resolve(), e["sha256"], verify_entries(src.path, [e])) for p, e in src.shard_entries(".parquet")]
    sig_recs = run_.map(
        signatures_shard,
        [
            # The index is part of every document id: a shard whose index moved (another shard added before it)
            # must be redone.
            ShardTask(p.stem, [str(p)], out, cfg, i, f"{sha}:{i}", v)
            for i, (p, sha, v) in enumerate(inputs)
        ],
        "signatures",
        records_dir="_work/signatures",
    )
    sig_files = [str(out_dir / r["files"][0]["path"]) for r in sig_recs]
    by_partition = [[str(out_dir / r["files"][1 + p]["path"]) for r in sig_recs] for p in range(cfg.partitions)]
    edge_recs = run_.map(
        bucket_task,
        [
            ShardTask(
                f"p{p:04d}",
                files,
                out,
                cfg,
                None,
                combined_fingerprint([r["files"][1 + p]["sha256"] for r in sig_recs]),
            )
            for p, files in enumerate(by_partition)
        ],
        "buckets",
        records_dir="_work/edges",
    )
    edge_files = [str(out_dir / r["files"][0]["path"]) for r in edge_recs]
    fingerprint = combined_fingerprint(
        [r["files"][0]["sha256"] for r in edge_recs] + [r["files"][0]["sha256"] for r in sig_recs]
    )
    (cluster_rec,) = run_.map(
        cluster_task,
        [ShardTask("clusters", [], out, cfg, ClusterInputs(edges=edge_files, signatures=sig_files), fingerprint)],
        "clusters",
        records_dir="_work/clusters",
    )
    removed = str(out_dir / cluster_rec["files"][0]["path"])
    removed_sha = cluster_rec["files"][0]["sha256"]
    shards = run_.map(
        remove_shard,
        [ShardTask(p.stem, [str(p), removed], out, cfg, None, f"{sha}:{removed_sha}", v) for p, sha, v in inputs],
        "remove",
    )
    extra = {k: cluster_rec[k] for k in ("candidate_edges", "verified_edges")}
    return run_.finish(shards, extra=extra | {"lsh": dict(zip(("bands", "rows"), cfg.lsh))})
