"""Where shard work runs: embedded or cluster Ray, or in-process for debugging.

This is the only module that imports `ray` for the data stages, so a Ray API change touches one file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from pipeline.core.config import Resources
from pipeline.core.errors import PipelineError
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
                    failures.append(e)
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
            if address is None and not os.environ.get("RAY_ADDRESS") and num_cpus:
                kwargs["num_cpus"] = num_cpus
            ray.init(**kwargs)
            self._owned = True
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
                        cause = getattr(e, "cause", None)
                        failures.append(cause if isinstance(cause, PipelineError) else e)
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
