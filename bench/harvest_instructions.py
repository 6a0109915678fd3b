"""Noise-free cross-check of bench/harvest_bench.py: instructions executed (valgrind callgrind) by the floor, the
typed floor and harvest on a small dump from the same generator, each minus the same run on a 10-line dump (which
takes out the imports and every other one-time cost, such as building the config and the blocklists).

    python bench/harvest_instructions.py [--lines 20000]     (needs valgrind; ~2 minutes)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def instructions(mode: str, dump: Path) -> int:
    """Instructions of `mode` on `dump` minus those of `mode` on the 10-line dump."""
    return _count(mode, dump) - _count(mode, _tiny(dump))


def _tiny(dump: Path) -> Path:
    return dump.with_suffix(".10.zst")


def _count(mode: str, dump: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__, "--run", mode]
            + ["--dump", str(dump)],
            check=True,
            capture_output=True,
        )
        return int(re.search(r"^summary: (\d+)", out.read_text(), re.M)[1])  # type: ignore[index]


def run_once(mode: str, dump: Path) -> None:
    sys.path.insert(0, str(HERE))
    import harvest_bench

    getattr(harvest_bench, mode)(dump)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--dump", default=None)
    ap.add_argument("--run", choices=["floor", "floor_typed", "ours"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    dump = Path(args.dump or f"runs/bench/RS_2017-10.{args.lines}.zst")
    if args.run:
        run_once(args.run, dump)
        return 0
    sys.path.insert(0, str(HERE))
    from reddit_sample import write_dump

    dump.parent.mkdir(parents=True, exist_ok=True)
    for path, lines in ((dump, args.lines), (_tiny(dump), 10)):
        if not path.is_file():
            write_dump(path, lines)
    floor, typed, ours = (instructions(m, dump) for m in ("floor", "floor_typed", "ours"))
    print(
        f"{dump}: floor {floor / 1e9:.3f} G instructions, typed floor {typed / 1e9:.3f} G, harvest {ours / 1e9:.3f} G; "
        f"harvest / floor {ours / floor:.2f}x, harvest / typed floor {ours / typed:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
