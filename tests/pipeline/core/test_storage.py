"""Stages on object storage: every stage reads and writes s3:// (moto's S3 server on loopback), its tasks run in Ray
workers, and the datasets it writes there are the ones it writes locally, byte for byte."""

import hashlib
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline import chain
from pipeline.chain import run_stage
from pipeline.core import storage
from pipeline.core.dataset import Dataset, read_json, read_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.corpus.published import verify

CHAIN = [s.name for s in chain.PIPELINE if s.uses_ray]  # the stages that write datasets (not the manifest)


def under(base: str, sub: str) -> str:
    """`s3://bucket?options` -> `s3://bucket/sub?options`."""
    bucket, _, query = base.partition("?")
    return f"{bucket}/{sub}?{query}"


def chain_configs(dumps: str, root: str, proxy: str) -> dict:
    settings = {
        "harvest": {"input": [dumps], "num_shards": 2},
        "fetch": {"proxy": proxy, "retries": 1, "allow_networks": ["127.0.0.1/32"], "min_host_delay_s": 0.0},
        "tokenize": {"val_fraction": 0.2, "shard_tokens": 4000},
    }
    return {name: chain.config_for(name, root=root, base=settings.get(name)) for name in CHAIN}


def upload_folder(folder: Path, uri: str) -> None:
    dest = storage.locate(uri)
    for f in sorted(folder.iterdir()):
        with dest.fs.open_output_stream(dest.join(f.name).path, compression=None) as out:
            out.write(f.read_bytes())


def test_mirror_paths_map_back_to_their_objects(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "a"))
    uri = "s3://bucket/corpus/docs?endpoint_override=127.0.0.1:9000&scheme=http"
    view = storage.local_view(uri)
    assert view.is_relative_to(tmp_path / "a") and view.parts[-3:] == ("bucket", "corpus", "docs")
    assert storage.uri_of(view / "part-00000.parquet") == (
        "s3://bucket/corpus/docs/part-00000.parquet?endpoint_override=127.0.0.1:9000&scheme=http"
    )
    # A process with another staging root (another node) still maps the path it is handed.
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "b"))
    assert storage.remote_of(view).uri == storage.locate(uri).uri
    assert storage.remote_of(tmp_path / "plain" / "file") is None
    assert storage.local_view(str(tmp_path / "x")) == tmp_path / "x"
    with pytest.raises(PipelineError, match="stages read and write local paths and s3, gs, gcs"):
        storage.local_view("hdfs://namenode:8020/corpus")


def test_every_stage_reads_and_writes_s3_on_ray(tmp_path, demo_world, replay, ray_runner, s3, monkeypatch):
    base, bucket = s3
    upload_folder(demo_world / "reddit", under(base, "dumps"))
    remote = chain_configs(under(base, "dumps/RS_*"), under(base, "run"), replay)
    local = chain_configs(str(demo_world / "reddit"), str(tmp_path / "local"), replay)
    # Fetched WARC files hold fetch dates, so no two fetches are byte-identical: from extract on, the local run
    # reads the same fetched pages, from the bucket.
    local["extract"] = local["extract"].model_copy(update={"input": remote["fetch"].output})

    results = {}
    for i, name in enumerate(CHAIN):
        # A fresh mirror for every stage (as if each ran on another machine): whatever a stage reads of the
        # previous stage's output must come from the object store.
        monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / f"staging-{i}"))
        results[name] = run_stage(name, remote[name], ray_runner)
        want = run_stage(name, local[name], LocalRunner())
        if name != "fetch":
            assert results[name]["output_fingerprint"] == want["output_fingerprint"], name
        assert (results[name]["rows_out"], results[name]["drops"]) == (want["rows_out"], want["drops"]), name

    # Every file a record names is in the bucket as the same bytes (no codec guessed from a .gz name on the way).
    for name in ("fetch", "tokenize"):
        files = [f for s in results[name]["shards"] for f in s["files"]]
        assert files and sorted(verify(remote[name].output).ok) == sorted(f["path"] for f in files), name
    assert any(f["path"].endswith(".warc.gz") for s in results["fetch"]["shards"] for f in s["files"])
    tokens = "corpora/run/" + chain.stage("tokenize").output
    listed = bucket.fs.get_file_info(pafs.FileSelector(tokens, recursive=True))
    names = {i.path.removeprefix(tokens + "/") for i in listed if i.type == pafs.FileType.File}
    assert "_stage.json" in names and not any(p.startswith("_work/") for p in names)  # scratch removed there too
    # Dumps streamed from the bucket hash as the files themselves.
    want_dumps = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (demo_world / "reddit").iterdir()}
    assert {d["name"]: d["sha256"] for d in results["harvest"]["dumps"]} == want_dumps
    assert [d["name"] for d in results["harvest"]["dumps"]] == sorted(p.name for p in (demo_world / "reddit").iterdir())

    # The manifest stage follows the lineage through the bucket and writes its corpus manifest there; verify
    # re-hashes every file it names from the store. A manifest on another store than its corpus is refused.
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "manifest"))
    cfg = chain.stage("manifest").config(input=remote["tokenize"].output, output=under(base, "manifests"))
    m = run_stage("manifest", cfg, ray_runner)
    assert m["path"].startswith("s3://corpora/manifests/openwebtext/0.1.0/manifest.json?")
    assert [s["stage"] for s in m["stages"]] == CHAIN and m["stages"][0]["path"] == remote["harvest"].output
    assert m["inputs"] == results["harvest"]["dumps"]
    report = verify(m["path"])
    assert report.clean and len(report.ok) == len(m["files"]), report.lines()
    for sidecar in ("croissant.json", "README.md", "funnel.png"):
        assert bucket.fs.get_file_info(f"corpora/manifests/openwebtext/0.1.0/{sidecar}").type == pafs.FileType.File
    with pytest.raises(PipelineError, match="another store"):
        run_stage("manifest", cfg.model_copy(update={"output": str(tmp_path / "manifests")}), ray_runner)

    # A reader elsewhere (empty mirror) opens the finished dataset from its URI.
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "reader"))
    docs = Dataset(remote["tokenize"].output)
    assert docs.is_complete() and docs.fingerprint() == results["tokenize"]["output_fingerprint"]
    table = read_parquet(docs.shard_files(subdir="documents")[0])
    assert table.num_rows > 0 and "split" in table.column_names

    # The same run again is reused (its identity names URIs, not mirror paths).
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "again"))
    assert run_stage("dedup", remote["dedup"], ray_runner).get("reused")


def test_a_killed_remote_stage_resumes_and_an_incomplete_one_is_refused(tmp_path, finished_dataset, s3, monkeypatch):
    import pyarrow as pa

    from pipeline.stages.filter import FilterConfig

    base, bucket = s3
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "staging"))
    src_uri = under(base, "docs")
    docs = Dataset(src_uri)
    tables = [
        pa.table(
            {
                "url": [f"http://a{s}.example/{i}" for i in range(3)],
                "final_url": [f"http://a{s}.example/{i}" for i in range(3)],
                "lang": ["en", "en", "de"],
                "lang_score": [0.9, 0.9, 0.9],
                "n_tokens": [200, 50, 200],
                "text": [f"document {s}.{i}" for i in range(3)],
            }
        )
        for s in range(2)
    ]
    finished_dataset(docs.path, tables, stage="annotate")
    cfg = FilterConfig(input=src_uri, output=under(base, "filtered"))

    first = run_stage("filter", cfg, LocalRunner())
    # Lose one shard's completion record and the stage manifest, as a run killed before its end would leave them.
    out = Dataset(cfg.output)
    storage.unlink(out.record_path("part-00001"))
    storage.unlink(out.stage_file)
    monkeypatch.setenv(storage.STAGING_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(PipelineError, match=r"input s3://corpora/filtered\?.*incomplete"):
        Dataset(cfg.output).manifest()
    again = run_stage("filter", cfg, LocalRunner())
    assert again["resumed_shards"] == 1 and again["output_fingerprint"] == first["output_fingerprint"]
    assert read_json(Dataset(cfg.output).stage_file)["resumed_shards"] == 1

    # A different config into the same prefix is refused, naming the URI.
    with pytest.raises(PipelineError, match=r"output s3://corpora/filtered\?.* different config"):
        run_stage("filter", cfg.model_copy(update={"min_tokens": 11}), LocalRunner())
