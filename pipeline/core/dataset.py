"""The dataset-directory contract (docs/ARCHITECTURE.md): shards + per-shard completion records + a stage manifest.

    <dataset>/
      part-00000.parquet ...      output shards (a shard may be several files with the same stem)
      _shards/part-00000.json     completion record of one shard, written last: files + sha256, rows, drops
      _run.json                   what this directory is being built from (config + input fingerprints)
      _stage.json                 the stage manifest, written only when every shard is done

A directory without `_stage.json` is incomplete: the next stage refuses it, a rerun resumes it.
Every file is written under a temporary name and renamed, so a crash never leaves a file that looks finished.
A dataset may also lie on object storage (`s3://...`): stage code then works on a local mirror of it, and every
finished file is uploaded whole as it is renamed (pipeline/core/storage.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import storage
from pipeline.core.errors import PipelineError
from pipeline.core.faults import fault_point

STAGE_FILE = "_stage.json"
RUN_FILE = "_run.json"
SHARD_RECORDS = "_shards"


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds (and upload it, whole,
    when `path` is in the mirror of a remote dataset)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        fault_point(f"write.{final.name}", before=lambda: _cut_in_half(tmp))
        os.replace(tmp, final)
        storage.pushed(final)
    except OSError as e:
        if e.filename is None:  # pyarrow's and some writers' errors name no file: the error line names this one
            e.filename = str(final)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _cut_in_half(path: Path) -> None:
    if path.is_file():
        os.truncate(path, path.stat().st_size // 2)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    shown = storage.uri_of(path)
    try:
        return json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise PipelineError(f"{shown}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else f": {e}"
        raise PipelineError(f"{shown}: corrupt JSON{where}") from None


def write_parquet(table: pa.Table, path: str | Path) -> None:
    # Fixed writer settings so the same table gives the same bytes on every run.
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=10_000, write_statistics=True)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(storage.pull(path), columns=columns)
    except (OSError, pa.ArrowInvalid) as e:
        raise PipelineError(f"{storage.uri_of(path)}: unreadable shard ({e}); rerun the stage that wrote it") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path, root: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def code_version() -> str:
    """The package version plus the git commit (and `.dirty`) when running from a checkout."""
    from pipeline import __version__

    here = Path(__file__).resolve().parents[2]  # the checkout: pipeline/core/dataset.py

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


class Dataset:
    """A dataset directory, as one stage's output and the next stage's input."""

    def __init__(self, path: str | Path):
        self.path = storage.local_view(path)  # the mirror of a remote dataset
        self.uri = storage.uri_of(self.path)

    def __repr__(self) -> str:
        return f"Dataset({self.uri!r})"

    @property
    def stage_file(self) -> Path:
        return self.path / STAGE_FILE

    def is_complete(self) -> bool:
        return storage.is_file(self.stage_file)

    def manifest(self) -> dict[str, Any]:
        """The stage manifest of a finished dataset; a clear error if the stage never finished."""
        if not self.is_complete():
            if not storage.has_files(self.path):
                raise PipelineError(f"input {self.uri}: no such dataset directory; run the stage that writes it first")
            raise PipelineError(
                f"input {self.uri}: incomplete (no {STAGE_FILE}); rerun the stage that writes it to finish it"
            )
        return read_json(self.stage_file)

    def fingerprint(self) -> str:
        return self.manifest()["output_fingerprint"]

    def shard_entries(self, suffix: str = ".parquet", subdir: str = "") -> list[tuple[Path, dict[str, Any]]]:
        """(file, its record entry: path, sha256, bytes) of the finished dataset's shards, in shard order, checked to
        exist (listed from the manifest, never a glob). Top-level files by default; side outputs in subfolders
        (filter's rejected/, tokenize's splits) only when asked for by `subdir`."""
        entries = []
        for shard in self.manifest()["shards"]:
            for entry in shard["files"]:
                rel = entry["path"]
                folder = rel.rpartition("/")[0]
                if rel.endswith(suffix) and folder == subdir:
                    p = self.path / rel
                    if not storage.is_file(p):
                        raise PipelineError(f"input {self.uri}: shard file {rel} is missing; rerun its stage")
                    entries.append((p, entry))
        return entries

    def shard_files(self, suffix: str = ".parquet", subdir: str = "") -> list[Path]:
        return [p for p, _ in self.shard_entries(suffix, subdir)]

    # --- per-shard completion records -----------------------------------------------------------

    def record_path(self, name: str) -> Path:
        return self.path / SHARD_RECORDS / f"{name}.json"

    def done_record(self, name: str) -> dict[str, Any] | None:
        p = self.record_path(name)
        if not storage.is_file(p):
            return None
        rec = read_json(p)
        if not all(storage.is_file(self.path / f["path"]) for f in rec["files"]):
            return None  # a file went missing since: redo the shard
        return rec

    def write_record(self, name: str, record: dict[str, Any]) -> None:
        write_json(self.record_path(name), record)

    def reset(self, keep: tuple[str, ...] = ()) -> None:
        """Delete the dataset; top-level entries named in `keep` stay (a stage's cache of its own)."""
        if not keep:
            storage.remove_tree(self.path)
            return
        for child in storage.children(self.path):
            if child.name not in keep:
                storage.remove_tree(child)


def lineage(tokens_dir: str | Path) -> list[tuple[Dataset, dict[str, Any]]]:
    """The chain of finished datasets that led to `tokens_dir` (a path or URI), oldest first (harvest ...
    tokenize). A stage's inputs are URIs for datasets on object storage, so the chain is followed there too."""
    chain = []
    ds: Dataset | None = Dataset(tokens_dir)
    while ds is not None:
        m = ds.manifest()
        chain.append((ds, m))
        parents = [Dataset(p) for p in m["inputs"] if storage.is_remote(p) or Path(p).is_dir()]
        ds = next((d for d in parents if d.is_complete()), None)
    return list(reversed(chain))
