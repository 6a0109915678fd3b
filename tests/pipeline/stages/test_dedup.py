import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.dataset import STAGE_FILE, file_entry, shard_name, write_json, write_parquet
from pipeline.core.runner import LocalRunner
from pipeline.stages.dedup import (
    DedupConfig,
    SignatureStore,
    candidate_edges,
    find_duplicates,
    lsh_params,
    run,
    signature_table,
    verified,
    write_arrow,
)

WORDS = (
    "river stone light market garden letter window winter summer bridge paper music table forest "
    "engine island silver mountain village doctor morning evening harbor station school animal"
).split()


def doc(seed: int, n: int = 400) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def docs_table(texts, scores=None) -> pa.Table:
    return pa.table(
        {
            "url_hash": [f"{i:016x}" for i in range(len(texts))],
            "score": scores or [3] * len(texts),
            "first_created_utc": [100] * len(texts),
            "text": texts,
        }
    )


def removed(texts, scores, cfg, tmp_path) -> dict[str, dict]:
    rows = find_duplicates(signature_table(docs_table(texts, scores), cfg), cfg, tmp_path).to_pylist()
    return {r["url_hash"]: r for r in rows}


def test_default_lsh_parameters():
    assert lsh_params(0.5, 128) == (32, 4)  # P(candidate | J = 0.6) = 0.988; datasketch's 25 x 5 gives 0.868
    assert lsh_params(0.8, 128, rows=8) == (16, 8)
    with pytest.raises(ValueError, match="bands x rows"):
        DedupConfig(input="i", output="o", bands=40, rows=4)


def test_exact_and_near_duplicates_one_keeper_each(tmp_path):
    cfg = DedupConfig(input="i", output="o")
    base, other = doc(1), doc(2)
    w = base.split()
    near = " ".join(w[:360] + doc(9, 40).split())  # 90% shared text: Jaccard of 5-grams ~0.8
    far = " ".join(w[:100] + doc(10, 300).split())  # 25% shared: well below 0.5
    texts = [base, base.upper() + " ", near, other, far]
    by_id = removed(texts, [5, 50, 7, 3, 9], cfg, tmp_path)
    # Highest score keeps: doc 1 (score 50) is kept, its exact copy doc 0 and near copy doc 2 go.
    assert by_id[f"{0:016x}"] == {"url_hash": f"{0:016x}", "reason": "exact_duplicate", "duplicate_of": f"{1:016x}"}
    assert by_id[f"{2:016x}"]["reason"] == "near_duplicate" and by_id[f"{2:016x}"]["duplicate_of"] == f"{1:016x}"
    assert set(by_id) == {f"{0:016x}", f"{2:016x}"}


def test_result_does_not_depend_on_input_order(tmp_path):
    cfg = DedupConfig(input="i", output="o")
    texts = [doc(i % 4) if i % 3 else doc(i) for i in range(30)]
    t = docs_table(texts, [i % 5 for i in range(30)])
    shuffled = t.take(random.Random(0).sample(range(30), 30))
    a = find_duplicates(signature_table(t, cfg), cfg, tmp_path / "a")
    b = find_duplicates(signature_table(shuffled, cfg), cfg, tmp_path / "b")
    assert a.num_rows > 0 and a.equals(b)


def test_buckets_give_star_edges_per_group():
    entries = pa.table(
        {
            "band": pa.array([0, 0, 0, 1, 1, 2], pa.uint16()),
            "key": pa.array([7, 7, 7, 7, 8, 7], pa.uint64()),
            "doc": pa.array([5, 3, 9, 5, 3, 1], pa.uint64()),
        }
    )
    assert sorted(zip(*candidate_edges(entries).to_pydict().values())) == [(5, 3), (9, 3)]


def test_verification_cuts_false_candidates(tmp_path):
    base = doc(1)
    w = base.split()
    texts = [base, " ".join(w[:120] + doc(11, 280).split()), " ".join(w[:350] + doc(12, 50).split())]  # J ~0.2, ~0.8
    edges = pa.table({"a": pa.array([1, 2], pa.uint64()), "b": pa.array([0, 0], pa.uint64())})
    kept = {}
    for mode in ("none", "signature", "exact"):
        cfg = DedupConfig(input="i", output="o", verify=mode)
        write_arrow(signature_table(docs_table(texts), cfg), tmp_path / f"{mode}.arrow")
        a, _ = verified(edges, SignatureStore([str(tmp_path / f"{mode}.arrow")]), cfg)
        kept[mode] = a.tolist()
    assert kept == {"none": [1, 2], "signature": [2], "exact": [2]}


def write_shards(root: Path, table: pa.Table, per_shard: int) -> None:
    """A finished input dataset: shards plus the stage manifest that lists them."""
    shards = []
    for i in range(0, table.num_rows, per_shard):
        path = root / f"{shard_name(i // per_shard)}.parquet"
        write_parquet(table.slice(i, per_shard), path)
        shards.append({"name": path.stem, "rows_in": 0, "rows_out": 0, "drops": {}, "files": [file_entry(path, root)]})
    write_json(root / STAGE_FILE, {"stage": "filter", "shards": shards, "output_fingerprint": "in-v1"})


@pytest.mark.parametrize("partitions", [1, 7])
def test_stage_over_shards_equals_one_process(tmp_path, partitions):
    rng = random.Random(5)
    bases = [doc(100 + i) for i in range(12)]
    texts = []
    for i in range(60):  # copies, edited copies and unrelated pages, spread over shards
        b = bases[i % 12].split()
        kind = i % 3
        texts.append(doc(1000 + i) if kind == 0 else " ".join(b[: 360 + rng.randrange(30)] + doc(i, 20).split()))
    table = docs_table(texts, [rng.randrange(10) for _ in texts])
    write_shards(tmp_path / "in", table, 9)
    out = tmp_path / "out"
    manifest = run(DedupConfig(input=str(tmp_path / "in"), output=str(out), partitions=partitions), LocalRunner())
    cfg = DedupConfig(input="i", output="o")
    expected = find_duplicates(signature_table(table, cfg), cfg, tmp_path / "one")
    assert pq.read_table(out / "_work" / "removed.parquet").equals(expected) and expected.num_rows >= 30
    assert manifest["rows_out"] == 60 - expected.num_rows
    assert sum(manifest["drops"].values()) == expected.num_rows
    kept = {u for p in sorted(out.glob("part-*.parquet")) for u in pq.read_table(p)["url_hash"].to_pylist()}
    assert kept == set(table["url_hash"].to_pylist()) - set(expected["url_hash"].to_pylist())


def test_a_killed_run_resumes_from_its_last_finished_phase(tmp_path):
    texts = [doc(i % 7) if i % 2 else doc(200 + i) for i in range(40)]
    table = docs_table(texts, [i % 4 for i in range(40)])
    write_shards(tmp_path / "in", table, 8)
    cfg = DedupConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), partitions=3)
    first = run(cfg, LocalRunner())
    out = tmp_path / "out"
    removed = (out / "_work" / "removed.parquet").read_bytes()
    # As if killed during the remove phase: the manifest, two shards and one bucket record never written.
    (out / STAGE_FILE).unlink()
    for name in ("_shards/part-00001.json", "_shards/part-00003.json", "_shards/_work/edges/p0001.json"):
        (out / name).unlink()
    second = run(cfg, LocalRunner())
    assert second["resumed_shards"] == 5 + 2 + 1 + 3  # signatures, buckets, clusters, remove shards kept
    assert (out / "_work" / "removed.parquet").read_bytes() == removed
    assert second["output_fingerprint"] == first["output_fingerprint"] and second["drops"] == first["drops"]
