"""Streaming reads of Pushshift dump files (.zst with a 2 GiB window, .xz, .bz2, .gz, plain NDJSON).

Lines are read in constant memory, and the compressed bytes are hashed on the way through, so the manifest
can name each input dump by sha256 without a second pass over hundreds of GB.
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
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from pipeline.core import storage
from pipeline.core.errors import PipelineError

DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", ".json", ".ndjson", ".jsonl")


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
                    raise PipelineError(
                        f"{storage.uri_of(self.path)}: corrupt or truncated dump after line {self.lines} "
                        f"(compressed offset ~{hashing.bytes_read}): {e}; re-download it"
                    ) from None
                if not batch:
                    break
                self.lines += len(batch)
                yield batch
            hashing.drain()
            self.sha256 = hashing.sha256.hexdigest()
            self.bytes = hashing.bytes_read


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files, directories (every dump file inside) and globs, deduplicated and sorted by name."""
    found: set[Path] = set()
    for pattern in patterns:
        if storage.is_remote(pattern):
            found.update(_expand_remote(pattern))
            continue
        p = Path(pattern)
        if p.is_dir():
            found.update(q for q in p.iterdir() if q.is_file() and q.name.lower().endswith(DUMP_SUFFIXES))
        elif p.is_file():
            found.add(p)
        else:
            matches = [Path(m) for m in glob.glob(pattern) if os.path.isfile(m)]
            if not matches:
                raise PipelineError(f"harvest input {pattern}: no such file, directory or matching glob")
            found.update(matches)
    return sorted((q.resolve() for q in found), key=lambda q: (q.name, str(q)))


def _expand_remote(pattern: str) -> list[Path]:
    """The same rules on object storage, as mirror paths (pipeline/core/storage.py): a dump, a folder of dumps, or a
    glob in the last path component."""
    view = storage.local_view(pattern)
    if storage.is_file(view):
        return [view]
    if glob.has_magic(view.name):
        folder, name_pattern = view.parent, view.name
    else:
        folder, name_pattern = view, "*"
    found = [q for q in storage.glob(folder, name_pattern) if q.name.lower().endswith(DUMP_SUFFIXES)]
    if not found:
        raise PipelineError(f"harvest input {pattern}: no such dump, folder of dumps or matching glob")
    return found
