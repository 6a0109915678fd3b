"""Crash and damage drills on real pages: every fault below injected for real, and the outcome checked against an
uninterrupted run. `make drills` (a few minutes); figures in docs/RELIABILITY.md.

- worker: a Ray worker SIGKILLed at a named point of one stage (files written, record not yet); the stage must
  finish in the same run with the uninterrupted run's output fingerprint.
- driver: the stage's driver SIGKILLed after N finished tasks; the same command again must resume (resumed_shards
  >= N) and produce the same output fingerprint and document ids, none twice.
- damage: one input shard truncated, bit-flipped, deleted or replaced by a sibling, or its stage manifest edited to
  name other bytes; `verify` must name it and the next stage must refuse it and write no `_stage.json`. The same
  for the links dataset (harvest -> fetch), with every link on a closed loopback port: fetch's input check comes
  before any request, and nothing can leave the machine if it did not.
- midwrite: a worker and a driver SIGKILLed inside a file's write (`write.<name>`: half its bytes in its temporary
  file); the run (worker: Ray's retry) or the rerun (driver) must give the reference's fingerprint and document ids
  and leave no temporary file.

    python bench/fault_drills.py --only 'midwrite:*' --only 'damage:fetch:*'    (selection: kind:stage:fault globs)
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pages import SHARED, fetched_dataset  # noqa: E402
from pipeline import chain  # noqa: E402
from pipeline.chain import PIPELINE, run_stage  # noqa: E402
from pipeline.core.dataset import Dataset, file_entry, read_parquet, shard_name, write_json, write_parquet  # noqa: E402
from pipeline.core.errors import PipelineError  # noqa: E402
from pipeline.core.runner import LocalRunner  # noqa: E402
from pipeline.corpus.published import verify  # noqa: E402
from pipeline.stages.harvest import links_table  # noqa: E402
from pipeline.web.replay import html_benchmark_pages  # noqa: E402

# The stages from the fetched pages to the token corpus, in chain order.
CHAIN = [s.name for s in PIPELINE[[s.name for s in PIPELINE].index("extract") :] if s.uses_ray]
WORKER_FAULTS = {
    "extract": ["shard.part-00000.record", "shard.part-00003.record", "shard.part-00005.record"],
    "annotate": ["shard.part-00001.record", "shard.part-00004.record"],
    "filter": ["shard.part-00002.record"],
    "dedup": [
        "shard._work/signatures/part-00002.record",
        "shard._work/edges/p0000.record",
        "shard._work/clusters/clusters.record",
        "shard.part-00004.record",
    ],
    "tokenize": ["shard._encode/part-00001.record", "shard._pack/train-00000.record", "shard._pack/val-00000.record"],
}
DRIVER_FAULTS = {
    "extract": "driver.extract.pages.2",
    "annotate": "driver.annotate.documents.3",
    "filter": "driver.filter.documents.3",
    "dedup": "driver.dedup.signatures.4",
    "tokenize": "driver.tokenize.documents.2",
}
DAMAGE = ["truncated", "bit_flipped", "missing", "replaced", "manifest_edited"]
# Kills inside a file's write: in a Ray worker (the task is retried in the same run) and in the driver (rerun).
MIDWRITE_WORKER = {"extract": "write.part-00002.parquet", "tokenize": "write.tokens-00000.arrow"}
MIDWRITE_DRIVER = {"dedup": "write._stage.json", "tokenize": "write._stage.json"}

ONE_STAGE_ON_RAY = """
import json, sys
from pipeline.chain import run_stage, stage
from pipeline.core.runner import RayRunner
name, cfg, result = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
m = run_stage(name, stage(name).config(**cfg), RayRunner(num_cpus=2))
open(result, "w").write(json.dumps({"fingerprint": m["output_fingerprint"], "resumed": m.get("resumed_shards", 0)}))
"""


def run_child(
    code: str, args: list[str], env: dict, timeout: int = 600
) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Runs `code` in a fresh interpreter with `args` plus a result path as its last argument; the child writes its
    JSON result there (not to stdout, where Ray's own warnings land too). None when the child wrote none."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-c", code, *args, str(result)],
            cwd=ROOT,
            env=os.environ | env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc, json.loads(result.read_text()) if result.exists() else None


def drill_pages(shared: Path = SHARED) -> list[tuple[str, bytes]]:
    """40 real pages, and 8 of them a second time under other URLs (exact duplicates for dedup)."""
    pages = list(html_benchmark_pages(shared / "html-benchmark"))[:40]
    return pages + [(url.replace("://", "://mirror."), html) for url, html in pages[:8]]


def configs(fetched: Path, out: Path) -> dict:
    cfgs, prev = {}, fetched
    for name in CHAIN:
        extra = {"val_fraction": 0.2, "shard_tokens": 20_000} if name == "tokenize" else {}
        cfgs[name] = chain.stage(name).config(input=str(prev), output=str(out / name), **extra)
        prev = out / name
    return cfgs


def on_ray(name: str, cfg, env: dict) -> tuple[int, dict | None, str]:
    proc, result = run_child(ONE_STAGE_ON_RAY, [name, json.dumps(cfg.model_dump(mode="json"))], env)
    return proc.returncode, result, proc.stderr[-2000:]


def doc_ids(path: str) -> list[str]:
    """The document ids (url_hash) of a finished dataset, one per row: tokenize keeps its documents in documents/."""
    ds = Dataset(path)
    subdir = "documents" if ds.manifest()["stage"] == "tokenize" else ""
    ids = [h for p in ds.shard_files(subdir=subdir) for h in read_parquet(p, ["url_hash"]).column(0).to_pylist()]
    if not ids:
        raise AssertionError(f"{path}: no documents (a comparison of empty id lists would prove nothing)")
    return ids


def damage(kind: str, shard: Path, other: Path) -> str:
    """Damage one shard file; returns the words the next stage's error names it with."""
    data = shard.read_bytes()
    if kind == "truncated":
        shard.write_bytes(data[: len(data) // 2])
        return "bytes, its stage recorded"
    if kind == "bit_flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        shard.write_bytes(bytes(flipped))
        return "differs from the recorded"
    if kind == "missing":
        shard.unlink()
        return "is missing"
    if kind == "replaced":  # a valid Parquet file, but not the one the manifest names: the manifest no longer matches
        shard.write_bytes(other.read_bytes())
        return "bytes, its stage recorded" if len(data) != other.stat().st_size else "differs from the recorded"
    if kind == "manifest_edited":  # the shard intact, its stage manifest edited: it vouches for other bytes now
        stage = shard.parent / "_stage.json"
        m = json.loads(stage.read_text())
        for rec in m["shards"]:
            for f in rec["files"]:
                if f["path"] == shard.name:
                    f["sha256"] = f["sha256"][::-1]
        stage.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
        return "differs from the recorded"
    raise ValueError(f"unknown damage {kind!r}")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): every connection to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def links_dataset(out: Path, shards: int = 6, per_shard: int = 8) -> Path:
    """A finished harvest output as harvest writes it (links_table's columns), every URL on a closed loopback port."""
    port = closed_port()
    entries: list[dict[str, Any]] = []
    for i in range(shards):
        urls = [f"http://127.0.0.1:{port}/{i}/{j}.html" for j in range(per_shard)]
        info: dict[str, Any] = {
            "host": "127.0.0.1",
            "max": 3,
            "sum": 3,
            "n": 1,
            "created": 0,
            "ids": set(),
            "subs": set(),
        }
        path = out / f"{shard_name(i)}.parquet"
        write_parquet(links_table({u: dict(info) for u in urls}), path)
        rec = {"name": shard_name(i), "files": [file_entry(path, out)], "rows_in": per_shard, "rows_out": per_shard}
        entries.append(rec | {"drops": {}})
    n = shards * per_shard
    manifest: dict[str, Any] = {
        "stage": "harvest",
        "inputs": {},
        "shards": entries,
        "config": {},
        "code_version": "drills",
    }
    manifest |= {"rows_in": n, "rows_out": n, "drops": {}, "wall_time_s": 0.0}
    write_json(
        out / "_stage.json", manifest | {"output_fingerprint": "-".join(e["files"][0]["sha256"][:8] for e in entries)}
    )
    return out


@contextlib.contextmanager
def loopback_only():
    """Any connection to an address off loopback fails the drill instead of leaving the machine."""
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"drill tried to connect to {address}")
        connect(sock, address)

    socket.socket.connect = guarded  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]


def temporaries(folder: str | Path) -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob(".*.tmp-*"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/drills.json")
    ap.add_argument(
        "--only", action="append", default=[], metavar="GLOB", help="run the drills kind:stage:fault matches"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="owt-drills-"))

    def chosen(kind: str, stage: str, fault: str) -> bool:
        return not args.only or any(fnmatch.fnmatchcase(f"{kind}:{stage}:{fault}", g) for g in args.only)

    fetched = fetched_dataset(drill_pages(), work / "fetched", shards=6)
    wanted = [
        (kind, stage)
        for kind, table in (("worker", WORKER_FAULTS), ("driver", DRIVER_FAULTS), ("midwrite", MIDWRITE_WORKER))
        for stage, faults in table.items()
        for fault in ([faults] if isinstance(faults, str) else faults)
        if chosen(kind, stage, fault)
    ]
    wanted += [("midwrite", s) for s, f in MIDWRITE_DRIVER.items() if chosen("midwrite", s, f)]
    wanted += [("damage", s) for s in CHAIN for k in DAMAGE + ["warc_bit_flipped"] if chosen("damage", s, k)]
    # The reference: every stage up to the last one a chosen drill needs (all of them for the whole set).
    last = max((CHAIN.index(s) for _, s in wanted), default=-1)
    base = {n: run_stage(n, c, LocalRunner()) for n, c in list(configs(fetched, work / "base").items())[: last + 1]}
    rows = []

    def drill_config(stage: str, folder: Path) -> Any:
        """The stage's config writing to `folder`, reading the reference run's output of the stage before it."""
        cfg = configs(fetched, folder)[stage]
        if stage == "extract":
            return cfg
        return cfg.model_copy(update={"input": base[CHAIN[CHAIN.index(stage) - 1]]["config"]["output"]})

    def record(kind: str, stage: str, fault: str, ok: bool, detail: str) -> None:
        rows.append({"kind": kind, "stage": stage, "fault": fault, "ok": ok, "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {kind:8} {stage:9} {fault:42} {detail}", flush=True)

    for i, (stage, faults) in enumerate(WORKER_FAULTS.items()):
        for j, fault in enumerate(faults):
            if not chosen("worker", stage, fault):
                continue
            cfg = drill_config(stage, work / f"w{i}-{j}")
            marker = work / f"w{i}-{j}.fired"
            rc, res, err = on_ray(stage, cfg, {"OWT_FAULT": fault, "OWT_FAULT_MARKER": str(marker)})
            same = res is not None and res["fingerprint"] == base[stage]["output_fingerprint"]
            ok = rc == 0 and marker.exists() and same
            record(
                "worker", stage, fault, ok, f"fired={marker.exists()} rc={rc} identical={same}" + ("" if ok else err)
            )

    for i, (stage, fault) in enumerate(DRIVER_FAULTS.items()):
        if not chosen("driver", stage, fault):
            continue
        cfg = drill_config(stage, work / f"d{i}")
        env = {"OWT_FAULT": fault, "OWT_FAULT_MARKER": str(work / f"d{i}.fired")}
        rc1, _, _ = on_ray(stage, cfg, env)
        incomplete = not Dataset(cfg.output).is_complete()
        rc2, res, err = on_ray(stage, cfg, env)
        need = int(fault.rsplit(".", 1)[1])
        same = res is not None and res["fingerprint"] == base[stage]["output_fingerprint"]
        ids = doc_ids(cfg.output) if rc2 == 0 else []
        want = doc_ids(base[stage]["config"]["output"])
        ids_ok = len(ids) == len(set(ids)) and sorted(ids) == sorted(want)
        ok = rc1 == -9 and incomplete and rc2 == 0 and res["resumed"] >= need and same and ids_ok
        detail = (
            f"killed rc={rc1} incomplete={incomplete} resumed={res and res['resumed']} identical={same} ids={ids_ok}"
        )
        record("driver", stage, fault, ok, detail + ("" if ok else err))

    for i, (stage, fault) in enumerate(MIDWRITE_WORKER.items()):
        if not chosen("midwrite", stage, fault):
            continue
        cfg = drill_config(stage, work / f"mw{i}")
        marker = work / f"mw{i}.fired"
        rc, res, err = on_ray(stage, cfg, {"OWT_FAULT": fault, "OWT_FAULT_MARKER": str(marker)})
        same = res is not None and res["fingerprint"] == base[stage]["output_fingerprint"]
        ids_ok = rc == 0 and sorted(doc_ids(cfg.output)) == sorted(doc_ids(base[stage]["config"]["output"]))
        left = temporaries(cfg.output)
        ok = rc == 0 and marker.exists() and same and ids_ok and not left
        detail = f"worker fired={marker.exists()} rc={rc} identical={same} ids={ids_ok} temporaries={left}"
        record("midwrite", stage, fault, ok, detail + ("" if ok else err))

    for i, (stage, fault) in enumerate(MIDWRITE_DRIVER.items()):
        if not chosen("midwrite", stage, fault):
            continue
        cfg = drill_config(stage, work / f"md{i}")
        env = {"OWT_FAULT": fault, "OWT_FAULT_MARKER": str(work / f"md{i}.fired")}
        rc1, _, _ = on_ray(stage, cfg, env)
        half = temporaries(cfg.output)  # the kill's half-written file, under its temporary name
        incomplete = not Dataset(cfg.output).is_complete()
        rc2, res, err = on_ray(stage, cfg, env)
        same = res is not None and res["fingerprint"] == base[stage]["output_fingerprint"]
        ids = doc_ids(cfg.output) if rc2 == 0 else []
        ids_ok = len(ids) == len(set(ids)) and sorted(ids) == sorted(doc_ids(base[stage]["config"]["output"]))
        left = temporaries(cfg.output)
        ok = rc1 == -9 and len(half) == 1 and incomplete and rc2 == 0 and same and ids_ok and not left
        detail = (
            f"driver killed rc={rc1} half-written={[Path(p).name for p in half]} incomplete={incomplete} "
            f"identical={same} ids={ids_ok} temporaries={left}"
        )
        record("midwrite", stage, fault, ok, detail + ("" if ok else err))

    links = links_dataset(work / "links")
    for kind in DAMAGE:  # the links dataset damaged, then fetched: refused before any request
        if not chosen("damage", "fetch", kind):
            continue
        src = work / f"damaged-fetch-{kind}"
        shutil.copytree(links, src)
        target = "part-00001.parquet"
        damage(kind, src / target, src / "part-00002.parquet")
        report = verify(src)
        named = report.missing + [p for p, _ in report.corrupt]
        cfg = chain.stage("fetch").config(
            input=str(src),
            output=str(work / f"out-fetch-{kind}"),
            allow_networks=["127.0.0.1/32"],
            retries=0,
            obey_robots=False,
            min_host_delay_s=0,
            connect_timeout_s=1,
            deadline_s=2,
        )
        try:
            with loopback_only():
                run_stage("fetch", cfg, LocalRunner())
            refused = "NOT REFUSED"
        except PipelineError as e:
            refused = str(e)
        ok = named == [target] and target in refused and not Dataset(cfg.output).is_complete()
        record("damage", "fetch", kind, ok, f"verify names {named}; fetch: {refused[:110]}")

    for stage in CHAIN:  # damage the stage's input, then run it
        src_name = "fetched" if stage == "extract" else CHAIN[CHAIN.index(stage) - 1]
        for kind in DAMAGE + (["warc_bit_flipped"] if stage == "extract" else []):
            if not chosen("damage", stage, kind):
                continue
            src = work / f"damaged-{stage}-{kind}"
            shutil.copytree(fetched if stage == "extract" else base[src_name]["config"]["output"], src)
            target = "warc/part-00001.00000.warc.gz" if kind.startswith("warc") else "part-00001.parquet"
            damage(kind.removeprefix("warc_"), src / target, src / "part-00002.parquet")
            report = verify(src)
            named = report.missing + [p for p, _ in report.corrupt]
            cfg = configs(fetched, work / f"out-{stage}-{kind}")[stage].model_copy(update={"input": str(src)})
            try:
                run_stage(stage, cfg, LocalRunner())
                refused = "NOT REFUSED"
            except PipelineError as e:
                refused = str(e)
            ok = named == [target] and target in refused
            ok = ok and not Dataset(cfg.output).is_complete()
            record("damage", stage, kind, ok, f"verify names {named}; {stage}: {refused[:110]}")

    summary = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "passed": sum(r["ok"] for r in rows),
        "drills": len(rows),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"drills: {summary['passed']}/{summary['drills']} passed; {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["passed"] == summary["drills"] else 1


if __name__ == "__main__":
    sys.exit(main())
