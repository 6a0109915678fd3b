"""Faults survived and damage refused, on real pages.

- kill -9 of a Ray worker in extract, dedup and tokenize (one run, three faults): every stage still finishes, with
  the same bytes as an uninterrupted run;
- kill -9 of the driver mid-stage, then the same command again: it resumes, and the output equals an uninterrupted
  run's (same output hashes, same document ids, none twice);
- a truncated, bit-flipped, missing or replaced shard, or a stage manifest edited to name other bytes: `verify` and
  the next stage name it, and the next stage writes no `_stage.json`; a corrupt stage manifest is named by both;
- a bit-flipped token shard: the manifest stage and the trainer refuse it by name and write nothing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fault_drills import CHAIN, DAMAGE, configs, damage, doc_ids, drill_pages, run_child
from bench.pages import fetched_dataset
from pipeline import chain
from pipeline.chain import run_stage
from pipeline.cli import main
from pipeline.core.dataset import Dataset
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.corpus.published import verify

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fetched(shared, tmp_path_factory) -> Path:
    return fetched_dataset(drill_pages(shared), tmp_path_factory.mktemp("fetched"), shards=6)


@pytest.fixture(scope="module")
def uninterrupted(fetched, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    return {name: run_stage(name, cfg, LocalRunner()) for name, cfg in configs(fetched, out).items()}


CHAIN_ON_RAY = """
import json, sys
from pipeline.chain import run_stage, stage
from pipeline.core.runner import RayRunner
cfgs = json.loads(open(sys.argv[1]).read())
runner = RayRunner(num_cpus=2)
out = {n: run_stage(n, stage(n).config(**c), runner)["output_fingerprint"] for n, c in cfgs.items()}
open(sys.argv[2], "w").write(json.dumps(out))
"""


@pytest.mark.slow
def test_workers_killed_in_extract_dedup_and_tokenize_change_nothing(fetched, uninterrupted, tmp_path):
    cfgs = {n: c.model_dump(mode="json") for n, c in configs(fetched, tmp_path / "out").items()}
    (tmp_path / "cfgs.json").write_text(json.dumps(cfgs))
    marker = tmp_path / "fired"
    faults = [
        "shard.part-00002.record",  # extract: a page shard's files written, its record not yet
        "shard._work/signatures/part-00001.record",  # dedup: a signature task
        "shard._pack/train-00000.record",  # tokenize: a token shard being packed
    ]
    proc, got = run_child(
        CHAIN_ON_RAY,
        [str(tmp_path / "cfgs.json")],
        {"OWT_FAULT": ",".join(faults), "OWT_FAULT_MARKER": str(marker)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fired = [marker.exists(), Path(f"{marker}.1").exists(), Path(f"{marker}.2").exists()]
    assert fired == [True, True, True], "every fault must have fired (else this test proves nothing)"
    assert got == {n: uninterrupted[n]["output_fingerprint"] for n in CHAIN}
    # Ray reran the killed tasks; the stage's own bookkeeping saw each shard done once.
    for name in CHAIN:
        assert Dataset(cfgs[name]["output"]).manifest()["resumed_shards"] == 0


@pytest.mark.slow
def test_a_killed_driver_resumes_with_the_same_output(fetched, uninterrupted, tmp_path):
    cfg = configs(fetched, tmp_path)["extract"]
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "extract",
        "--set",
        f"input={cfg.input!r}",
        "--set",
        f"output={cfg.output!r}",
    ]
    env = os.environ | {"OWT_FAULT": "driver.extract.pages.3", "OWT_FAULT_MARKER": str(tmp_path / "fired")}
    killed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    out = Dataset(cfg.output)
    assert not out.is_complete()  # nothing that looks finished
    with pytest.raises(PipelineError, match="incomplete .no _stage.json: the stage never finished"):
        verify(cfg.output)
    done = sorted(p.stem for p in (out.path / "_shards").glob("*.json"))
    assert len(done) >= 3

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    m = out.manifest()
    assert m["resumed_shards"] >= 3 and m["output_fingerprint"] == uninterrupted["extract"]["output_fingerprint"]
    ids, want = doc_ids(cfg.output), doc_ids(uninterrupted["extract"]["config"]["output"])
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(want)


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_shards_are_refused_by_verify_and_by_the_next_stage(kind, uninterrupted, tmp_path, capsys):
    import shutil

    src = tmp_path / "filter"
    shutil.copytree(uninterrupted["filter"]["config"]["output"], src)
    shard, other = src / "part-00001.parquet", src / "part-00002.parquet"
    words = damage(kind, shard, other)

    report = verify(src)
    assert not report.clean and main(["verify", str(src)]) == 1
    named = report.missing if kind == "missing" else [p for p, _ in report.corrupt]
    assert named == ["part-00001.parquet"]
    assert "part-00001.parquet" in capsys.readouterr().out

    cfg = chain.stage("dedup").config(input=str(src), output=str(tmp_path / "dedup"))
    with pytest.raises(PipelineError, match=words) as err:
        run_stage("dedup", cfg, LocalRunner())
    assert "part-00001.parquet" in str(err.value)
    assert not Dataset(cfg.output).is_complete()


def test_extract_refuses_a_damaged_warc_file(fetched, tmp_path):
    import shutil

    src = tmp_path / "fetched"
    shutil.copytree(fetched, src)
    damage("bit_flipped", src / "warc" / "part-00003.00000.warc.gz", src / "part-00002.parquet")
    cfg = configs(src, tmp_path)["extract"]
    with pytest.raises(PipelineError, match=r"warc/part-00003\.00000\.warc\.gz: sha256 .* differs from the recorded"):
        run_stage("extract", cfg, LocalRunner())
    assert not Dataset(cfg.output).is_complete()
    assert [p for p, _ in verify(src).corrupt] == ["warc/part-00003.00000.warc.gz"]


def test_verify_passes_every_intact_stage_output(uninterrupted):
    for name in CHAIN:
        report = verify(uninterrupted[name]["config"]["output"])
        assert report.clean and len(report.ok) == sum(len(s["files"]) for s in uninterrupted[name]["shards"]), name


def test_a_corrupt_stage_manifest_is_named_by_verify_and_by_the_next_stage(uninterrupted, tmp_path):
    import shutil

    src = tmp_path / "filter"
    shutil.copytree(uninterrupted["filter"]["config"]["output"], src)
    stage = src / "_stage.json"
    stage.write_bytes(stage.read_bytes()[:-40])  # cut short
    with pytest.raises(PipelineError, match=r"_stage.json: corrupt stage manifest at line \d+"):
        verify(src)
    assert main(["verify", str(src)]) == 2
    cfg = chain.stage("dedup").config(input=str(src), output=str(tmp_path / "dedup"))
    with pytest.raises(PipelineError, match=r"_stage.json: corrupt JSON at line \d+"):
        run_stage("dedup", cfg, LocalRunner())
    assert not Dataset(cfg.output).is_complete()


def test_a_damaged_token_shard_is_refused_by_manifest_and_by_the_trainer(uninterrupted, tmp_path):
    import shutil

    from model.train import TrainConfig
    from model.train import run as train_run

    src = tmp_path / "tokens"
    shutil.copytree(uninterrupted["tokenize"]["config"]["output"], src)
    shard = sorted((src / "train").glob("*.arrow"))[0]
    damage("bit_flipped", shard, shard)
    cfg = chain.stage("manifest").config(input=str(src), output=str(tmp_path / "manifests"))
    with pytest.raises(PipelineError, match=f"{shard.name}: sha256 .* differs from the recorded"):
        run_stage("manifest", cfg, None)
    assert not list((tmp_path / "manifests").rglob("manifest.json"))  # nothing that vouches for the damaged shard
    train = TrainConfig(
        data=str(src), out_dir=str(tmp_path / "train"), model="tiny", mode="local", max_steps=2, batch_size=2
    )
    with pytest.raises(PipelineError, match=f"{shard.name}: sha256 .* differs from the recorded"):
        train_run(train)
    assert not list((tmp_path / "train").rglob("ckpt.pt"))
