"""make bench-harvest: harvest's lines/s on one core against the floor (zstd decompression + orjson.loads of every
line and nothing else), measured in the same run, on a generated 2017-like 1M-line .zst dump. A second reference,
the typed floor, decodes with harvest's own decoder instead (simdjson; only the fields the rules read become
Python objects): the distance to it is what the rules, normalization and merging cost.

    python bench/harvest_bench.py [--lines 1000000] [--runs 3] [--dump runs/bench/RS_2017-10.zst]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reddit_sample import write_dump  # noqa: E402

from pipeline.stages.harvest import (  # noqa: E402
    HarvestConfig,
    SubmissionDecoder,
    SubmissionRules,
    harvest_lines,
    map_table,
)
from pipeline.text.dumps import DumpReader  # noqa: E402


def _decode_every_line(path: Path, decode) -> int:
    n = 0
    with open(path, "rb") as f:
        stream = io.BufferedReader(zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(f), 1 << 20)
        for line in stream:
            decode(line)
            n += 1
    return n


def floor(path: Path) -> int:
    return _decode_every_line(path, orjson.loads)


def floor_typed(path: Path) -> int:
    """The same with the decoder harvest uses (only the fields the rules read): what harvest adds is on top of this."""
    return _decode_every_line(path, SubmissionDecoder())


def ours(path: Path) -> int:
    """What one harvest map task does with a dump: read, hash, parse, judge, merge, and build its table."""
    cfg = HarvestConfig(input=[str(path)], output="unused")
    reader = DumpReader(path)
    links = harvest_lines(reader, SubmissionRules(cfg), path.name, Counter(), Counter(), [])
    map_table(links, cfg.num_shards)
    return reader.lines


def timed(fn, path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = fn(path)
    return time.perf_counter() - t, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dump", default="runs/bench/RS_2017-10.zst")
    args = ap.parse_args()
    dump = Path(args.dump)
    if not dump.is_file():
        dump.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.lines:,} lines to {dump} ...", flush=True)
        write_dump(dump, args.lines)
    floors, typed, mine = [], [], []
    for _ in range(args.runs):  # interleaved, so all see the same machine load
        t, n = timed(floor, dump)
        floors.append(n / t)
        t, n2 = timed(floor_typed, dump)
        typed.append(n / t)
        t, n3 = timed(ours, dump)
        assert n == n2 == n3
        mine.append(n / t)
    f, ft, o = statistics.median(floors), statistics.median(typed), statistics.median(mine)
    paired = statistics.median(fl / mi for fl, mi in zip(floors, mine))  # each run's own ratio: robust to drift
    paired_typed = statistics.median(fl / mi for fl, mi in zip(typed, mine))
    result = {
        "dump": str(dump),
        "lines": n,
        "mb": round(dump.stat().st_size / 1e6, 1),
        "runs": args.runs,
        "floor_lines_per_s": round(f),
        "harvest_lines_per_s": round(o),
        "ratio_time_vs_floor": round(paired, 2),
        "typed_floor_lines_per_s": round(ft),
        "ratio_time_vs_typed_floor": round(paired_typed, 2),
        "all_floor": [round(x) for x in floors],
        "all_typed_floor": [round(x) for x in typed],
        "all_harvest": [round(x) for x in mine],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"harvest {o:,.0f} lines/s per core; floor {f:,.0f}; harvest takes {paired:.2f}x the floor's time "
        f"(median of the runs' own ratios); typed-decode floor {ft:,.0f}, harvest takes {paired_typed:.2f}x its time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
