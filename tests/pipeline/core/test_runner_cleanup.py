"""The embedded Ray goes with its driver: after kill -9 of a driver that started one, none of that Ray's processes
(head, raylet, agents, workers) is left a few seconds later. The driver's one task also checks that an OSError raised
in a Ray worker reaches the driver as one line naming the shard and its folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

DRIVER = """
import errno, sys
from dataclasses import dataclass
from pipeline.core.errors import PipelineError
from pipeline.core.runner import RayRunner

@dataclass
class Task:
    name: str
    output: str

def full(task):
    raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

runner = RayRunner(num_cpus=1)
try:
    runner.map(full, [Task("part-00000", sys.argv[1])], desc="extract pages")
except PipelineError as e:
    print("error:", e, flush=True)
print("ready", flush=True)
sys.stdin.read()
"""


def alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return left


def test_kill_9_of_the_driver_leaves_no_process_of_its_ray(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "docs")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert driver.stdout is not None
        lines = []
        for line in driver.stdout:
            lines.append(line)
            if line == "ready\n":
                break
        assert lines[-1:] == ["ready\n"], lines
        assert lines[0] == (
            f"error: extract pages part-00000: cannot write into {tmp_path / 'docs'}: [Errno 28] No space left on "
            "device (free some space); finished shards are kept, rerun to retry the failed ones\n"
        )
        ray = psutil.Process(driver.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in ray)
        assert "raylet" in names and "ray::DashboardAgent" in names and "ray::RuntimeEnvAgent" in names, names
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 10
    while alive(ray) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not alive(ray)
