"""A local multi-node Ray cluster, and stages submitted to any Ray cluster as jobs.

    python -m pipeline cluster up [--dir runs/cluster] [--workers 1] [--cpus 1] [--memory-gb 4]
    python -m pipeline cluster status | down
    python -m pipeline submit <stage ...|all|train> [--config FILE] [--set key=value ...] [--address URL]

`cluster up` starts a head and worker raylets on this machine (`ray start`), each with its own temp dir under
`--dir`, its CPU and memory limits and its own worker port range, and writes `<dir>/cluster.json`. `cluster down`
stops the processes of that cluster only (found by their temp dir), never another Ray on the machine.

`submit` sends each target to the cluster through Ray Job Submission, one job per stage in pipeline order: the
project directory is the job's working dir (files in .gitignore stay behind), the stage config is resolved here (so
a bad key fails before anything is sent) and passed as `--set` values, relative paths made absolute. It streams the
job's log and exits with the job's status; the next stage is submitted only after one succeeds.

Paths: a job runs in a copy of the project on the head node. Inputs and outputs must be where every node sees them:
a shared filesystem mounted at the same path (on this machine's local cluster, the local disk), or object storage.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.core.errors import PipelineError

DEFAULT_DIR = Path("runs/cluster")
PROJECT = Path(__file__).resolve().parents[2]  # what a job gets as its working dir, wherever submit runs from
PATH_KEYS = {"input", "output", "data", "out_dir"}  # config keys that name files: made absolute before submission
DONE = {"SUCCEEDED", "FAILED", "STOPPED"}
# The stage driver's ray.init forwards variables of its own (runner.FORWARDED_ENV): let Ray merge them with the job's.
JOB_ENV = {"PYTHONUNBUFFERED": "1", "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}


def free_port(taken: set[int] | None = None) -> int:
    """A port nothing listens on now, and (with `taken`) none handed out before: the OS may give a port it just
    gave back to the next bind, and two of a node's agents on one port stop `ray start`."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if taken is None or port not in taken:
            if taken is not None:
                taken.add(port)
            return port


def _ray_env(venv_bin: Path) -> dict[str, str]:
    # Jobs run `python -m ...` from the raylet's PATH: this project's interpreter first. Token auth as `ray start`
    # enables it (the token in ~/.ray/auth_token), also for the worker raylets and the clients.
    return os.environ | {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def temp_base(root: Path) -> Path:
    """Where the nodes' temp dirs go: under `root` when its path is short, else a short path derived from it (Ray
    puts Unix sockets there, and a socket path may not exceed 107 bytes)."""
    root = root.resolve()
    if len(str(root)) <= 30:  # + /worker-N/session_<date>_<time>_<pid>/sockets/plasma_store: ~75 bytes
        return root
    return Path(tempfile.gettempdir()) / f"owt-ray-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"


def _ray(args: list[str], env: dict[str, str], what: str) -> None:
    ray_bin = Path(sys.executable).with_name("ray")
    p = subprocess.run([str(ray_bin), *args], env=env, capture_output=True, text=True, timeout=180)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-5:])
        raise PipelineError(f"cluster: starting the {what} failed (ray start exit {p.returncode}):\n{tail}")


def cluster_up(
    root: Path = DEFAULT_DIR, workers: int = 1, cpus: int = 1, memory_gb: float = 4.0, port: int | None = None
) -> dict[str, Any]:
    root = root.resolve()
    info_path = root / "cluster.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if cluster_processes(root):
            raise PipelineError(f"cluster: {root} is already running at {info['address']}; `cluster down` first")
        info_path.unlink()  # left by a cluster that died without `down`
    root.mkdir(parents=True, exist_ok=True)
    env = _ray_env(Path(sys.executable).parent)
    base = temp_base(root)
    taken: set[int] = set()  # every port this cluster's nodes are given: each once
    port = port or free_port(taken)
    taken.add(port)
    dashboard = free_port(taken)
    memory = str(int(memory_gb * 2**30))
    object_store = str(int(min(memory_gb / 4, 2.0) * 2**30))
    common = ["--num-cpus", str(cpus), "--memory", memory, "--object-store-memory", object_store]
    common += ["--disable-usage-stats"]

    def node_ports() -> list[str]:
        # Every node's agents on free ports: Ray's fixed defaults (52365, ...) collide with a second node on this
        # machine or with another Ray here, and a head whose job agent cannot bind accepts no jobs.
        keys = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]
        keys += ["--metrics-export-port", "--node-manager-port", "--object-manager-port"]
        return [a for k in keys for a in (k, str(free_port(taken)))]

    try:
        _ray(
            ["start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1"]
            + ["--dashboard-port", str(dashboard), "--temp-dir", str(base / "head")]
            + ["--ray-client-server-port", str(free_port(taken)), "--min-worker-port", "20000"]
            + ["--max-worker-port", "20999"]
            + common
            + node_ports(),
            env,
            "head",
        )
        for i in range(1, workers + 1):
            lo = 20000 + 1000 * i
            _ray(
                ["start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1"]
                + ["--temp-dir", str(base / f"worker-{i}"), "--min-worker-port", str(lo)]
                + ["--max-worker-port", str(lo + 999)]
                + common
                + node_ports(),
                env,
                f"worker {i}",
            )
    except PipelineError:
        cluster_down(root)
        raise
    info = {
        "address": f"127.0.0.1:{port}",
        "dashboard": f"http://127.0.0.1:{dashboard}",
        "nodes": 1 + workers,
        "cpus_per_node": cpus,
        "memory_gb_per_node": memory_gb,
        "temp_dirs": [str(base / "head")] + [str(base / f"worker-{i}") for i in range(1, workers + 1)],
    }
    from pipeline.core.dataset import write_json

    write_json(info_path, info)
    return info


def cluster_processes(root: Path) -> list:
    """Every process of the cluster under `root`: Ray's programs whose command line names one of its temp dirs, and
    their descendants (workers rename themselves `ray::...` and lose the path)."""
    import psutil

    marker = str(temp_base(root)) + os.sep  # its temp dirs are inside: runs/cluster2 is not runs/cluster
    found: dict[int, Any] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmdline = p.info["cmdline"] or []
            # Ray's own programs (…/site-packages/ray/…) naming the cluster's dirs; not, say, a `tail -f` of its logs.
            if any(marker in part for part in cmdline) and any("/ray/" in part for part in cmdline[:3]):
                found[p.pid] = p
                for child in p.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def cluster_down(root: Path = DEFAULT_DIR, grace_s: float = 10.0) -> int:
    import psutil

    procs = cluster_processes(root)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    (root / "cluster.json").unlink(missing_ok=True)
    if temp_base(root) != root.resolve():
        shutil.rmtree(temp_base(root), ignore_errors=True)  # the short-path stand-in; under `root` logs stay
    return len(procs)


def cluster_info(root: Path = DEFAULT_DIR) -> dict[str, Any] | None:
    path = root / "cluster.json"
    return json.loads(path.read_text()) if path.is_file() else None


# What Ray's job client reads from the environment, and lets win over the address it is given.
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def job_address(address: str | None, root: Path = DEFAULT_DIR) -> str:
    """--address, else $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS (as Ray reads them), else the local cluster's."""
    address = address or next((os.environ[k] for k in ADDRESS_ENV if os.environ.get(k)), None)
    if address:
        return address
    info = cluster_info(root)
    if info is None:
        raise PipelineError(
            "submit: no cluster address: pass --address, set RAY_ADDRESS (e.g. http://head:8265), "
            "or start the local cluster with `make cluster-up`"
        )
    return info["dashboard"]


def _absolute(value: Any) -> Any:
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    if isinstance(value, str) and value and "://" not in value and not os.path.isabs(value):
        return str(Path(value).resolve())
    return value


BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_literal(value: Any) -> str:
    """A JSON-like value as a TOML literal, as `--set` reads it: tables inline (filter's rules are a list of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float | str):
        return json.dumps(value)  # JSON strings and numbers are TOML's too (escapes included)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{k if BARE_KEY.match(k) else json.dumps(k)} = {toml_literal(v)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}"
    raise PipelineError(f"submit: {value!r} has no TOML form")


def entrypoint(target: str, config: str | None, overrides: list[str], root: str | None = None) -> str:
    """The command the job runs: the target's config resolved here (datasets under the root), every key passed as
    `--set`."""
    from pipeline import chain
    from pipeline.core.config import TypedConfig

    mine = [o.split(".", 1)[1] for o in overrides if o.startswith(target + ".")]
    cfg: TypedConfig
    if target == "train":
        from model.train import load_train_config

        cfg, module = load_train_config(config, mine, root), "model.train"
    elif target in chain.names():
        cfg, module = chain.config_for(target, config, mine, root=root), "pipeline " + target
    else:
        raise PipelineError(f"submit: unknown target {target!r} (stages: {', '.join(chain.names())}, train, all)")
    args = []
    # Only what differs from the defaults (the job's stage saves its whole resolved config with its output).
    for key, value in flat(cfg.model_dump(mode="json", exclude_defaults=True)):
        if key in PATH_KEYS or (key.startswith("options.") and key.endswith(".model")):  # annotators' model files
            value = _absolute(value)
        args.append(f"--set {key}={shlex.quote(toml_literal(value))}")
    return f"python -m {module} " + " ".join(args)


def flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested tables as dotted keys (`quality.min_stop_words`), as `--set` takes them; None (not in TOML) left out."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += flat(v, f"{prefix}{k}.")
        elif v is not None:
            out.append((prefix + k, v))
    return out


def submit(
    targets: list[str],
    config: str | None,
    overrides: list[str],
    address: str | None,
    project: Path = PROJECT,
    wait: bool = True,
    cluster_dir: Path = DEFAULT_DIR,
    root: str | None = None,
) -> int:
    from pipeline import chain

    if targets == ["all"]:
        targets = chain.names()
    if not wait and len(targets) > 1:
        # Each stage reads the previous one's finished output: only a watched job can gate the next.
        raise PipelineError("submit: --no-wait takes a single target (stages run in order, each after the last)")
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"  # before ray is imported, as `ray start` enabled it
    from ray.job_submission import JobSubmissionClient

    commands = [(t, entrypoint(t, config, overrides, root)) for t in targets]  # every config checked before any job
    client = job_client(JobSubmissionClient, job_address(address, cluster_dir))
    url = client.get_address()
    from pipeline.core.runner import FORWARDED_ENV

    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    for target, command in commands:
        job = _submit_job(
            client,
            entrypoint=command,
            runtime_env={"working_dir": str(project.resolve()), "env_vars": env | JOB_ENV},
            metadata={"target": target},
        )
        print(f"submit: {target} -> job {job} on {url}", file=sys.stderr)
        if not wait:
            continue
        try:
            status = asyncio.run(_follow(client, job))
        except KeyboardInterrupt:
            print(f"\nsubmit: stopped following; the job goes on (ray job stop {job} to stop it)", file=sys.stderr)
            return 130
        print(f"submit: {target}: job {job} {status}", file=sys.stderr)
        if status != "SUCCEEDED":
            info = client.get_job_info(job)
            print(f"submit: {info.message or ''}".rstrip(), file=sys.stderr)
            return 1
    return 0


def job_client(cls, address: str):
    # Ray's client replaces the address it is given by $RAY_ADDRESS when that is set: an explicit --address (or the
    # DAG's ray_address) must win, so the client is built with those variables out of the way.
    saved = {k: os.environ.pop(k) for k in ADDRESS_ENV if k in os.environ}
    try:
        return cls(address)
    finally:
        os.environ.update(saved)


def _submit_job(client, retry_s: float = 90.0, **kw: Any) -> str:
    # A head that has just started answers "No available agent" until its job agent is up: wait for it.
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return client.submit_job(**kw)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


async def _follow(client, job: str) -> str:
    async for lines in client.tail_job_logs(job):
        print(lines, end="", flush=True)
    while (status := str(client.get_job_status(job)).split(".")[-1]) not in DONE:
        await asyncio.sleep(0.5)  # the log stream can end a moment before the status is final
    return status


def main_cluster(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline cluster", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the cluster's temp dirs and cluster.json")
    ap.add_argument("--workers", type=int, default=1, help="worker nodes beside the head")
    ap.add_argument("--cpus", type=int, default=1, help="CPUs per node")
    ap.add_argument("--memory-gb", type=float, default=4.0, help="memory per node")
    ap.add_argument("--port", type=int, default=None, help="the head's GCS port (default: a free one)")
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            info = cluster_up(args.dir, args.workers, args.cpus, args.memory_gb, args.port)
            print(
                f"cluster: {info['nodes']} nodes up; RAY_ADDRESS={info['address']} (drivers), "
                f"{info['dashboard']} (jobs, dashboard); `make cluster-down` stops it"
            )
        elif args.action == "down":
            n = cluster_down(args.dir)
            print(f"cluster: stopped {n} processes of {args.dir.resolve()}")
        else:
            found = cluster_info(args.dir)
            alive = len(cluster_processes(args.dir)) if found else 0
            print(json.dumps({"cluster": found, "processes": alive}, indent=2))
            return 0 if found and alive else 1
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main_submit(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline submit", description="stages as Ray jobs, in order")
    ap.add_argument("targets", nargs="+", metavar="TARGET", help="stages, `all` (every stage) or `train`")
    ap.add_argument("--config", metavar="FILE", help="TOML file with a table per stage")
    ap.add_argument("--root", help="where the datasets go (default: the config's [pipeline] root)")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE", help="override a key"
    )
    ap.add_argument("--address", help="dashboard URL or cluster address (default: $RAY_ADDRESS, else --cluster-dir's)")
    ap.add_argument("--cluster-dir", type=Path, default=DEFAULT_DIR, help="the local cluster's --dir (no address)")
    ap.add_argument("--no-wait", action="store_true", help="submit and return; no log streaming")
    args = ap.parse_args(argv)
    try:
        return submit(
            args.targets,
            args.config,
            args.overrides,
            args.address,
            wait=not args.no_wait,
            cluster_dir=args.cluster_dir,
            root=args.root,
        )
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
