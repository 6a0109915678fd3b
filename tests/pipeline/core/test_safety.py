"""Data safety: no command deletes or rewrites what it reads, a rerun after any interruption leaves exactly what an
uninterrupted run leaves, and `verify` checks the counts a manifest records."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import chain
from pipeline.chain import PIPELINE, run_stage
from pipeline.cli import main
from pipeline.core import storage
from pipeline.core.dataset import STAGE_FILE, Dataset, read_json, write_json
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.core.stage import ShardTask, StageRun, finish_shard
from pipeline.corpus.published import publish, verify
from pipeline.stages.manifest import ManifestConfig
from pipeline.stages.tokenize import TokenizeConfig
from pipeline.text.urls import url_hash

ROOT = Path(__file__).resolve().parents[3]


def docs_tables(shared: Path, shards: int = 4, per_shard: int = 10) -> list[pa.Table]:
    pages = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    texts = [p["articleBody"] for p in pages.values()]
    tables = []
    for s in range(shards):
        urls = [f"http://site{s}.example.com/{i}" for i in range(per_shard)]
        tables.append(
            pa.table(
                {
                    "url_hash": [url_hash(u) for u in urls],
                    "url": urls,
                    "domain": [f"site{s}.example.com"] * per_shard,
                    "text": texts[s * per_shard : (s + 1) * per_shard],
                }
            )
        )
    return tables


@pytest.fixture()
def docs(tmp_path, shared, finished_dataset) -> Path:
    return finished_dataset(tmp_path / "deduped", docs_tables(shared))


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def tokenize_cfg(src: Path, out: Path) -> TokenizeConfig:
    return TokenizeConfig(input=str(src), output=str(out), val_fraction=0.2, shard_tokens=3000)


# --- an output that is, holds or lies inside an input --------------------------------------------------------------


def test_overwrite_onto_the_input_is_refused_and_the_input_kept(docs):
    before = listing(docs)
    assert len([p for p in before if p.endswith(".parquet")]) == 4
    for output in (docs, f"{docs}/", docs / ".." / docs.name, docs / "part-00000.parquet", docs / "sub", docs.parent):
        with pytest.raises(PipelineError, match=r"^tokenize: output .* (is|lies inside|contains) its input .*deduped"):
            run_stage("tokenize", tokenize_cfg(docs, Path(output)), LocalRunner(), overwrite=True)
    link = docs.parent / "link"
    link.symlink_to(docs)
    with pytest.raises(PipelineError, match="is its input"):
        run_stage("tokenize", tokenize_cfg(docs, link), LocalRunner(), overwrite=True)
    assert listing(docs) == before  # 4 shards, still


def stage_case(name: str, tmp_path: Path, shared: Path, docs: Path) -> tuple[dict, Path]:
    """A config for `name` whose output would clobber its input (the case each stage's driver is reached by)."""
    if name == "harvest":
        dumps = tmp_path / "dumps"
        dumps.mkdir()
        shutil.copy(shared / "reddit" / "RS_v2_2005-06.xz", dumps)
        return {"input": [str(dumps)], "output": str(dumps)}, dumps
    if name == "ingest":
        f = tmp_path / "mine" / "texts.jsonl"
        f.parent.mkdir()
        f.write_text('{"text": "one"}\n')
        return {"input": [str(f)], "output": str(f.parent)}, f.parent
    return {"input": str(docs), "output": str(docs / "out")}, docs


@pytest.mark.parametrize("name", [s.name for s in PIPELINE if s.name != "manifest"] + ["ingest"])
def test_every_stage_refuses_an_output_over_its_input(name, tmp_path, shared, docs):
    values, guarded = stage_case(name, tmp_path, shared, docs)
    before = listing(guarded)
    if name == "ingest":
        from pipeline.stages import ingest

        cfg = ingest.IngestConfig(**values)
        with pytest.raises(PipelineError, match="ingest: output .* its input"):
            ingest.run(cfg, LocalRunner(), overwrite=True)
    else:
        s = chain.stage(name)  # its own driver, past run_stage's check of the input's kind
        with pytest.raises(PipelineError, match=f"{name}: output .* its input"):
            s.run(s.config(**values), LocalRunner(), True)
    assert listing(guarded) == before


def test_manifest_publish_and_download_refuse_their_inputs(tmp_path, docs):
    tokens = tmp_path / "tokens"
    run_stage("tokenize", tokenize_cfg(docs, tokens), LocalRunner())
    with pytest.raises(PipelineError, match="manifest: output .*tokens/t/1.0.0 lies inside its input .*tokens"):
        run_stage("manifest", ManifestConfig(input=str(tokens), output=str(tokens), name="t", version="1.0.0"), None)
    m = run_stage(
        "manifest", ManifestConfig(input=str(tokens), output=str(tmp_path / "m"), name="t", version="1.0.0"), None
    )
    first = Path(publish(m["path"], str(tmp_path / "pub")))
    # Publishing a published corpus onto itself would truncate each file before reading it.
    with pytest.raises(PipelineError, match="publish: output .*pub/t/1.0.0 is its input .*pub/t/1.0.0"):
        publish(first, str(tmp_path / "pub"))
    with pytest.raises(PipelineError, match="publish: output .* lies inside its input .*tokens"):
        publish(m["path"], str(tokens))
    assert verify(first).clean and verify(tokens).clean


def test_paths_and_uris_compare_normalized(tmp_path):
    (tmp_path / "a").mkdir()
    assert storage.overlap(tmp_path / "a", f"{tmp_path}/a/") == "is"
    assert storage.overlap(f"file://{tmp_path}/a", tmp_path / "b" / ".." / "a") == "is"
    assert storage.overlap(tmp_path / "a" / "b", tmp_path / "a") == "lies inside"
    assert storage.overlap(tmp_path, tmp_path / "a") == "contains"
    assert storage.overlap(tmp_path / "ab", tmp_path / "a") is None  # a prefix of the name is not containment
    assert storage.overlap("s3://bucket/corpus/", "s3://bucket/corpus?endpoint_override=127.0.0.1:9000") == "is"
    assert storage.overlap("s3://bucket/corpus/x/../tokens", "s3://bucket/corpus") == "lies inside"
    assert storage.overlap("s3://bucket/corpus", "s3://bucket/corpus2") is None
    assert storage.overlap("s3://bucket/corpus", "s3://other/corpus") is None
    assert storage.overlap("gcs://b/c", "gs://b/c/d") == "contains"
    assert storage.overlap("s3://bucket/corpus", tmp_path / "bucket" / "corpus") is None
    mirror = storage.local_view("s3://bucket/corpus/tokens?endpoint_override=127.0.0.1:9000")
    assert storage.overlap(mirror, "s3://bucket/corpus") == "lies inside"
    with pytest.raises(PipelineError, match="^dedup: output s3://bucket/c is its input s3://bucket/c/; choose"):
        storage.check_apart("dedup", "s3://bucket/c", ["s3://bucket/c/"])


def test_overwrite_never_deletes_what_the_pipeline_did_not_write(tmp_path, docs):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(PipelineError, match="was not written by this pipeline"):
        run_stage("tokenize", tokenize_cfg(docs, mine), LocalRunner(), overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    # another stage's dataset is not this stage's to replace either
    tokens = tmp_path / "tokens"
    run_stage("tokenize", tokenize_cfg(docs, tokens), LocalRunner())
    dedup = chain.stage("dedup")
    with pytest.raises(PipelineError, match="holds a tokenize run, not a dedup one"):
        dedup.run(dedup.config(input=str(docs), output=str(tokens)), LocalRunner(), True)
    assert verify(tokens).clean


# --- leftovers of an interrupted run ---------------------------------------------------------------------------------


def test_a_signal_after_stage_json_leaves_nothing_once_rerun(tmp_path, docs, monkeypatch):
    ref = tmp_path / "ref"
    run_stage("tokenize", tokenize_cfg(docs, ref), LocalRunner())
    out = tmp_path / "tokens"
    remove_tree = storage.remove_tree

    def interrupted(path):
        if Path(path).name == "_work":
            raise KeyboardInterrupt  # Ctrl-C between _stage.json and the removal of the encoded tokens
        remove_tree(path)

    monkeypatch.setattr(storage, "remove_tree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_stage("tokenize", tokenize_cfg(docs, out), LocalRunner())
    monkeypatch.setattr(storage, "remove_tree", remove_tree)
    assert (out / STAGE_FILE).is_file() and (out / "_work").is_dir()
    stale = out / "documents" / ".part-00001.parquet.tmp-99999"  # a write killed half-way, in an earlier run
    stale.write_bytes(b"PAR1")
    again = run_stage("tokenize", tokenize_cfg(docs, out), LocalRunner())
    assert again.get("reused") is True
    assert listing(out) == listing(ref)  # no _work/, no temporary file
    assert verify(out).clean


def test_scratch_and_temporary_files_go_when_a_finished_stage_is_reused(tmp_path, docs):
    out = tmp_path / "tokens"
    run_stage("tokenize", tokenize_cfg(docs, out), LocalRunner())
    finished = listing(out)
    (out / "_parts" / "part-00000").mkdir(parents=True)  # fetch's committed segments, the shard's record written
    (out / "_parts" / "part-00000" / "00000.parquet").write_bytes(b"x")
    (out / "train" / ".tokens-00000.arrow.tmp-4242").write_bytes(b"x")
    assert run_stage("tokenize", tokenize_cfg(docs, out), LocalRunner()).get("reused") is True
    assert listing(out) == finished


def test_a_dead_workers_temporary_file_is_gone_when_the_stage_finishes(tmp_path, docs):
    out = tmp_path / "out"
    cfg = tokenize_cfg(docs, out)
    run_ = StageRun("lines", cfg, out, {str(docs): "x"}, LocalRunner())

    def task(t):
        # what a worker SIGKILLed mid-write leaves, before Ray's retry (another pid) writes the shard
        (Path(t.output) / f".{t.name}.parquet.tmp-31337").write_bytes(b"half")
        (Path(t.output) / f"{t.name}.parquet").write_bytes(b"whole")
        return finish_shard(t, [Path(t.output) / f"{t.name}.parquet"], rows_in=1, rows_out=1)

    shards = run_.map(task, [ShardTask("part-00000", [], str(out), cfg, None, "fp")], "shards")
    run_.finish(shards)
    assert not list(out.rglob(".*.tmp-*"))


TOKENIZE_RUN = """
import sys
from pipeline.chain import run_stage, stage
from pipeline.core.runner import LocalRunner
cfg = stage("tokenize").config(input=sys.argv[1], output=sys.argv[2], val_fraction=0.2, shard_tokens=3000)
run_stage("tokenize", cfg, LocalRunner())
"""


@pytest.mark.parametrize("point", ["write.part-00001.parquet", "write._stage.json"])
def test_a_kill_mid_write_leaves_a_half_file_that_the_rerun_removes(tmp_path, docs, point):
    ref = tmp_path / "ref"
    want = run_stage("tokenize", tokenize_cfg(docs, ref), LocalRunner())
    out = tmp_path / "tokens"
    env = os.environ | {"OWT_FAULT": point, "OWT_FAULT_MARKER": str(tmp_path / "fired")}
    cmd = [sys.executable, "-c", TOKENIZE_RUN, str(docs), str(out)]
    killed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    name = point.removeprefix("write.")
    (tmp,) = [p for p in out.rglob(f".{name}.tmp-*")]
    whole = next(p for p in ref.rglob(name))
    if name.endswith(".parquet"):  # (a stage manifest's size varies with its timestamps)
        assert tmp.stat().st_size == whole.stat().st_size // 2  # half of its bytes, under the temporary name
    assert not (out / STAGE_FILE).exists()
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert Dataset(out).manifest()["output_fingerprint"] == want["output_fingerprint"]
    assert listing(out) == listing(ref)


# --- verify checks the counts ---------------------------------------------------------------------------------------


@pytest.fixture()
def tokens(tmp_path, docs) -> Path:
    out = tmp_path / "tokens"
    run_stage("tokenize", tokenize_cfg(docs, out), LocalRunner())
    return out


def edit_stage(folder: Path, fn) -> None:
    m = read_json(folder / STAGE_FILE)
    fn(m)
    write_json(folder / STAGE_FILE, m)


@pytest.mark.parametrize(
    "edit, named",
    [
        # a shard's rows changed by hand, in and out alike: only the file's own row count contradicts it
        (lambda m: m["shards"][1].update(rows_in=11, rows_out=11), "documents/part-00001.parquet: holds 10 rows"),
        (lambda m: m["shards"][0].update(rows_in=11), "shard part-00000: rows_in 11 - drops 0 != rows_out 10"),
        (lambda m: m.update(rows_out=39), "stage: rows_in 40 - drops 0 != rows_out 39"),
        (lambda m: m.update(rows_in=41, rows_out=41), "stage rows_out 41 != 40, the sum of its shards'"),
        (lambda m: m.update(drops={"too_short": 1}, rows_in=41), "stage drops {'too_short': 1} != {}"),
        (lambda m: m["shards"][-1].update(tokens=m["shards"][-1]["tokens"] + 1), r"\.arrow: holds [\d,]+ tokens"),
    ],
)
def test_verify_names_a_count_edited_by_hand(tokens, edit, named, capsys):
    assert verify(tokens).clean
    edit_stage(tokens, edit)
    report = verify(tokens)
    assert not report.clean and report.counts is not None
    capsys.readouterr()
    assert main(["verify", str(tokens)]) == 1
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("counts")]
    assert re.search(named, line), line


def test_verify_checks_a_published_manifests_counts(tmp_path, tokens):
    m = run_stage(
        "manifest", ManifestConfig(input=str(tokens), output=str(tmp_path / "m"), name="t", version="1.0.0"), None
    )
    path = Path(m["path"])
    assert verify(path).clean
    data = read_json(path)
    data["totals"]["documents"] += 1
    write_json(path, data)
    assert "totals.documents 41 != 40" in (verify(path).counts or "")
    data["totals"]["documents"] -= 1
    data["files"][0]["rows"] += 1
    write_json(path, data)
    assert "documents/part-00000.parquet: holds 10 rows, its manifest records 11" in (verify(path).counts or "")
