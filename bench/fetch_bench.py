"""make bench-fetch: pages/s of the fetch stage against a loopback web that waits 100 ms before every response and
serves real pages (../shared/data/html-benchmark), beside a naive sequential `requests.get` loop over the same
URLs, in the same run. The web runs in its own process (so the CPU figures are the fetcher's alone) and acts as an
HTTP proxy for many host names, so per-host politeness applies as it would on the real web.

    python bench/fetch_bench.py [--urls 3000] [--hosts 1500] [--threads 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

from pipeline.core.dataset import shard_name, write_parquet  # noqa: E402
from pipeline.core.stage import ShardTask  # noqa: E402
from pipeline.stages.fetch import FetchConfig, fetch_shard  # noqa: E402
from pipeline.stages.harvest import links_table  # noqa: E402
from pipeline.web.replay import html_benchmark_pages  # noqa: E402


def serve(port_file: Path, delay_s: float) -> None:
    pages = [body for _, body in html_benchmark_pages(SHARED / "html-benchmark")]

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            time.sleep(delay_s)
            path = urlsplit(self.path).path
            if path == "/robots.txt":
                body, status = b"User-agent: *\nDisallow: /private/\n", 200
            else:
                body, status = pages[int(path.strip("/").split("/")[-1]) % len(pages)], 200
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

        def handle_error(self, request, client_address):
            pass

    httpd = Server(("127.0.0.1", 0), Slow)
    port_file.write_text(str(httpd.server_address[1]))
    httpd.serve_forever()


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _fetch_one(args: tuple[str, str, int, str, int]) -> tuple[int, float]:
    """One fetch task in a worker process: (pages fetched, its CPU seconds)."""
    src, out, threads, proxy, level = args
    cfg = FetchConfig(
        input=str(Path(src).parent),
        output=out,
        proxy=proxy,
        threads=threads,
        allow_networks=["127.0.0.1/32"],
        warc_gzip_level=level,
    )
    c = cpu_s()
    rec = fetch_shard(ShardTask(Path(src).stem, [src], out, cfg, None, "bench"))
    return rec["rows_out"], cpu_s() - c


def _ready(_: int) -> None:
    import pipeline.stages.fetch  # noqa: F401


def ours(urls: list[str], proxy: str, threads: int, work: Path, tasks: int, level: int) -> tuple[float, float, int]:
    """The stage as it runs on one node: one task per links shard, `tasks` of them at once in their own
    processes (as Ray runs them), URLs spread over the shards as harvest spreads them."""
    shards = []
    for k in range(tasks):
        mine = [u for i, u in enumerate(urls) if i % tasks == k]
        links = {u: {"host": "", "max": 3, "sum": 3, "n": 1, "created": 0, "ids": set(), "subs": set()} for u in mine}
        src = work / "links" / f"{shard_name(k)}.parquet"
        write_parquet(links_table(links), src)
        shards.append((str(src), str(work / f"fetched-{time.monotonic_ns()}"), threads, proxy, level))
    with ProcessPoolExecutor(tasks) as pool:
        list(pool.map(_ready, range(tasks)))  # workers up and imports done before the clock starts
        t = time.perf_counter()
        done = list(pool.map(_fetch_one, shards))
        wall = time.perf_counter() - t
    return wall, sum(c for _, c in done), sum(n for n, _ in done)


def naive(urls: list[str], proxy: str) -> tuple[float, float, int]:
    t, c, ok = time.perf_counter(), cpu_s(), 0
    for u in urls:
        ok += requests.get(u, proxies={"http": proxy}, timeout=10).status_code == 200
    return time.perf_counter() - t, cpu_s() - c, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--urls", type=int, default=3000)
    ap.add_argument("--hosts", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=64, help="per task")
    ap.add_argument("--tasks", type=int, default=os.cpu_count() or 2, help="fetch tasks at once (one per core)")
    ap.add_argument("--gzip-level", type=int, default=FetchConfig.model_fields["warc_gzip_level"].default)
    ap.add_argument("--naive-urls", type=int, default=50)
    ap.add_argument("--delay-ms", type=float, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve), args.delay_ms / 1000)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port_file), "--delay-ms", str(args.delay_ms)]
        )
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            proxy = f"http://127.0.0.1:{port_file.read_text()}"
            urls = [f"http://site{i % args.hosts}.bench.test/page/{i}" for i in range(args.urls)]
            rows = []
            for run in range(args.runs):
                wall, cpu, ok = ours(urls, proxy, args.threads, Path(tmp) / f"run{run}", args.tasks, args.gzip_level)
                nwall, ncpu, nok = naive(urls[: args.naive_urls], proxy)
                rows.append(
                    {
                        "pages_per_s": ok / wall,
                        "cpu_ms_per_page": 1000 * cpu / max(ok, 1),
                        "ok": ok,
                        "naive_pages_per_s": nok / nwall,
                        "naive_cpu_ms_per_page": 1000 * ncpu / max(nok, 1),
                    }
                )
                print(json.dumps({k: round(v, 2) for k, v in rows[-1].items()}), flush=True)
        finally:
            server.terminate()
    med = {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}
    speedup = statistics.median(r["pages_per_s"] / r["naive_pages_per_s"] for r in rows)
    result = {
        "urls": args.urls,
        "hosts": args.hosts,
        "tasks": args.tasks,
        "threads_per_task": args.threads,
        "warc_gzip_level": args.gzip_level,
        "delay_ms": args.delay_ms,
        "runs": args.runs,
        **med,
        "speedup_vs_naive": round(speedup, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"fetch {med['pages_per_s']:,.0f} pages/s ({med['cpu_ms_per_page']:.2f} ms CPU a page) vs a sequential "
        f"requests.get loop {med['naive_pages_per_s']:,.1f} pages/s: {speedup:.0f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
