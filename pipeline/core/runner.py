"""Where shard work runs: embedded or cluster Ray, or in-process for debugging.

This is the only module that imports `ray` for the data stages, so a Ray API change touches one file.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from pipeline.core.config import Resources
from pipeline.core.errors import PipelineError, os_error_line
from pipeline.core.faults import fault_point

T = TypeVar("T")
R = TypeVar("R")

# Environment the workers need to see the same files as the driver (tiktoken has no network here).
FORWARDED_ENV = ("TIKTOKEN_CACHE_DIR", "OWT_FASTTEXT_MODEL", "OWT_FAULT", "OWT_FAULT_MARKER", "OWT_STAGING_DIR")


class Runner(Protocol):
    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, resources: Resources | None = None
    ) -> list[R]: ...

    def close(self) -> None: ...


def _progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="shard", file=sys.stderr, dynamic_ncols=True, leave=True)


class LocalRunner:
    """Runs every task in this process, one after another: for debugging with pdb and for tiny inputs. Resources
    are not reserved: one task runs at a time."""

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, resources: Resources | None = None
    ) -> list[R]:
        out: list[Any] = []
        failures: list[BaseException] = []
        with _progress(len(items), desc) as bar:
            for item in items:
                try:
                    out.append(fn(item))
                except Exception as e:  # the other shards still finish; see raise_failures
                    failures.append(task_failure(e, item, desc))
                bar.update(1)
                driver_fault_point(desc, bar.n)
        raise_failures(failures, len(items))
        return out

    def close(self) -> None:
        pass


class RayRunner:
    """One Ray task per shard. `address=None` starts an embedded local Ray unless RAY_ADDRESS is set."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        if (address or os.environ.get("RAY_ADDRESS")) and "RAY_AUTH_MODE" not in os.environ:
            # `ray start` turns token auth on and saves the token in ~/.ray/auth_token, but a driver that joins
            # with an address does not turn it on by itself; Ray reads the mode when it is imported.
            if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file():
                os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        self._ray = ray
        self._owned = False
        self._reaper: subprocess.Popen[bytes] | None = None
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
            kwargs: dict[str, Any] = {
                "address": address,
                # include_dashboard stays at Ray's default (on): the dashboard serves the state API that Ray
                # Train's controller polls, and job submission.
                "logging_level": "WARNING",
                "log_to_driver": True,
                "runtime_env": {"env_vars": env} if env else None,
            }
            embedded = address is None and not os.environ.get("RAY_ADDRESS")
            if embedded and num_cpus:
                kwargs["num_cpus"] = num_cpus
            import psutil

            before = {p.pid for p in psutil.Process().children()}
            ray.init(**kwargs)
            self._owned = True
            if embedded:
                started = [p.pid for p in psutil.Process().children() if p.pid not in before]
                self._reaper = start_reaper(started)
        # Ray started here, on this machine alone: no node will join to take a task that fits none.
        self._embedded = self._owned and address is None and not os.environ.get("RAY_ADDRESS")

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, resources: Resources | None = None
    ) -> list[R]:
        ray = self._ray
        if not items:
            return []
        asks = resources or Resources()
        self.check_fits(asks, desc)
        options: dict[str, Any] = {"num_cpus": asks.cpus, "num_gpus": asks.gpus}
        if asks.memory_gb is not None:
            options["memory"] = int(asks.memory_gb * 2**30)
        # Tasks are idempotent (atomic writes, completion records), so Ray may rerun one after a worker dies.
        remote = ray.remote(max_retries=3, **options)(_on_node(fn))
        refs = [remote.remote(item) for item in items]
        item_of = dict(zip(refs, items))
        pending = list(refs)
        results: dict[Any, Any] = {}
        failures: list[BaseException] = []
        with _progress(len(refs), desc) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        results[ref] = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:  # the other shards still finish
                        # The cause, when it is one line to show; else Ray's error, which carries the worker's
                        # traceback.
                        cause = getattr(e, "cause", None)
                        shown = cause if isinstance(cause, (PipelineError, OSError)) else e
                        failures.append(task_failure(shown, item_of[ref], desc))
                bar.update(len(done))
                driver_fault_point(desc, bar.n)
        raise_failures(failures, len(refs))
        return [results[ref] for ref in refs]

    def check_fits(self, asks: Resources, desc: str) -> None:
        """A task no node can hold would wait forever on a cluster of fixed size: the embedded Ray is refused with
        the setting to change; a cluster (which may add nodes as tasks wait) gets a warning."""
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        need = {"CPU": asks.cpus, "GPU": asks.gpus, "memory": (asks.memory_gb or 0) * 2**30}
        if any(all(node.get(k, 0) >= v for k, v in need.items() if v) for node in nodes):
            return
        biggest = {k: max((node.get(k, 0) for node in nodes), default=0) for k in need}
        stage = desc.split(" ")[0]
        problem = (
            f"{desc}: each task asks for {asks.cpus:g} CPUs, {asks.gpus:g} GPUs, {asks.memory_gb or 0:g} GB of "
            f"memory, but the largest node has {biggest['CPU']:g} CPUs, {biggest['GPU']:g} GPUs and "
            f"{biggest['memory'] / 2**30:.1f} GB"
        )
        if self._embedded:
            raise PipelineError(f"{problem}; lower [{stage}.resources] (or the stage's threads)")
        print(f"warning: {problem}; the tasks wait for a node that can hold them (an autoscaler adding one)",
              file=sys.stderr)  # fmt: skip

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()
        if self._reaper is not None:
            assert self._reaper.stdin is not None
            self._reaper.stdin.close()  # its end of the pipe: it removes what the shutdown left, and ends
            try:
                self._reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
            self._reaper = None


def start_reaper(ray_pids: Sequence[int]) -> subprocess.Popen[bytes]:
    """A process that outlives this driver by a moment: when the driver ends, however it ends (kill -9 too), it
    kills what is left of the embedded Ray the driver started (`ray_pids`: the processes ray.init started).

    Ray ties its head processes to the driver (they get SIGKILL when it dies), but the raylet's agents
    (DashboardAgent, RuntimeEnvAgent) and sometimes its idle workers outlived a kill -9 of the driver by more than
    20 s, waiting on a GCS that is gone. The reaper reads a pipe whose other end only the driver holds: end of
    file means the driver is gone (or closed the runner)."""
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds `pipeline`
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.core.runner", "reap", *map(str, ray_pids)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # a Ctrl-C or a kill of the driver's process group leaves it to clean up
    )


def reap(ray_pids: Sequence[int], snapshot_s: float = 2.0) -> None:
    """The reaper's loop (see start_reaper): note the Ray processes' descendants now and then while the driver
    lives; once it is gone, kill every one still running, and every process a raylet of theirs started (their
    environment names the raylet: RAY_RAYLET_PID), which may have been born after the last look."""
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tracked: dict[int, psutil.Process] = {}
    for pid in ray_pids:
        try:
            tracked[pid] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            pass
    raylets = {str(pid) for pid in tracked}

    def look() -> None:
        children: dict[int, list[psutil.Process]] = {}
        for p in psutil.process_iter(["ppid"]):
            children.setdefault(p.info["ppid"], []).append(p)
        alive = {pid: p for pid, p in tracked.items() if p.is_running()}  # the dead ones are forgotten
        stack = list(alive)
        while stack:
            for c in children.get(stack.pop(), []):
                if c.pid not in alive:
                    alive[c.pid] = c
                    stack.append(c.pid)
        tracked.clear()
        tracked.update(alive)

    while True:
        look()
        readable, _, _ = select.select([sys.stdin], [], [], snapshot_s)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break
    for p in psutil.process_iter():
        try:
            if p.pid not in tracked and p.environ().get("RAY_RAYLET_PID") in raylets:
                tracked[p.pid] = p
        except psutil.Error:
            pass
    for p in tracked.values():
        try:
            if p.is_running():  # the same process, not another that was given its pid
                p.kill()
        except psutil.Error:
            pass


def _on_node(fn: Callable[[T], R]) -> Callable[[T], R]:
    """`fn`, telling the shard's completion record which Ray node ran it and when the task started (see
    stage.finish_shard)."""

    def run(item: T) -> R:
        import ray

        os.environ["OWT_NODE_ID"] = ray.get_runtime_context().get_node_id()
        os.environ["OWT_TASK_STARTED"] = repr(time.time())
        return fn(item)

    run.__name__ = run.__qualname__ = getattr(fn, "__name__", "task")  # the task's name in Ray's dashboard
    return run


def driver_fault_point(desc: str, finished: int) -> None:
    """A crash drill for the driver: `OWT_FAULT="driver.extract.pages.2"` kills it once 2 of its tasks finished."""
    fault_point(f"driver.{desc.replace(' ', '.')}.{finished}")


def task_failure(e: Exception, item: object, desc: str) -> Exception:
    """What a failed task reports: an OSError (a full disk, an output folder not writable) as one line naming the
    shard and where it writes; a PipelineError as it is; anything else (a bug) as it is, to keep its traceback."""
    if not isinstance(e, OSError):
        return e
    name, output = getattr(item, "name", None), getattr(item, "output", None)
    return PipelineError(f"{desc}{f' {name}' if name else ''}: {os_error_line(e, output)}")


def raise_failures(failures: list[BaseException], total: int) -> None:
    """After every task has ended: the finished shards have their records, so a rerun redoes only the failed ones.
    A PipelineError stays one line (naming every failed shard's problem); anything else keeps its traceback."""
    if not failures:
        return
    first = failures[0]
    if all(isinstance(f, PipelineError) for f in failures):
        more = (
            f"; {len(failures) - 1} more of {total} shards failed too: " + " | ".join(map(str, failures[1:]))
            if len(failures) > 1
            else ""
        )
        raise type(first)(f"{first}{more}; finished shards are kept, rerun to retry the failed ones") from None
    raise next(f for f in failures if not isinstance(f, PipelineError))


def make_runner(mode: str = "ray", address: str | None = None, num_cpus: int | None = None) -> Runner:
    if mode == "local":
        return LocalRunner()
    if mode == "ray":
        return RayRunner(address=address, num_cpus=num_cpus)
    raise PipelineError(f"unknown runner {mode!r} (choose 'ray' or 'local')")


if __name__ == "__main__" and sys.argv[1:2] == ["reap"]:
    reap([int(pid) for pid in sys.argv[2:]])
