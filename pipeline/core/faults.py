"""Fault injection for crash tests and drills: kill -9 a worker at a named point, once.

    OWT_FAULT="train.step.7.rank.1"  OWT_FAULT_MARKER=/tmp/fired  python -m model.train ...

Code calls `fault_point("train.step.7.rank.1")` at places where a crash is interesting. When the name matches the
glob in OWT_FAULT, the process SIGKILLs itself: no exception handler, `finally` or atexit runs, exactly as when the
OOM killer or a preempted node takes it. Several faults: comma-separated globs. With OWT_FAULT_MARKER each fires
once (its marker file is created atomically first), so the retried work succeeds; without it, it fires every time
the point is reached.

`write.<file name>` fires inside `dataset.atomic_path`, every file's writer, once the file's bytes are in its
temporary file and before the rename: the temporary file is first cut to half, so the process dies with a
half-written file on disk, as a kill in the middle of the write leaves it.

Unset (the normal case) the check is one dictionary lookup. The variables are forwarded to Ray workers
(pipeline.core.runner.FORWARDED_ENV) when this process starts Ray.
"""

from __future__ import annotations

import fnmatch
import os
import signal
from collections.abc import Callable

ENV, MARKER_ENV = "OWT_FAULT", "OWT_FAULT_MARKER"


def fault_point(name: str, before: Callable[[], None] | None = None) -> None:
    """SIGKILL this process if `name` matches OWT_FAULT; `before` runs first, to leave the state a kill at that
    instant leaves (`write.<name>`: half of the file's bytes in its temporary file)."""
    patterns = os.environ.get(ENV)
    if not patterns:
        return
    # Several faults for one run: comma-separated globs, each firing once with its own marker (<marker>.<i>).
    for i, pattern in enumerate(patterns.split(",")):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        marker = os.environ.get(MARKER_ENV)
        if marker:
            try:
                os.close(os.open(marker if i == 0 else f"{marker}.{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue  # fired already, by this or another process
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)
