"""The lifecycle every stage shares: reuse or resume the output directory, map shards, write the stage manifest."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import RUN_FILE, Dataset, code_version, file_entry, read_json, sha256_file, write_json
from pipeline.core.errors import PipelineError
from pipeline.core.faults import fault_point
from pipeline.core.runner import Runner

C = TypeVar("C", bound=StageConfig)
P = TypeVar("P")
# A shard's completion record: JSON, written by finish_shard and read back on resume (files, rows, drops, and what
# a stage adds for its own totals).
Record = dict[str, Any]


@dataclass
class ShardTask(Generic[C, P]):
    """One unit of a stage's work, shipped to a worker: `payload` is what this kind of task needs beyond its input
    files (a hash bucket, a plan of token pieces...), a typed value of the stage's own; None when nothing."""

    name: str  # output shard name, e.g. "part-00003"
    inputs: list[str]  # input files (absolute paths)
    output: str  # the output dataset directory
    config: C
    payload: P
    # The task's own input, as its record keeps it: a rerun skips the task when its record names the same.
    input_fingerprint: str | None = None
    # Input files re-hashed before the task reads them: path -> (sha256, bytes), as their stage recorded them.
    verify: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage(Generic[C]):
    """One step of the pipeline as chain.py declares it: everything the CLI, the demo, job submission, the DAG,
    the manifest's funnel, the dataset card and Croissant know of it."""

    name: str
    config: type[C]
    run: Callable[[C, Runner | None, bool], Record]  # (config, runner, overwrite) -> the stage manifest
    output: str  # its dataset's folder under the run's root
    # The funnel rows it adds to the dataset card: (key of its stage manifest: rows_in, rows_out or tokens, label).
    funnel: tuple[tuple[str, str], ...] = ()
    about: str = ""  # what it does, one or two sentences: the card's and Croissant's text
    shown: tuple[str, ...] = ()  # config keys shown beside that text
    # The folder it reads under the root: the previous stage's output (the default), or None when the config must
    # name its input (harvest's dumps).
    input: str | None = "previous"
    uses_ray: bool = True

    def described(self) -> dict[str, Any]:
        """What the stage manifest records of the stage, so a corpus describes the chain that made it."""
        return {"about": self.about, "funnel": [list(f) for f in self.funnel], "shown": list(self.shown)}


_RUNNING: ContextVar[Stage[Any] | None] = ContextVar("running_stage", default=None)


@contextmanager
def running(stage: Stage[Any]) -> Iterator[None]:
    """While `stage` runs: StageRun records its description in the stage manifest."""
    token = _RUNNING.set(stage)
    try:
        yield
    finally:
        _RUNNING.reset(token)


def finish_shard(
    task: ShardTask[Any, Any],
    files: Sequence[Path],
    rows_in: int,
    rows_out: int,
    drops: Counter[str] | dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
    records_dir: str = "",
) -> Record:
    """Hash the shard's files and write its completion record, last, so a killed task leaves no record."""
    ds = Dataset(task.output)
    fault_point(f"shard.{records_dir + '/' if records_dir else ''}{task.name}.record")  # files written, no record
    record = {
        "name": task.name,
        "input_fingerprint": task.input_fingerprint,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "drops": dict(sorted((drops or {}).items())),
        "files": [file_entry(storage.pull(p), ds.path) for p in files],  # pulled: a segment may come from another node
        # where it ran: which machine, which Ray node (set by the Ray runner; absent in-process)
        "worker": {"host": socket.gethostname(), "node": os.environ.get("OWT_NODE_ID"), "task_s": _task_seconds()},
        **(extra or {}),
    }
    ds.write_record(f"{records_dir}/{task.name}" if records_dir else task.name, record)
    return record


def check_inputs(task: ShardTask[Any, Any]) -> None:
    """Re-hash the input files a task is about to read against the sha256 their stage recorded
    (`task.verify`: path -> (sha256, bytes)). A shard truncated, bit-flipped or replaced since its stage
    finished is refused with its name, instead of being read into output that looks complete. Costs one extra
    read of the inputs (~1 GB/s), small next to any stage's own work."""
    for path, (sha, size) in task.verify.items():
        check_file(path, sha, size)


def check_file(path: str | Path, sha: str, size: int, hint: str = "rerun the stage that wrote it") -> None:
    """One input file against its recorded sha256 and size (pulled first when it lies on object storage)."""
    local = storage.pull(path)
    shown = storage.uri_of(path)
    if not local.is_file():
        raise PipelineError(f"input {shown}: missing (listed by its stage's manifest); {hint}")
    got_size = local.stat().st_size
    if got_size != size:
        raise PipelineError(
            f"input {shown}: {got_size:,} bytes, its stage recorded {size:,} (truncated or replaced); {hint}"
        )
    got = sha256_file(local)
    if got != sha:
        raise PipelineError(
            f"input {shown}: sha256 {got[:16]}... differs from the recorded {sha[:16]}... (corrupt or changed "
            f"since its stage wrote it); {hint}"
        )


def verified(fn: Callable[[ShardTask[C, P]], Record]) -> Callable[[ShardTask[C, P]], Record]:
    """`fn`, after `check_inputs`."""

    @functools.wraps(fn)
    def run(task: ShardTask[C, P]) -> Record:
        check_inputs(task)
        return fn(task)

    return run


def verify_entries(root: Path, files: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """`task.verify` for some files of a finished dataset's completion records."""
    return {str(root / f["path"]): (f["sha256"], f["bytes"]) for f in files}


def _task_seconds() -> float | None:
    started = os.environ.get("OWT_TASK_STARTED")
    return round(time.time() - float(started), 3) if started else None


def combined_fingerprint(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# Scratch folders no finished stage keeps: fetch's committed segments (`_parts/<shard>/`, dropped once the
# shard's index holds them; a kill between its record and that removal would leave them for good).
SCRATCH = ("_parts",)
TMP_NAME = re.compile(r"\..+\.tmp-\d+")  # dataset.atomic_path's and storage.pull's temporary names


def read_paths(config: StageConfig, inputs: Mapping[str, str]) -> list[str]:
    """Every path a stage reads: its config's input(s) (dump folders and globs included) and the datasets or files
    its identity names (keys that are not paths, such as annotate's `annotators`, left out)."""
    named = [config.input] if isinstance(config.input, str) else list(config.input)
    return named + [k for k in inputs if storage.is_remote(k) or os.path.exists(k)]


class StageRun:
    """One run of one stage into one output directory.

    Reuse: if the directory already holds a finished run with the same config fingerprint and input
    fingerprints, nothing runs (`reused` is True). Resume: a run with the same config skips every shard whose
    completion record names the same input fingerprint as its task now (`task.input_fingerprint`), so after
    an input changed only the affected shards are redone. A different config is refused unless `overwrite`.
    """

    def __init__(
        self,
        stage: str,
        config: StageConfig,
        output: str | Path,
        inputs: dict[str, str],
        runner: Runner | None,
        overwrite: bool = False,
        keep: tuple[str, ...] = (),
        scratch: tuple[str, ...] = (),
    ):
        # Before anything is read, written or cleared: an output that is, holds or lies in an input would destroy
        # it (`--overwrite` clears the output) or change it while it is read.
        storage.check_apart(stage, output, read_paths(config, inputs))
        self.stage = stage
        self.scratch = SCRATCH + scratch
        self.keep = keep  # top-level folders an --overwrite leaves in place (annotate's cache)
        self.config = config
        self.out = Dataset(output)
        self.inputs = inputs
        self.runner = runner
        self.identity = {"stage": stage, "config": config.fingerprint(), "inputs": inputs}
        self.started = time.time()
        self.resumed_shards = 0
        self.reused = False
        self._open(overwrite)

    def _open(self, overwrite: bool) -> None:
        run_file = self.out.path / RUN_FILE
        if storage.is_file(run_file):
            previous = read_json(run_file)
            same = previous.get("identity") == self.identity
            if same and self.out.is_complete():
                self.reused = True
                self._tidy()  # a run killed after its _stage.json, before it tidied up
                return
            same_config = {k: v for k, v in previous.get("identity", {}).items() if k != "inputs"} == {
                k: v for k, v in self.identity.items() if k != "inputs"
            }
            if same_config and not same:
                # The input changed: shards whose own input is unchanged stay, the others are redone.
                storage.unlink(self.out.stage_file)
            elif not same:
                other = previous.get("identity", {}).get("stage", "?")
                if other != self.stage:
                    # --overwrite replaces an earlier run of this stage, never another stage's dataset.
                    raise PipelineError(
                        f"output {self.out.uri} holds a {other} run, not a {self.stage} one; choose another output"
                    )
                if not overwrite:
                    raise PipelineError(
                        f"output {self.out.uri} holds a {other} run with "
                        "a different config or input; choose another output or pass --overwrite"
                    )
                self.out.reset(self.keep)
        elif storage.has_files(self.out.path):
            # Not even with --overwrite: files the pipeline did not write are not its to delete.
            raise PipelineError(
                f"output {self.out.uri} exists and was not written by this pipeline; choose another output "
                "(--overwrite replaces only an earlier run of the stage)"
            )
        self.out.path.mkdir(parents=True, exist_ok=True)
        self._tidy()
        write_json(run_file, {"identity": self.identity, "config": self.config.resolved(), "started": now_iso()})

    def map(
        self,
        fn: Callable[[ShardTask[C, P]], Record],
        tasks: Sequence[ShardTask[C, P]],
        desc: str,
        records_dir: str = "",
    ) -> list[Record]:
        """Run `fn` over the tasks that have no completion record yet, each with the resources the stage asks for;
        return every record, in task order."""
        records: dict[str, Record] = {}
        todo = []
        for t in tasks:
            rec = self.out.done_record(f"{records_dir}/{t.name}" if records_dir else t.name)
            if rec is not None and rec.get("input_fingerprint") == t.input_fingerprint:
                records[t.name] = rec
            else:
                todo.append(t)
        if records:
            self.resumed_shards += len(records)
            print(f"{self.stage}: {len(records)}/{len(tasks)} {desc} shards already done, resuming")
        done: list[Record] = []
        if todo:
            if self.runner is None:
                raise PipelineError(f"{self.stage}: has shard tasks to run but was given no runner")
            resources = self.config.task_resources()
            done = self.runner.map(verified(fn), todo, desc=f"{self.stage} {desc}", resources=resources)
        for t, rec in zip(todo, done):
            records[t.name] = rec
        return [records[t.name] for t in tasks]

    def finish(
        self,
        shards: list[Record],
        rows_in: int | None = None,
        drops: dict[str, int] | None = None,
        extra: dict[str, Any] | None = None,
        rows_out: int | None = None,
    ) -> Record:
        total_drops: Counter[str] = Counter()
        for s in shards:
            total_drops.update(s.get("drops", {}))
        if drops is not None:
            total_drops = Counter(drops)
        hashes = [(f["path"], f["sha256"]) for s in shards for f in s["files"]]
        manifest = {
            "stage": self.stage,
            "code_version": code_version(),
            "config": self.config.resolved(),
            "config_fingerprint": self.identity["config"],
            "inputs": self.inputs,
            "rows_in": sum(s["rows_in"] for s in shards) if rows_in is None else rows_in,
            "rows_out": sum(s["rows_out"] for s in shards) if rows_out is None else rows_out,
            "drops": dict(sorted(total_drops.items())),
            "shards": shards,
            "output_fingerprint": hashlib.sha256(json.dumps(sorted(hashes)).encode()).hexdigest(),
            "finished": now_iso(),
            "wall_time_s": round(time.time() - self.started, 3),
            "resumed_shards": self.resumed_shards,
            **(extra or {}),
        }
        stage = _RUNNING.get()
        if stage is not None and stage.name == self.stage:
            manifest["about"] = stage.described()
        write_json(self.out.stage_file, manifest)
        self._tidy()
        return manifest

    def _tidy(self) -> None:
        """Remove what a killed run leaves and a finished one does not: temporary files (never complete; a worker
        killed mid-write leaves one even when its retry then finishes the shard) and the stage's scratch folders.
        Done after `_stage.json` is written and again when a finished directory is reused, so a run interrupted
        between the two ends, once rerun, exactly as an uninterrupted one."""
        if self.out.path.is_dir():
            for folder, _, names in os.walk(self.out.path):
                for name in names:
                    if TMP_NAME.fullmatch(name):
                        Path(folder, name).unlink(missing_ok=True)
        if self.out.is_complete():
            for name in self.scratch:
                if storage.has_files(self.out.path / name) or (self.out.path / name).exists():
                    storage.remove_tree(self.out.path / name)


def run_shardwise(
    stage: str,
    cfg: C,
    fn: Callable[[ShardTask[C, None]], Record],
    runner: Runner | None,
    overwrite: bool = False,
    desc: str = "shards",
    totals: Callable[[list[Record]], dict[str, Any]] | None = None,
    also_verify: str | None = None,
    keep: tuple[str, ...] = (),
) -> Record:
    """The common case: one task per input shard (its .parquet file), one output shard per task.
    `totals` adds stage-level figures computed from the shard records to the stage manifest. Each task checks its
    input shard's hash first, and those of the same input shard's files under `also_verify` (extract: `warc/`)."""
    assert isinstance(cfg.input, str), f"{stage} reads one dataset"
    src = Dataset(cfg.input)
    run_ = StageRun(stage, cfg, cfg.output, {src.uri: src.fingerprint()}, runner, overwrite, keep)
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out = str(run_.out.path.resolve())
    record_of = {src.path / f["path"]: s["files"] for s in src.manifest()["shards"] for f in s["files"]}
    tasks: list[ShardTask[C, None]] = []
    for p, entry in src.shard_entries(".parquet"):
        files = [entry] + [f for f in record_of[p] if also_verify and f["path"].startswith(also_verify)]
        verify = verify_entries(src.path, files)
        tasks.append(ShardTask(p.stem, [str(p.resolve())], out, cfg, None, entry["sha256"], verify))
    shards = run_.map(fn, tasks, desc)
    return run_.finish(shards, extra=totals(shards) if totals else None)


def summary_line(manifest: Record) -> str:
    drops = ", ".join(f"{k} {v:,}" for k, v in sorted(manifest["drops"].items(), key=lambda kv: -kv[1]))
    return (
        f"{manifest['stage']}: {manifest['rows_in']:,} in -> {manifest['rows_out']:,} out"
        + (f" (dropped: {drops})" if drops else "")
        + f" in {manifest['wall_time_s']:.1f}s"
    )
