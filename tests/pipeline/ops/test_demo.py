"""`python -m pipeline demo` as a user runs it: relative paths, a fresh directory, then a second run that reuses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import chain

ROOT = Path(__file__).resolve().parents[3]
# sha256 of every shard of `demo --articles 40`, recorded before the package was reorganized: the same input and
# config must keep giving the same bytes (fetch is left out: its WARC records carry the time of the fetch).
GOLDEN = ROOT / "tests" / "golden" / "demo_shards.json"


def shard_hashes(run_dir: Path, dataset: str) -> dict[str, str]:
    manifest = json.loads((run_dir / dataset / "_stage.json").read_text())
    return {f["path"]: f["sha256"] for s in manifest["shards"] for f in s["files"]}


def demo(cwd: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "demo",
        "--run-dir",
        "runs/small",
        "--articles",
        "40",
        "--set",
        "train.max_steps=6",
        "--set",
        "train.eval_interval=3",
        "--set",
        "train.eval_iters=1",
    ]
    env = {"PYTHONPATH": str(ROOT)}
    import os

    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=os.environ | env)


@pytest.mark.slow
def test_demo_runs_then_reuses(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    for line in (
        "submissions read",
        "unique URLs",
        "pages fetched",
        "documents after dedup",
        "GPT-2 tokens",
        "why the rest dropped:",
        "train: done",
        "sample:",
    ):
        assert line in out, out
    assert (tmp_path / "runs" / "small" / "train" / "loss.png").is_file()
    # Extract's documents carried the language and length columns before the annotate stage took them over: its
    # output now holds those bytes, and extract's own folder the documents without them.
    now = {"docs": chain.stage("annotate").output}
    for dataset, hashes in json.loads(GOLDEN.read_text()).items():
        assert shard_hashes(tmp_path / "runs" / "small", now.get(dataset, dataset)) == hashes, dataset
    second = demo(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in chain.names():
        assert f"{stage}: reusing" in second.stdout
    assert "train: reusing finished run" in second.stdout
