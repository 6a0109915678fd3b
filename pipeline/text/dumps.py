"""Streaming reads of Pushshift dump files (.zst with a 2 GiB window, .xz, .bz2, .gz, plain NDJSON).

Lines are read in constant memory, and the compressed bytes are hashed on the way through, so the manifest
can name each input dump by sha256 without a second pass over hundreds of GB.

A folder given as input is read for the files whose names are dumps' (DUMP_NAME): Pushshift's `RS_2011-05.zst`,
`RS_v2_2005-06.xz`, daily `RS_2018-10-01.zst`, and the `reddit-api` command's `reddit-api_<sub>_....ndjson`. Anything
else there (an `answer.json`, a comments dump `RC_...`, a `.part` download, a subfolder) is skipped and listed with
its reason. A file named in the input is read whatever its name, and a glob there takes every match with a dump
suffix.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import io
import itertools
import lzma
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import zstandard

from pipeline.core import storage
from pipeline.core.errors import PipelineError

DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", ".json", ".ndjson", ".jsonl")
_EXTS = r"(?:\.(?:json|ndjson|jsonl))?(?:\.(?:zst|xz|bz2|gz))?"
DUMP_NAME = re.compile(rf"^(?:RS_(?:v\d+_)?\d{{4}}-\d{{2}}(?:-\d{{2}})?{_EXTS}|reddit-api_.+\.ndjson)$", re.IGNORECASE)
COMMENTS_NAME = re.compile(r"^RC_", re.IGNORECASE)
NAMES = "RS_YYYY-MM[-DD] or reddit-api_*.ndjson, with " + "/".join(DUMP_SUFFIXES)


class HashingReader(io.RawIOBase):
    """A read-only file wrapper that feeds every byte read into sha256 and counts them."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        self.bytes_read += n
        return n

    def drain(self) -> None:
        while block := self.raw.read(1 << 20):
            self.sha256.update(block)
            self.bytes_read += len(block)


def _decompressed(path: Path, raw: BinaryIO) -> BinaryIO:
    name = path.name.lower()
    if name.endswith(".zst"):
        # Pushshift used --long=31: without a 2 GiB window the later months fail to decompress.
        return zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw, read_across_frames=True)
    if name.endswith(".xz"):
        return lzma.open(raw)  # type: ignore[return-value]
    if name.endswith(".bz2"):
        return bz2.open(raw)  # type: ignore[return-value]
    if name.endswith(".gz"):
        return gzip.open(raw)  # type: ignore[return-value]
    return raw


class DumpReader:
    """Iterate the lines (bytes) of one dump; afterwards `lines`, `sha256` and `bytes` describe the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines = 0
        self.sha256 = ""
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        return itertools.chain.from_iterable(self.batches())

    def batches(self, size_hint: int = 1 << 20) -> Iterator[list[bytes]]:
        """Lists of lines of about `size_hint` bytes: the per-line cost of a Python generator, paid per batch."""
        with storage.open_input(self.path) as f:  # a dump on object storage is streamed, not copied
            hashing = HashingReader(f)
            stream = io.BufferedReader(_decompressed(self.path, hashing), buffer_size=1 << 20)  # type: ignore[arg-type,type-var]
            while True:
                try:
                    batch = stream.readlines(size_hint)
                except (EOFError, OSError, lzma.LZMAError, zstandard.ZstdError) as e:
                    self._refuse_empty(hashing)
                    raise PipelineError(
                        f"{storage.uri_of(self.path)}: corrupt or truncated dump after line {self.lines} "
                        f"(compressed offset ~{hashing.bytes_read}): {e}; re-download it"
                    ) from None
                if not batch:
                    break
                self.lines += len(batch)
                yield batch
            hashing.drain()
            self._refuse_empty(hashing)
            self.sha256 = hashing.sha256.hexdigest()
            self.bytes = hashing.bytes_read

    def _refuse_empty(self, hashing: HashingReader) -> None:
        # A 0-byte file is a download that never happened: zstd, gzip, bz2 and plain NDJSON read it as a dump of
        # no lines, which would pass for an empty month. Refused like a truncated one, so that month is redone.
        if hashing.bytes_read == 0:
            raise PipelineError(
                f"{storage.uri_of(self.path)}: empty file (0 bytes), not a dump; re-download it or remove it from the "
                "input"
            )


@dataclass
class Inputs:
    dumps: list[Path] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"file": uri, "reason": why it is not read}


def is_dump_name(name: str) -> bool:
    return name.lower().endswith(DUMP_SUFFIXES) and DUMP_NAME.match(name) is not None


def skip_reason(path: Path, is_dir: bool = False) -> str:
    if is_dir:
        return "a folder: folders are not searched; name it in input to read the dumps in it"
    if is_dump_name(path.name):
        return "not a regular file (a broken link?)"
    if COMMENTS_NAME.match(path.name):
        return "a comments dump (RC_): harvest reads submission dumps (RS_); name it in input to read it anyway"
    return f"not a dump's name ({NAMES}); name it in input to read it anyway"


def find_dumps(patterns: list[str]) -> Inputs:
    """Files, folders (the dumps inside, by name) and globs (every match with a dump's suffix), deduplicated and
    sorted by name; what a folder or glob held but is not read, with the reason. An input that gives no dump is
    an error naming it."""
    found: set[Path] = set()
    skipped: dict[Path, str] = {}
    for pattern in patterns:
        here: set[Path] = set()
        left: dict[Path, str] = {}
        if storage.is_remote(pattern):
            _expand_remote(pattern, here, left)
        else:
            _expand_local(pattern, here, left)
        if not here:
            shown = "; ".join(f"{q.name}: {why}" for q, why in sorted(left.items())[:3])
            more = f" (and {len(left) - 3} more)" if len(left) > 3 else ""
            raise PipelineError(
                f"harvest input {pattern}: no dump there" + (f"; skipped {shown}{more}" if left else " (empty)")
            )
        found |= here
        skipped |= left
    dumps = sorted({q.resolve() for q in found}, key=lambda q: (q.name, str(q)))
    taken = set(dumps)
    left_out = {q.resolve(): why for q, why in skipped.items()}
    return Inputs(
        dumps, [{"file": storage.uri_of(q), "reason": why} for q, why in sorted(left_out.items()) if q not in taken]
    )


def _no_suffix(pattern: str) -> str:
    return f"matched {pattern} but has no dump suffix ({'/'.join(DUMP_SUFFIXES)})"


def _expand_local(pattern: str, found: set[Path], skipped: dict[Path, str]) -> None:
    p = Path(pattern)
    if p.is_dir():
        for q in sorted(p.iterdir()):
            if q.is_file() and is_dump_name(q.name):
                found.add(q)
            else:
                skipped[q] = skip_reason(q, q.is_dir())
    elif p.is_file():
        found.add(p)
    else:
        matches = [Path(m) for m in glob.glob(pattern) if os.path.isfile(m)]
        if not matches:
            raise PipelineError(f"harvest input {pattern}: no such file, directory or matching glob")
        for q in matches:
            if q.name.lower().endswith(DUMP_SUFFIXES):
                found.add(q)
            else:
                skipped[q] = _no_suffix(pattern)


def _expand_remote(pattern: str, found: set[Path], skipped: dict[Path, str]) -> None:
    """The same rules on object storage, as mirror paths (pipeline/core/storage.py): a dump, a folder of dumps, or a
    glob in the last path component."""
    view = storage.local_view(pattern)
    if storage.is_file(view):
        found.add(view)
        return
    if glob.has_magic(view.name):
        for q in storage.glob(view.parent, view.name):
            if q.name.lower().endswith(DUMP_SUFFIXES):
                found.add(q)
            else:
                skipped[q] = _no_suffix(pattern)
        return
    files = set(storage.glob(view, "*"))
    for q in storage.children(view):
        if q in files and is_dump_name(q.name):
            found.add(q)
        else:
            skipped[q] = skip_reason(q, is_dir=q not in files)
