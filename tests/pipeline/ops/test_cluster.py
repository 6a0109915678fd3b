"""A real two-node Ray cluster on this machine (`pipeline cluster up`): a stage submitted as a Ray job runs tasks on
both nodes and writes what the embedded run writes; the trainer runs two Ray Train workers, one per node; and
`cluster down` stops that cluster's processes and no others."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.pages import fetched_dataset, real_pages
from pipeline import chain
from pipeline.core.dataset import Dataset, read_json
from pipeline.core.errors import PipelineError
from pipeline.ops.cluster import cluster_down, cluster_processes, cluster_up, job_address, temp_base
from pipeline.stages.extract import ExtractConfig
from pipeline.stages.extract import run as extract_run

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    info = cluster_up(root, workers=1, cpus=1, memory_gb=3)
    try:
        yield root, info
    finally:
        cluster_down(root)


def submit(cluster_info, *args: str, address: str = "flag") -> subprocess.CompletedProcess:
    """`pipeline submit` with the cluster's address given by --address (while $RAY_ADDRESS names a dead one, which
    Ray's client alone would prefer), or by $RAY_ADDRESS alone (address="env")."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "RAY_ADDRESS": "http://127.0.0.1:1"}
    flag = ["--address", cluster_info["dashboard"]]
    if address == "env":
        env["RAY_ADDRESS"], flag = cluster_info["dashboard"], []
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "submit", *args, *flag],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def outputs(path: Path) -> dict[str, str]:
    """Every output file and its sha256, from the shard records."""
    ds = Dataset(path)
    return {f["path"]: f["sha256"] for s in ds.manifest()["shards"] for f in s["files"]}


def test_cluster_has_two_nodes_and_its_own_processes(cluster):
    root, info = cluster
    assert info["nodes"] == 2 and len(info["temp_dirs"]) == 2
    names = {p.name() for p in cluster_processes(root)}
    assert {"gcs_server", "raylet"} <= names, names
    assert sum(p.name() == "raylet" for p in cluster_processes(root)) == 2


def test_submitted_extract_runs_on_both_nodes_and_matches_the_embedded_run(cluster, tmp_path, ray_runner):
    _, info = cluster
    fetched = fetched_dataset(real_pages(python_pages=20), tmp_path / "fetched", shards=6)
    extract_run(ExtractConfig(input=str(fetched), output=str(tmp_path / "embedded")), ray_runner)

    config = tmp_path / "c.toml"
    config.write_text(f'[extract]\ninput = "{fetched}"\noutput = "{tmp_path / "submitted"}"\n')
    p = submit(info, "extract", "--config", str(config))
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "SUCCEEDED" in p.stderr and "extract:" in p.stdout  # the job's own log, streamed
    nodes = {read_json(f)["worker"]["node"] for f in (tmp_path / "submitted" / "_shards").glob("*.json")}
    assert len(nodes) == 2, nodes
    assert outputs(tmp_path / "submitted") == outputs(tmp_path / "embedded")


def test_a_failing_job_gives_a_failing_exit(cluster, tmp_path):
    _, info = cluster
    config = tmp_path / "c.toml"
    config.write_text(f'[extract]\ninput = "{tmp_path / "nothing"}"\noutput = "{tmp_path / "out"}"\n')
    p = submit(info, "extract", "--config", str(config))
    assert p.returncode == 1 and "FAILED" in p.stderr, (p.stdout + p.stderr)[-3000:]


def test_submit_all_from_ray_address_stops_at_the_first_failing_stage(cluster, tmp_path):
    _, info = cluster
    config = tmp_path / "c.toml"
    config.write_text(f'[pipeline]\nroot = "{tmp_path}"\n[harvest]\ninput = ["{tmp_path / "no-dumps-here"}"]\n')
    p = submit(info, "all", "--config", str(config), address="env")
    err = p.stderr
    assert p.returncode == 1 and "submit: harvest: job" in err and "FAILED" in err, (p.stdout + err)[-3000:]
    assert info["dashboard"] in err  # the address $RAY_ADDRESS named
    assert "submit: fetch" not in err  # the next stage is never sent after a failed one
    assert not (tmp_path / chain.stage("harvest").output / "_stage.json").exists()


def test_bad_config_fails_before_anything_is_sent(cluster, tmp_path):
    _, info = cluster
    p = submit(
        info, "extract", "--set", "extract.no_such_key=1", "--set", "extract.input=x", "--set", "extract.output=y"
    )
    assert p.returncode == 2 and "no_such_key" in p.stderr and "job" not in p.stderr


def test_trainer_runs_two_ray_train_workers_on_the_two_nodes(cluster, tmp_path, shakespeare_tokens):
    _, info = cluster
    out = tmp_path / "train"
    sets = dict(data=str(shakespeare_tokens), out_dir=str(out), model="tiny", batch_size=4, max_steps=6)
    sets |= dict(eval_interval=3, eval_iters=1, num_workers=2, cpus_per_worker=1, sample_tokens=4, warmup_steps=1)
    args = [a for k, v in sets.items() for a in ("--set", f"train.{k}={v}")]
    p = submit(info, "train", *args)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    final = json.loads((out / "final.json").read_text())
    assert final["steps"] == 6
    assert sorted(w["rank"] for w in final["workers"]) == [0, 1]
    assert len({w["node"] for w in final["workers"]}) == 2, final["workers"]


def test_cluster_down_stops_only_that_cluster(tmp_path_factory, ray_runner, monkeypatch):
    import socket

    import ray

    root = tmp_path_factory.mktemp("other")
    info = cluster_up(root, workers=1, cpus=1, memory_gb=2)
    mine = {p.pid for p in cluster_processes(root)}
    assert sum(p.name() == "raylet" for p in cluster_processes(root)) == 2

    def answers(address: str) -> bool:
        host, port = address.removeprefix("http://").rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex((host, int(port))) == 0

    assert answers(info["address"]) and answers(info["dashboard"])
    log = temp_base(root) / "head" / "notes.log"  # a user's `tail -f` of a file in the cluster's dir
    log.write_text("x\n")
    reader = subprocess.Popen(["tail", "-f", str(log)], stdout=subprocess.DEVNULL)
    try:
        stopped = cluster_down(root)
        assert stopped == len(mine) and not any(psutil.pid_exists(pid) for pid in mine)
        # Seen from outside the process finder: the cluster's GCS and dashboard ports no longer answer.
        assert not answers(info["address"]) and not answers(info["dashboard"])
        assert reader.poll() is None  # not a Ray process: left alone
    finally:
        reader.kill()
    assert ray.is_initialized() and ray.get(ray.remote(lambda: 1).remote()) == 1  # the session's own Ray lives on
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(PipelineError, match="no cluster address"):
        job_address(None, root)  # cluster.json went with the cluster
