"""fetch: links -> raw HTTP responses in WARC files + an index shard per links shard.

A thread pool of pooled `requests` sessions per Ray task; urllib3's Retry handles backoff on connection
errors, 429 (Retry-After honoured) and 5xx. A final failure is an index row with an error class, never an
exception out of the stage. Only HTML bodies are stored.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import pyarrow as pa
import requests
from pydantic import Field
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline import __version__
from pipeline.config import StageConfig
from pipeline.dataset import atomic_path, read_parquet, write_parquet
from pipeline.stage import ShardTask, finish_shard, run_shardwise
from pipeline.warc import WarcShardWriter

HTML_TYPES = ("text/html", "application/xhtml+xml")


class FetchConfig(StageConfig):
    input: str
    output: str
    threads: int = Field(16, ge=1, le=1024)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0)
    max_bytes: int = Field(5_000_000, ge=1024)
    max_redirects: int = Field(5, ge=0)
    retries: int = Field(2, ge=0)
    user_agent: str = f"owt-pipeline/{__version__} (research crawler for an open WebText replication)"
    proxy: str | None = None  # e.g. the replay server, http://127.0.0.1:PORT

    transport_keys = frozenset({"threads", "proxy"})


FETCH_COLUMNS = [
    ("final_url", pa.string()),
    ("status", pa.int32()),
    ("content_type", pa.string()),
    ("bytes", pa.int64()),
    ("fetched_at", pa.string()),
    ("warc_file", pa.string()),
    ("warc_offset", pa.int64()),
    ("warc_length", pa.int64()),
    ("error", pa.string()),
]


class Fetcher:
    """One per task; sessions are per thread (requests.Session is not thread-safe)."""

    def __init__(self, cfg: FetchConfig):
        self.cfg = cfg
        self.local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = requests.Session()
            s.max_redirects = self.cfg.max_redirects
            s.headers["User-Agent"] = self.cfg.user_agent
            s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no cookies carried between sites
            retry = Retry(
                total=self.cfg.retries,
                backoff_factor=0.5,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=("GET",),
                respect_retry_after_header=True,
                raise_on_status=False,
                redirect=False,
            )
            adapter = HTTPAdapter(max_retries=retry, pool_maxsize=4)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            if self.cfg.proxy:
                s.proxies = {"http": self.cfg.proxy, "https": self.cfg.proxy}
            s.trust_env = False
            self.local.session = s
        return s

    def fetch(self, url: str) -> dict[str, Any]:
        fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            with self.session().get(
                url, stream=True, timeout=(self.cfg.connect_timeout_s, self.cfg.read_timeout_s)
            ) as resp:
                ctype = resp.headers.get("Content-Type", "")
                is_html = ctype.split(";")[0].strip().lower() in HTML_TYPES
                body = resp.raw.read(self.cfg.max_bytes + 1, decode_content=False) if is_html else b""
                truncated = len(body) > self.cfg.max_bytes
                return {
                    "final_url": resp.url,
                    "status": resp.status_code,
                    "content_type": ctype,
                    "fetched_at": fetched_at,
                    "body": body[: self.cfg.max_bytes],
                    "truncated": truncated,
                    "is_html": is_html,
                    "reason": resp.reason or "",
                    "request_headers": list(resp.request.headers.items()),
                    "response_headers": list(resp.raw.headers.items()),
                    "error": None
                    if resp.status_code == 200 and is_html
                    else (f"http_{resp.status_code}" if resp.status_code != 200 else "not_html"),
                }
        except requests.exceptions.RequestException as e:
            return {
                "final_url": None,
                "status": None,
                "content_type": None,
                "fetched_at": fetched_at,
                "error": _error_class(e),
            }


def _error_class(e: Exception) -> str:
    if isinstance(e, requests.exceptions.TooManyRedirects):
        return "too_many_redirects"
    if isinstance(e, requests.exceptions.Timeout):
        return "timeout"
    if isinstance(e, requests.exceptions.ConnectionError):
        return "connection_error"
    return type(e).__name__.lower()


def fetch_shard(task: ShardTask) -> dict[str, Any]:
    cfg: FetchConfig = task.config
    (links_path,) = task.inputs
    links = read_parquet(links_path)
    urls = links.column("url").to_pylist()
    out = Path(task.output)
    warc_rel = f"warc/{task.name}.warc.gz"
    warc_path, index_path = out / warc_rel, out / f"{task.name}.parquet"
    fetcher = Fetcher(cfg)
    cols: dict[str, list[Any]] = {name: [] for name, _ in FETCH_COLUMNS}
    drops: Counter = Counter()
    started = time.time()
    with atomic_path(warc_path) as tmp, open(tmp, "wb") as f, ThreadPoolExecutor(cfg.threads) as pool:
        writer = WarcShardWriter(f)
        # map() yields in input order, so the WARC and the index are in links order whatever finishes first.
        for r in pool.map(fetcher.fetch, urls):
            offset = length = None
            if r["status"] is not None:
                offset, length = writer.write_pair(
                    r["final_url"],
                    r["request_headers"],
                    f"{r['status']} {r['reason']}".strip(),
                    r["response_headers"],
                    r["body"],
                    r["truncated"],
                )
            if r["error"]:
                drops[r["error"]] += 1
            cols["final_url"].append(r["final_url"])
            cols["status"].append(r["status"])
            cols["content_type"].append(r["content_type"])
            cols["bytes"].append(len(r["body"]) if r.get("body") is not None else None)
            cols["fetched_at"].append(r["fetched_at"])
            cols["warc_file"].append(warc_rel if offset is not None else None)
            cols["warc_offset"].append(offset)
            cols["warc_length"].append(length)
            cols["error"].append(r["error"])
    table = links
    for name, typ in FETCH_COLUMNS:
        table = table.append_column(pa.field(name, typ), pa.array(cols[name], type=typ))
    write_parquet(table, index_path)
    ok = sum(1 for e in cols["error"] if e is None)
    return finish_shard(
        task,
        [warc_path, index_path],
        rows_in=len(urls),
        rows_out=ok,
        drops=drops,
        extra={"fetch_seconds": round(time.time() - started, 3)},
    )


def run(cfg, runner, overwrite: bool = False) -> dict[str, Any]:
    return run_shardwise("fetch", cfg, fetch_shard, runner, overwrite, desc="pages")
