"""The three kinds of trouble a stage meets (see docs/ARCHITECTURE.md, "Errors")."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path


class PipelineError(Exception):
    """Fatal: bad config, missing or incomplete input, corrupt file.

    The message is one line that names the file (and line/offset where known) and what to do;
    the CLI prints it without a traceback and exits with status 2.
    """


class ConfigError(PipelineError):
    pass


# Errors only a write meets: the line says "cannot write"; any other errno is named as the OS names it.
_WRITING = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_HINTS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota exceeded)",
    errno.EROFS: "choose an output on a writable file system",
    errno.EACCES: "check the folder's permissions, or choose another output (--root)",
    errno.EPERM: "check the folder's permissions, or choose another output (--root)",
    errno.ENOTDIR: "a file stands where that path needs a folder",
    errno.EEXIST: "a file stands where that path needs a folder",
}
# atomic_path's temporary sibling of a file: `.name.tmp-PID`
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-\d+$")


def shown_path(path: object) -> str:
    """A path as the user knows it: a temporary sibling shown as the file it becomes."""
    p = Path(os.fsdecode(path))  # type: ignore[arg-type]
    m = _TEMPORARY.match(p.name)
    return str(p.with_name(m["name"])) if m else str(p)


def os_error_line(e: OSError, folder: str | None = None) -> str:
    """One line for an OSError (a full disk, a folder not writable, a file in the way): the file it names, else
    `folder`, and the OS's words for the errno (pyarrow wraps them in words of its own)."""
    words = f"[Errno {e.errno}] {os.strerror(e.errno)}" if e.errno else (str(e) or type(e).__name__)
    hint = f" ({_HINTS[e.errno]})" if e.errno in _HINTS else ""
    verb = "cannot write " if e.errno in _WRITING else ""
    if e.filename is not None:
        where = shown_path(e.filename)
        if e.filename2 is not None:
            where += f" -> {shown_path(e.filename2)}"
    elif folder is not None:
        where = folder
        verb = "cannot write into " if verb else ""
    else:
        return f"{words}{hint}"
    return f"{verb}{where}: {words}{hint}"
