"""Two-worker DDP training: torchrun and Ray Train give the same run, and a Ray Train run survives a worker killed
with SIGKILL and then its driver killed with SIGKILL, ending with exactly the losses of the uninterrupted run.

Each run is its own process (as users start them), so the fault-injection variables reach the Ray workers of the
embedded Ray that process starts.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.train import TrainConfig, run
from pipeline.core.errors import PipelineError

ROOT = Path(__file__).resolve().parents[2]
STEPS = 32


def settings(tokens: Path, out: Path) -> list[str]:
    kv = dict(
        data=tokens,
        out_dir=out,
        model="tiny",
        batch_size=4,
        max_steps=STEPS,
        lr=3e-3,
        warmup_steps=2,
        eval_interval=4,
        eval_iters=1,
        log_interval=1,
        sample_tokens=8,
        cpus_per_worker=1,
    )
    return [a for k, v in kv.items() for a in ("--set", f"{k}={v}")]


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "OWT_FAULT"))}
    return e | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"} | extra


def records(out: Path, kind: str) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == kind]


def train_losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records(out, "train")]


@pytest.fixture(scope="module")
def torchrun_reference(shakespeare_tokens, tmp_path_factory):
    out = tmp_path_factory.mktemp("torchrun") / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "model.train"]
    cmd += settings(shakespeare_tokens, out) + ["--set", "mode=torchrun"]
    p = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "train: done" in p.stdout and p.stdout.count("train: done") == 1  # rank 0 reports, rank 1 stays quiet
    return out


def test_torchrun_trains_two_ddp_ranks(torchrun_reference):
    losses = train_losses(torchrun_reference)
    assert [s for s, _ in losses] == list(range(1, STEPS + 1))
    assert losses[-1][1] < losses[0][1] - 2
    ckpt = torch.load(torchrun_reference / "checkpoints" / "ckpt.pt", weights_only=True)
    assert len(ckpt["ranks"]) == 2  # both ranks' RNG streams and data cursors
    assert ckpt["ranks"][0]["numpy_data"] != ckpt["ranks"][1]["numpy_data"]


def test_torchrun_mode_needs_torchrun(shakespeare_tokens, tmp_path):
    cfg = TrainConfig(data=str(shakespeare_tokens), out_dir=str(tmp_path), model="tiny", mode="torchrun")
    with pytest.raises(PipelineError, match="start it with torchrun"):
        run(cfg)


def test_ray_train_survives_a_killed_worker_and_a_killed_driver(shakespeare_tokens, torchrun_reference, tmp_path):
    out = tmp_path / "run"
    marker = tmp_path / "fault-fired"
    cmd = [sys.executable, "-m", "model.train", *settings(shakespeare_tokens, out), "--set", "mode=ray"]
    cmd += ["--set", "num_workers=2"]
    log = tmp_path / "first.log"
    # Rank 1 SIGKILLs itself after step 6 (the last checkpoint is step 4): Ray Train restarts the worker group.
    faults = env(OWT_FAULT="train.step.6.rank.1", OWT_FAULT_MARKER=str(marker))
    with open(log, "w") as f:
        driver = subprocess.Popen(cmd, cwd=ROOT, env=faults, stdout=f, stderr=subprocess.STDOUT)
    try:
        # Then the driver is SIGKILLed once the restarted group has checkpointed step 12.
        deadline = time.time() + 240
        while not any(r["step"] >= 12 for r in records(out, "eval")):
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    first = log.read_text()
    # The restarted group resumes from step 4: from Ray Train's checkpoint, or from out_dir's ckpt.pt when the
    # controller had not yet registered the step-4 report when rank 1 died (both hold the same state).
    assert marker.exists() and "train: resuming from step 4 (" in first, first[-3000:]
    assert not (out / "final.json").exists(), "the run finished before its driver was killed"

    again = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "train: resuming from step" in again.stdout + again.stderr
    ours, reference = train_losses(out), train_losses(torchrun_reference)
    assert [s for s, _ in ours] == list(range(1, STEPS + 1))  # each step logged once: replayed steps replaced
    np.testing.assert_allclose([v for _, v in ours], [v for _, v in reference], atol=1e-6, rtol=0)
    final = json.loads((out / "final.json").read_text())
    assert final["val_loss"] == pytest.approx(json.loads((torchrun_reference / "final.json").read_text())["val_loss"])
