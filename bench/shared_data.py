"""Where the real data for tests, benchmarks and the end-to-end run lies: the one setting is $OWT_SHARED_DATA, and
without it `../shared/data` beside the project checkout (the layout CI uses). The Makefile exports it.

Only harnesses (bench/, tests/) read it; the installed package never looks for it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    return Path(os.environ.get("OWT_SHARED_DATA") or PROJECT.parent / "shared" / "data").resolve()


SHARED = shared_data()
