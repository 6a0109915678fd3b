"""Where a dataset lies: a local folder, or a prefix on object storage (`s3://`, `gs://`, anything pyarrow.fs opens).

Stage code works on local paths: Parquet readers, memory maps, WARC offsets and `os.replace` all want a file. A
remote dataset is therefore seen through a *mirror*, a local folder whose path encodes the remote location, so any
process on any node maps a mirror path it is handed back to its object without being told (even one whose own
staging root differs):

    s3://bucket/corpus/extract?endpoint_override=h:9000  <->  <staging>/owt-mirror/s3/<query>/bucket/corpus/extract

- Writes: every file is finished locally under a temporary name and renamed (`dataset.atomic_path`), then uploaded
  whole (`pushed`). A shard's completion record is written last, so an object without a record is never trusted,
  and a record (or `_stage.json`) only ever names objects already uploaded.
- Reads: `pull` downloads an object into the mirror unless the mirror already holds the same size and mtime (the
  mirror copy's mtime is set to the object's after every upload and download, so a copy left by an older run is
  seen as stale).
- Small state files (`_run.json`, `_stage.json`, completion records) are read from the object store every time.

The staging root is `$OWT_STAGING_DIR` (forwarded to Ray workers), by default `<tmp>/owt-staging`; it is a cache
that can be deleted at any time between runs.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import functools
import os
import posixpath
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline.core.errors import PipelineError

STAGING_ENV = "OWT_STAGING_DIR"
MIRROR = "owt-mirror"  # the path component that marks a mirror path
CHUNK = 8 << 20
BUCKET_SCHEMES = ("s3", "gs", "gcs")


@dataclass
class Location:
    """A file or folder on some filesystem; `query` keeps the URI's filesystem options for printing a URI back."""

    fs: pafs.FileSystem
    path: str  # the filesystem's own path (bucket/key for object stores)
    scheme: str = "file"
    query: str = ""

    def join(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.normpath(posixpath.join(self.path, *parts)), self.scheme, self.query)

    @property
    def uri(self) -> str:
        if self.scheme == "file":
            return self.path
        return f"{self.scheme}://{self.path}" + (f"?{self.query}" if self.query else "")


def is_remote(uri: str | Path) -> bool:
    scheme = urlsplit(str(uri)).scheme
    return scheme not in ("", "file") and len(scheme) > 1  # a Windows drive letter is not a scheme


def locate(uri: str | Path) -> Location:
    """A path or URI -> (filesystem, path). Plain paths and file:// are local; anything else goes to pyarrow.fs."""
    text = str(uri)
    parts = urlsplit(text)
    if not is_remote(text):
        local = parts.path if parts.scheme == "file" else text
        return Location(pafs.LocalFileSystem(), os.path.abspath(local))
    if parts.scheme in BUCKET_SCHEMES:  # bucket/key, as pyarrow's object stores name things; one client per store
        fs, path = _filesystem(parts.scheme, parts.query), parts.netloc + parts.path
    else:
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, OSError, ValueError) as e:
            raise PipelineError(f"{text}: cannot open this filesystem ({e})") from None
    return Location(fs, path.rstrip("/"), parts.scheme, parts.query)


@functools.cache
def _filesystem(scheme: str, query: str) -> pafs.FileSystem:
    # One client per store and options, reused: creating an S3 client costs a credentials lookup.
    try:
        fs, _ = pafs.FileSystem.from_uri(f"{scheme}://owt-placeholder" + (f"?{query}" if query else ""))
    except (pa.ArrowInvalid, OSError, ValueError) as e:
        raise PipelineError(f"{scheme}://?{query}: cannot open this filesystem ({e})") from None
    return fs


# --- mirrors -----------------------------------------------------------------------------------------------------


def staging_root() -> Path:
    root = os.environ.get(STAGING_ENV) or os.path.join(tempfile.gettempdir(), "owt-staging")
    return Path(root).resolve()


def _encode_query(query: str) -> str:
    return "q" + base64.urlsafe_b64encode(query.encode()).decode().rstrip("=") if query else "_"


def _decode_query(token: str) -> str:
    if token == "_":
        return ""
    data = token[1:]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode()


def local_view(uri: str | Path) -> Path:
    """The local path stage code uses for `uri`: the path itself, or the mirror of a remote location."""
    if not is_remote(uri):
        return Path(locate(uri).path)
    if urlsplit(str(uri)).scheme not in BUCKET_SCHEMES:
        raise PipelineError(
            f"{uri}: stages read and write local paths and {', '.join(BUCKET_SCHEMES)}:// object stores "
            "(`python -m pipeline publish` copies a corpus anywhere pyarrow.fs reaches)"
        )
    loc = locate(uri)
    return staging_root() / MIRROR / loc.scheme / _encode_query(loc.query) / loc.path


def remote_of(path: str | Path) -> Location | None:
    """The remote location a mirror path stands for; None for an ordinary local path."""
    parts = Path(os.path.abspath(path)).parts
    if MIRROR not in parts:
        return None
    parts = parts[parts.index(MIRROR) + 1 :]
    if len(parts) < 3 or parts[0] not in BUCKET_SCHEMES:
        return None
    scheme, query = parts[0], _decode_query(parts[1])
    return Location(_filesystem(scheme, query), "/".join(parts[2:]), scheme, query)


def uri_of(path: str | Path) -> str:
    """What to show a user for a path: the remote URI of a mirror path, else the path."""
    remote = remote_of(path)
    return remote.uri if remote else str(path)


def _info(loc: Location) -> pafs.FileInfo:
    try:
        return loc.fs.get_file_info(loc.path)
    except OSError as e:
        raise PipelineError(f"{loc.uri}: cannot reach ({e})") from None


def _match_mtime(path: Path, info: pafs.FileInfo) -> None:
    if info.mtime_ns is not None:
        os.utime(path, ns=(info.mtime_ns, info.mtime_ns))


def pushed(path: str | Path) -> None:
    """Upload a finished mirror file as one object (a no-op for ordinary local paths)."""
    remote = remote_of(path)
    if remote is None:
        return
    try:
        with open(path, "rb") as src, remote.fs.open_output_stream(remote.path, compression=None) as dst:
            while block := src.read(CHUNK):
                dst.write(block)
    except OSError as e:
        # A failed multipart upload may still leave an object: remove it, so nothing half-written remains there.
        # (Nothing would trust it anyway: completion records are written after the files they name.)
        with contextlib.suppress(FileNotFoundError):
            remote.fs.delete_file(remote.path)
        raise PipelineError(f"{remote.uri}: upload failed ({e})") from None
    _match_mtime(Path(path), _info(remote))


def pull(path: str | Path) -> Path:
    """A mirror path made current with its object (downloaded unless the mirror holds the same size and mtime);
    an ordinary local path unchanged. A missing object leaves the path missing, for the reader to report."""
    p = Path(path)
    remote = remote_of(p)
    if remote is None:
        return p
    info = _info(remote)
    if info.type != pafs.FileType.File:
        return p
    if p.is_file():
        st = p.stat()
        if st.st_size == info.size and (info.mtime_ns is None or st.st_mtime_ns == info.mtime_ns):
            return p
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with remote.fs.open_input_stream(remote.path, compression=None) as src, open(tmp, "wb") as dst:
            while block := src.read(CHUNK):
                dst.write(block)
        os.replace(tmp, p)
    except OSError as e:
        raise PipelineError(f"{remote.uri}: download failed ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    _match_mtime(p, info)
    return p


def open_input(path: str | Path) -> BinaryIO:
    """A binary stream of a local file or of the object a mirror path stands for (read straight from the store)."""
    remote = remote_of(path)
    if remote is None:
        return open(path, "rb")
    try:
        # a pyarrow NativeFile: read(), readinto() and close() as a binary file has them
        return cast(BinaryIO, remote.fs.open_input_stream(remote.path, compression=None))
    except FileNotFoundError:
        raise PipelineError(f"{remote.uri}: not found") from None


def stat(path: str | Path) -> tuple[int, int]:
    """(size in bytes, mtime in whole seconds) of a local file or of a mirror path's object."""
    remote = remote_of(path)
    if remote is None:
        st = os.stat(path)
        return st.st_size, int(st.st_mtime)
    info = _info(remote)
    if info.type != pafs.FileType.File:
        raise PipelineError(f"{remote.uri}: not found")
    return info.size, (info.mtime_ns or 0) // 1_000_000_000


def is_file(path: str | Path) -> bool:
    remote = remote_of(path)
    if remote is None:
        return Path(path).is_file()
    return _info(remote).type == pafs.FileType.File


def has_files(path: str | Path) -> bool:
    """Whether a folder (or prefix) exists and holds anything."""
    remote = remote_of(path)
    if remote is None:
        p = Path(path)
        return p.is_dir() and any(p.iterdir())
    return bool(_listing(remote, recursive=True))


def _listing(remote: Location, recursive: bool) -> list[pafs.FileInfo]:
    try:
        return remote.fs.get_file_info(pafs.FileSelector(remote.path, allow_not_found=True, recursive=recursive))
    except OSError as e:
        raise PipelineError(f"{remote.uri}: cannot list ({e})") from None


def glob(folder: str | Path, pattern: str) -> list[Path]:
    """Files directly in `folder` whose names match `pattern`, sorted; mirror paths for a remote folder."""
    folder = Path(folder)
    remote = remote_of(folder)
    if remote is None:
        return sorted(folder.glob(pattern))
    names = [posixpath.basename(i.path) for i in _listing(remote, recursive=False) if i.type == pafs.FileType.File]
    return sorted(folder / n for n in names if fnmatch.fnmatchcase(n, pattern))


def children(folder: str | Path) -> list[Path]:
    """Files and folders directly in `folder` (mirror paths for a remote folder), sorted."""
    folder = Path(folder)
    remote = remote_of(folder)
    if remote is None:
        return sorted(folder.iterdir()) if folder.is_dir() else []
    names = {posixpath.basename(i.path) for i in _listing(remote, recursive=False)}
    return sorted(folder / n for n in names)


def read_text(path: str | Path) -> str:
    """A small state file, read from its object every time (never from a possibly stale mirror copy)."""
    remote = remote_of(path)
    if remote is None:
        return Path(path).read_text()
    try:
        with remote.fs.open_input_stream(remote.path, compression=None) as f:
            return f.read().decode()
    except FileNotFoundError:
        raise
    except OSError as e:
        if _info(remote).type == pafs.FileType.NotFound:
            raise FileNotFoundError(remote.uri) from None
        raise PipelineError(f"{remote.uri}: cannot read ({e})") from None


def unlink(path: str | Path) -> None:
    Path(path).unlink(missing_ok=True)
    remote = remote_of(path)
    if remote is not None:
        with contextlib.suppress(FileNotFoundError):
            remote.fs.delete_file(remote.path)


def place(path: str | Path) -> tuple[str, tuple[str, ...]]:
    """What a path or URI names, reduced for comparing: (store, path components). Local paths have symlinks, `..`
    and trailing slashes resolved; a mirror path stands for its object-store prefix; a URI's query (endpoint and
    credentials options) is left out, so two spellings of one store compare equal."""
    text = str(path)
    if is_remote(text):
        parts = urlsplit(text)
        scheme = "gs" if parts.scheme == "gcs" else parts.scheme
        key = posixpath.normpath("/" + parts.netloc + "/" + parts.path)
        return scheme, tuple(p for p in key.split("/") if p)
    local = urlsplit(text).path if text.startswith("file:") else text
    names = Path(os.path.realpath(local)).parts
    if MIRROR in names:
        at = names.index(MIRROR)
        if len(names) > at + 2 and names[at + 1] in BUCKET_SCHEMES:
            return ("gs" if names[at + 1] == "gcs" else names[at + 1]), names[at + 3 :]
    return "file", names


def overlap(output: str | Path, source: str | Path) -> str | None:
    """How `output` overlaps `source` ("is", "lies inside", "contains"), or None when they are apart."""
    (store_a, a), (store_b, b) = place(output), place(source)
    if store_a != store_b:
        return None
    if a == b:
        return "is"
    if a[: len(b)] == b:
        return "lies inside"
    if b[: len(a)] == a:
        return "contains"
    return None


def check_apart(what: str, output: str | Path, sources: Sequence[str | Path]) -> None:
    """Refuse an output that is, contains or lies inside one of the inputs: writing there (or `--overwrite`
    clearing it) would destroy or change what is being read."""
    for source in sources:
        how = overlap(output, source)
        if how is not None:
            raise PipelineError(
                f"{what}: output {uri_of(output)} {how} its input {uri_of(source)}; choose an output outside "
                "every input"
            )


def remove_tree(path: str | Path) -> None:
    """A folder and everything in it, or one file; locally and, for a mirror path, on the store."""
    if Path(path).is_file():
        Path(path).unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
    remote = remote_of(path)
    if remote is not None:
        with contextlib.suppress(FileNotFoundError):
            if _info(remote).type == pafs.FileType.File:
                remote.fs.delete_file(remote.path)
            else:
                remote.fs.delete_dir(remote.path)
