"""`python -m pipeline demo` as a user runs it: relative paths, a fresh directory, then a second run that reuses."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
    second = demo(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in ("harvest", "fetch", "extract", "filter", "dedup", "tokenize", "manifest"):
        assert f"{stage}: reusing" in second.stdout
    assert "train: reusing finished run" in second.stdout
