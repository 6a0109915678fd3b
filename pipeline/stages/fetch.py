"""fetch: links -> raw HTTP responses in WARC files + an index shard per links shard.

Per Ray task (one links shard): a thread pool of pooled `requests` sessions; robots.txt obeyed; per-host
concurrency and spacing and an optional global rate (pipeline/web/politeness.py); every connection vetted against
server-side request forgery (pipeline/web/netguard.py); a hard deadline per URL; bodies streamed and cut at
`max_bytes`; only HTML stored. Every URL ends as an index row with an error class or none: nothing is raised out
of the stage. Results are committed in segments (a WARC file and its index part, both atomic), so a killed task
keeps what it committed and a rerun fetches only the rest.
"""

from __future__ import annotations

import http.client
import math
import re
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from datetime import UTC, datetime
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import pyarrow as pa
import requests
import urllib3
from pydantic import Field
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from pipeline import __version__
from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import atomic_path, read_parquet, write_parquet
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, finish_shard, run_shardwise
from pipeline.text.warc import WarcShardWriter
from pipeline.web.netguard import AddressPolicy, BlockedAddress, GuardedAdapter
from pipeline.web.politeness import ROBOTS_MAX_BYTES, Deadlines, HostGate, RateLimiter, Robots

HTML_TYPES = ("text/html", "application/xhtml+xml")
# A body that inflates past max_bytes at more than this ratio is a decompression bomb, not a big page.
BOMB_RATIO = 100


class FetchConfig(StageConfig):
    input: str
    output: str
    threads: int = Field(32, ge=1, le=1024)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0)
    deadline_s: float = Field(30.0, gt=0)  # per URL, all hops, retries and the body included
    max_bytes: int = Field(5_000_000, ge=1024)  # decoded body; longer ones are cut and flagged WARC-Truncated
    max_redirects: int = Field(5, ge=0)
    retries: int = Field(2, ge=0)  # on connection errors, 429 and 5xx, with exponential backoff
    max_retry_after_s: float = Field(10.0, ge=0)  # a longer Retry-After ends the URL as http_429 instead
    obey_robots: bool = True
    max_per_host: int = Field(2, ge=1)
    min_host_delay_s: float = Field(1.0, ge=0)  # between request starts to one host (robots Crawl-delay if longer)
    max_requests_per_s: float | None = Field(None, gt=0)  # per task, all hosts
    # non-public networks to allow, e.g. ["127.0.0.1/32"] for a loopback server; a bad entry is a config error
    allow_networks: list[AddressPolicy.NetworkSpec] = []
    user_agent: str = f"owt-pipeline/{__version__} (research crawler for an open WebText replication)"
    proxy: str | None = None  # e.g. the replay server, http://127.0.0.1:PORT
    # With a proxy: resolve each name here, refuse it if any address is non-public, and ask the proxy for the
    # vetted address (docs/FETCH.md). Off by default because the proxy this project runs is the replay server,
    # which serves recorded real hostnames offline: there is no DNS to ask, and it finds pages by their name.
    # A real egress proxy needs it on, or must refuse private destinations itself.
    proxy_resolve: bool = False
    ca_bundle: str | None = None  # CA certificates to trust instead of certifi's (the replay server's CA)
    segment_urls: int = Field(500, ge=1)  # results per committed segment: what a crash can cost at most
    # zlib level of each WARC record. On real pages level 1 takes 1.6 ms a page against 4.5 ms at 6, for files 19%
    # bigger: the WARC files are an intermediate, and compression is the largest CPU cost of a fetch task.
    warc_gzip_level: int = Field(1, ge=1, le=9)
    # A robots.txt Crawl-delay longer than this is cut to it: Nutch skips such pages past its 30 s default
    # (fetcher.max.crawl.delay), Heritrix honours at most 300 s (respectCrawlDelayUpToSeconds), Scrapy ignores
    # Crawl-delay (scrapy/scrapy#892); a day's delay would otherwise park every URL of that host for the whole task.
    max_crawl_delay_s: float = Field(30.0, ge=0)

    transport_keys = frozenset({"threads", "proxy", "ca_bundle", "segment_urls", "warc_gzip_level"})


FETCH_COLUMNS = [
    ("final_url", pa.string()),
    ("status", pa.int32()),
    ("content_type", pa.string()),
    ("charset", pa.string()),
    ("bytes", pa.int64()),
    ("truncated", pa.bool_()),
    ("redirects", pa.int32()),
    ("fetched_at", pa.string()),
    ("warc_file", pa.string()),
    ("warc_offset", pa.int64()),
    ("warc_length", pa.int64()),
    ("error", pa.string()),
]
PART_SCHEMA = pa.schema([("url", pa.string()), *FETCH_COLUMNS])


class CappedRetry(Retry):
    """urllib3's Retry, held to the URL's deadline: a Retry-After longer than the cap or than the time left ends the
    retries (the response is returned) instead of parking a thread; no retry starts once the deadline has passed
    (the watchdog has shut the late socket, and a new one would drip on unwatched); no backoff sleeps past it."""

    def __init__(  # type: ignore[no-untyped-def]  # urllib3's arguments, passed on
        self, *args, max_retry_after_s: float = 10.0, deadlines: Deadlines | None = None, **kw
    ) -> None:
        super().__init__(*args, **kw)
        self.max_retry_after_s, self.deadlines = max_retry_after_s, deadlines

    def new(self, **kw: Any) -> CappedRetry:
        # urllib3 makes a new Retry for every attempt from its own arguments only: carry ours over.
        kw.setdefault("max_retry_after_s", self.max_retry_after_s)
        kw.setdefault("deadlines", self.deadlines)
        return super().new(**kw)

    def _left(self) -> float:
        left = self.deadlines.remaining() if self.deadlines is not None else None
        return math.inf if left is None else left

    def increment(  # type: ignore[override,no-untyped-def]  # urllib3's signature, untyped there
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ) -> Retry:
        left = self._left()
        if response is not None:
            after = self.get_retry_after(response)
            if after is not None and after > min(self.max_retry_after_s, left):
                raise MaxRetryError(_pool, url, error)  # with raise_on_status=False: the response is returned
        if left <= 0:
            raise MaxRetryError(_pool, url, error)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: urllib3.BaseHTTPResponse | None = None) -> None:
        after = self.get_retry_after(response) if response is not None and self.respect_retry_after_header else None
        wait = min(after or self.get_backoff_time(), self._left())
        if wait > 0:
            time.sleep(wait)


class FetchSession(requests.Session):
    """A Session that never follows redirects itself. Even with allow_redirects=False, requests reads the whole body
    of a redirect response into memory (to prepare `Response.next`), unbounded and in a way that raises RuntimeError
    on a broken gzip body: the fetcher follows redirects by hand instead, without reading their bodies."""

    def resolve_redirects(self, *args: Any, **kw: Any) -> Generator[requests.Response]:
        yield from ()


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def detect_charset(content_type: str, body: bytes | bytearray) -> str | None:
    """From the Content-Type header, else a <meta> tag in the first 4 KB, else detection on the first 64 KB. A
    declared charset that cannot decode the page (or that Python does not know) is ignored in favour of the next."""
    head = body[:65536]
    declared = [m[1] for m in [re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type or "", re.I)] if m]
    declared += [m[1].decode("ascii") for m in [_META_CHARSET.search(body[:4096])] if m]
    for name in declared:
        try:
            head.decode(name)
            return name.lower()
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 4 and len(body) > len(head):
                return name.lower()  # only the cut at 64 KB split a character
        except LookupError:
            pass
    if not body:
        return None
    best = charset_normalizer.from_bytes(head).best()
    return best.encoding.lower() if best is not None else None


def error_class(e: BaseException) -> str:
    """The most telling cause in the chain requests and urllib3 wrap around a failure, or ""."""
    queue: list[object] = [e]
    seen: set[int] = set()
    while queue:
        item = queue.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:  # ssl errors have a string `reason`
            continue
        e = item
        seen.add(id(e))
        if isinstance(e, BlockedAddress):
            return "blocked_address"
        if isinstance(e, urllib3.exceptions.NameResolutionError):
            return "dns_error"
        if isinstance(e, urllib3.exceptions.NewConnectionError):  # before its base class ConnectTimeoutError
            return "connection_error"
        if isinstance(e, urllib3.exceptions.ConnectTimeoutError):
            return "connect_timeout"
        if isinstance(e, urllib3.exceptions.ReadTimeoutError):
            return "read_timeout"
        if isinstance(e, http.client.RemoteDisconnected):  # also a ConnectionResetError and a BadStatusLine
            return "connection_error"
        if isinstance(e, ConnectionResetError):
            return "connection_reset"
        if isinstance(e, http.client.HTTPException):  # a bad status line, a header line too long, too many
            return "bad_response"
        if isinstance(e, urllib3.exceptions.DecodeError):  # a Content-Encoding that does not decode
            return "bad_body"
        queue += [getattr(e, "reason", None), e.__cause__, e.__context__]
        queue += [a for a in e.args if isinstance(a, BaseException)]
    return ""


def classify(e: BaseException) -> str:
    deep = error_class(e)
    if deep:
        return deep
    if isinstance(e, requests.exceptions.SSLError):
        return "tls_error"
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return "connect_timeout"
    if isinstance(e, requests.exceptions.Timeout):
        return "read_timeout"
    if isinstance(e, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return "invalid_url"
    if isinstance(e, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "bad_body"
    if isinstance(e, requests.exceptions.ConnectionError):
        return "connection_error"
    if isinstance(e, RuntimeError):  # urllib3 reading a body it had begun to decode in another mode
        return "bad_body"
    known = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException)
    if isinstance(e, known | OSError | ValueError):
        return "bad_response"  # protocol errors and whatever else a broken server provokes
    return "unexpected_error"  # a bug more than a bad page: still one counted row, never a failed shard


class Fetcher:
    """One per task; sessions are per thread (requests.Session is not thread-safe)."""

    def __init__(self, cfg: FetchConfig):
        self.cfg = cfg
        self.local = threading.local()
        self.policy = AddressPolicy(cfg.allow_networks)
        self.deadlines = Deadlines()
        self.gate = HostGate(cfg.max_per_host, cfg.min_host_delay_s)
        self.rate = RateLimiter(cfg.max_requests_per_s)
        self.robots = Robots(self._get_robots, cfg.user_agent, cfg.max_crawl_delay_s) if cfg.obey_robots else None
        if not cfg.obey_robots:
            warnings.warn("fetch: obey_robots is false: robots.txt is ignored", stacklevel=2)

    def close(self) -> None:
        self.deadlines.close()

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = FetchSession()
            s.headers["User-Agent"] = self.cfg.user_agent
            s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no cookies carried between sites
            retry = CappedRetry(
                total=self.cfg.retries,
                backoff_factor=0.5,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=("GET",),
                respect_retry_after_header=True,
                raise_on_status=False,
                redirect=False,
                max_retry_after_s=self.cfg.max_retry_after_s,
                deadlines=self.deadlines,
            )
            adapter = GuardedAdapter(
                self.policy, self.deadlines.register, self.cfg.proxy_resolve, max_retries=retry, pool_maxsize=4
            )
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            if self.cfg.proxy:
                s.proxies = {"http": self.cfg.proxy, "https": self.cfg.proxy}
            if self.cfg.ca_bundle:
                s.verify = self.cfg.ca_bundle
            s.trust_env = False  # no proxies or .netrc credentials from the environment
            self.local.session = s
        return s

    def _get_robots(self, url: str) -> tuple[int | None, bytes, str]:
        """(status, body, "") or (None, b"", error class). Redirects are followed by hand, up to max_redirects
        (RFC 9309 asks for at least five), without reading their bodies; what is left after that is a 3xx."""
        host = urlsplit(url).hostname or ""
        self.gate.acquire(host, spaced=False)  # a small file every crawler asks for first: no spacing before it
        owner = self.deadlines.start(self.cfg.deadline_s)  # not when a redirect hop's deadline is already running
        try:
            got = self._robots_hops(url)
        finally:
            expired = self.deadlines.end() if owner else False
            self.gate.release(host)
        return (None, b"", "deadline") if expired else got

    def _robots_hops(self, url: str) -> tuple[int | None, bytes, str]:
        try:
            session, current, seen, status = self.session(), url, {url}, None
            for _ in range(self.cfg.max_redirects + 1):
                if self._out_of_time():
                    return None, b"", "deadline"
                with session.get(current, stream=True, timeout=self._timeouts(), allow_redirects=False) as r:
                    if not r.is_redirect:
                        return r.status_code, r.raw.read(ROBOTS_MAX_BYTES, decode_content=True) if r.ok else b"", ""
                    status, current = r.status_code, _redirect_target(session, r, current)
                    if current in seen:
                        break
                    seen.add(current)
            return status, b"", ""
        except Exception as e:  # one robots.txt never fails a shard; KeyboardInterrupt and SystemExit still stop it
            return None, b"", classify(e)

    def _out_of_time(self) -> bool:
        left = self.deadlines.remaining()
        return left is not None and left <= 0

    def _timeouts(self) -> tuple[float, float]:
        # A connect is not watched until its socket exists: it must not outlast the deadline by itself.
        left = self.deadlines.remaining()
        cap = math.inf if left is None else max(left, 0.01)
        return (min(self.cfg.connect_timeout_s, cap), min(self.cfg.read_timeout_s, cap))

    def fetch(self, url: str) -> dict[str, Any]:
        row: dict[str, Any] = {"url": url, "fetched_at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            row |= self._fetch(url)
        # Everything the HTTP stack can raise (a socket shut by the deadline, a malformed header urllib3 let through,
        # urllib3's RuntimeError on a broken encoding): one page never fails a shard. KeyboardInterrupt and
        # SystemExit are not Exceptions: they still stop the task.
        except Exception as e:
            row["error"] = classify(e)
            if row["error"] == "unexpected_error":
                warnings.warn(f"fetch: {url}: {type(e).__name__}: {e}", stacklevel=2)
        finally:
            if self.deadlines.end():
                row.update(error="deadline", body=None)
        return row

    def _fetch(self, url: str) -> dict[str, Any]:
        current, seen = url, {url}
        for hop in range(self.cfg.max_redirects + 1):
            host = urlsplit(current).hostname or ""
            delay = 0.0
            if self.robots is not None:
                verdict, delay = self.robots.verdict(current)
                if verdict:
                    return {"final_url": current, "redirects": hop, "error": verdict}
            self.gate.acquire(host, delay)
            try:
                self.rate.wait()
                # The clock starts at the first request, not while waiting for a turn at a busy host.
                self.deadlines.start(self.cfg.deadline_s)
                if self._out_of_time():
                    return {"final_url": current, "redirects": hop, "error": "deadline"}
                session = self.session()
                resp = session.get(current, stream=True, timeout=self._timeouts(), allow_redirects=False)
                with resp:
                    if resp.is_redirect:
                        current = _redirect_target(session, resp, current)
                        if current in seen:
                            return {"final_url": current, "status": resp.status_code, "redirects": hop + 1,
                                    "error": "redirect_loop"}  # fmt: skip
                        seen.add(current)
                        continue
                    return self._response(resp, hop)
            finally:
                self.gate.release(host)
        return {"final_url": current, "redirects": self.cfg.max_redirects + 1, "error": "too_many_redirects"}

    def _inflates_like_a_bomb(self, resp: requests.Response, stream: Iterator[bytes], decoded: int) -> bool:
        """A cut, content-encoded body: keep inflating (and discarding) a while to see its ratio. Over BOMB_RATIO
        decoded bytes per wire byte it is a decompression bomb; a big page (gzip inflates HTML ~5-10x) reaches
        max_bytes on the wire first. (urllib3 reads the wire ahead of the decoder, so the ratio at the cut says
        nothing.)"""
        for chunk in stream:
            decoded += len(chunk)
            if decoded > BOMB_RATIO * max(resp.raw.tell(), 1):
                return True
            if resp.raw.tell() > self.cfg.max_bytes:
                return False
        return decoded > BOMB_RATIO * max(resp.raw.tell(), 1)

    def _response(self, resp: requests.Response, redirects: int) -> dict[str, Any]:
        ctype = resp.headers.get("Content-Type", "")
        is_html = ctype.split(";")[0].strip().lower() in HTML_TYPES
        # One growing buffer, never more than max_bytes: no list of chunks joined into a second copy.
        body, truncated, bomb = bytearray(), False, False
        if is_html:
            # decode_content: gzip/deflate/br (and stacks of them) undone by urllib3 in steps of at most 64 KB
            # of output (urllib3 >= 2.6 bounds each step; Brotli >= 1.2 is needed for br).
            stream, decoded = resp.raw.stream(65536, decode_content=True), 0
            for chunk in stream:
                room = self.cfg.max_bytes - len(body)
                decoded += len(chunk)
                if len(chunk) > room:
                    body += memoryview(chunk)[:room]
                    truncated = True
                    break
                body += chunk
            if truncated and resp.headers.get("Content-Encoding"):
                bomb = self._inflates_like_a_bomb(resp, stream, decoded)
        if bomb:
            error = "decompression_bomb"
            body = bytearray()
        elif resp.status_code != 200:
            error = f"http_{resp.status_code}"
        elif not is_html:
            error = "not_html"
        else:
            error = None
        return {
            "final_url": resp.url,
            "status": resp.status_code,
            "content_type": ctype,
            "charset": detect_charset(ctype, body) if is_html and body else None,
            "truncated": truncated,
            "redirects": redirects,
            "body": body,
            "reason": resp.reason or "",
            "request_headers": list(resp.request.headers.items()),
            "response_headers": list(resp.raw.headers.items()),
            "error": error,
        }


def _redirect_target(session: requests.Session, resp: requests.Response, current: str) -> str:
    target = session.get_redirect_target(resp) or ""
    return requests.utils.requote_uri(urljoin(current, target)).partition("#")[0]


def _interleaved(urls: list[str]) -> list[str]:
    """Round-robin over hosts, so the pool's threads work on different hosts instead of queueing at one."""
    by_host: dict[str, list[str]] = {}
    for u in urls:
        by_host.setdefault(urlsplit(u).hostname or "", []).append(u)
    queues = list(by_host.values())
    out: list[str] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


class Segments:
    """The committed results of one shard: `warc/<shard>.<seg>.warc.gz` plus `_parts/<shard>/<seg>.parquet`.
    Each finished URL's records go into the open segment's WARC file (under a temporary name) as soon as it is
    fetched, so a task holds only index rows in memory, never a segment's worth of bodies. A segment is committed
    every `segment_urls` URLs: its WARC file renamed into place, then its part written. A WARC file without a part
    is a killed run's leftover."""

    def __init__(self, out: Path, shard: str, input_fingerprint: str, gzip_level: int, segment_urls: int = 500):
        self.out, self.shard, self.gzip_level, self.segment_urls = out, shard, gzip_level, segment_urls
        self.parts_dir = out / "_parts" / shard
        stamp = self.parts_dir / "input_fingerprint"
        if storage.is_file(stamp) and storage.read_text(stamp) != input_fingerprint:
            storage.remove_tree(self.parts_dir)  # committed for another input: none of it can be resumed
        with atomic_path(stamp) as tmp:
            tmp.write_text(input_fingerprint)
        self.done = {p.stem for p in storage.glob(self.parts_dir, "*.parquet")}
        for w in storage.glob(out / "warc", f"{shard}.*.warc.gz"):
            if w.name.split(".")[-3] not in self.done:
                storage.unlink(w)  # the uncommitted segment of a killed run: its URLs are fetched again
        for t in (out / "warc").glob(f".{shard}.*.warc.gz.tmp-*"):
            t.unlink()  # the open segment of a killed process (local: it was never renamed, nor uploaded)
        self.next = max((int(s) for s in self.done), default=-1) + 1
        self.lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []  # of the open segment
        self.open: tuple[ExitStack, Any, WarcShardWriter] | None = None

    def table(self) -> pa.Table:
        parts = [read_parquet(p) for p in storage.glob(self.parts_dir, "*.parquet")]
        return pa.concat_tables(parts) if parts else PART_SCHEMA.empty_table()

    def warc_files(self) -> list[Path]:
        return [self.out / "warc" / f"{self.shard}.{s}.warc.gz" for s in sorted(self.done)]

    def _warc_rel(self) -> str:
        return f"warc/{self.shard}.{self.next:05d}.warc.gz"

    def add(self, row: dict[str, Any]) -> None:
        """Record one finished URL (called by the fetch threads, one at a time): its request/response pair into the
        open WARC file, its index row kept; commit the segment once it holds segment_urls rows."""
        body = row.pop("body", None)
        with self.lock:
            if self.open is None:
                stack = ExitStack()
                tmp = stack.enter_context(atomic_path(self.out / self._warc_rel()))
                f = stack.enter_context(open(tmp, "wb"))
                self.open = (stack, f, WarcShardWriter(f, self.gzip_level))
            _, f, writer = self.open
            recorded = row.get("status") is not None and body is not None  # a response, not cut short
            row["bytes"] = len(body) if recorded and body is not None else None
            if recorded:
                start = f.tell()
                try:
                    row["warc_offset"], row["warc_length"] = writer.write_pair(
                        row["final_url"],
                        row["request_headers"],
                        f"{row['status']} {row['reason']}".strip(),
                        row["response_headers"],
                        body,
                        row["truncated"],
                    )
                    row["warc_file"] = self._warc_rel()
                except ValueError:  # a header warcio cannot encode: the half-written pair is cut off again
                    f.seek(start)
                    f.truncate()
                    self.open = (self.open[0], f, WarcShardWriter(f, self.gzip_level))
                    row.update(error="bad_response", bytes=None)
            self.rows.append({name: row.get(name) for name in PART_SCHEMA.names})
            # Exactly segment_urls per segment, whatever finishes when: what a crash can cost must not depend on
            # timing.
            if len(self.rows) >= self.segment_urls:
                self.commit()

    def commit(self) -> None:
        """Commit the open segment (also one that is not full: the shard's last)."""
        if self.open is not None:
            self.open[0].close()  # the file closed, then renamed into place (and uploaded)
        else:
            with atomic_path(self.out / self._warc_rel()) as tmp:
                tmp.write_bytes(b"")
        seg = f"{self.next:05d}"
        rows = self.rows
        table = pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in PART_SCHEMA})
        write_parquet(table, self.parts_dir / f"{seg}.parquet")
        self.done.add(seg)
        self.next += 1
        self.rows, self.open = [], None

    def finish(self) -> None:
        if self.rows:
            self.commit()

    def abort(self) -> None:
        """Drop the open segment's temporary WARC file: its URLs are fetched again by the next run."""
        if self.open is not None:
            self.open[0].__exit__(*sys.exc_info())
            self.open = None


def fetch_shard(task: ShardTask[FetchConfig, None]) -> Record:
    cfg: FetchConfig = task.config
    (links_path,) = task.inputs
    links = read_parquet(links_path)
    out = Path(task.output)
    segments = Segments(out, task.name, str(task.input_fingerprint), cfg.warc_gzip_level, cfg.segment_urls)
    fetched = set(segments.table().column("url").to_pylist())
    todo = _interleaved([u for u in links.column("url").to_pylist() if u not in fetched])
    started = time.time()
    fetcher = Fetcher(cfg)

    def fetch_and_record(url: str) -> None:
        segments.add(fetcher.fetch(url))  # the body is written by the thread that fetched it, then dropped

    try:
        pending: set[Future] = set()
        queue = iter(todo)
        with ThreadPoolExecutor(cfg.threads, thread_name_prefix=f"fetch-{task.name}") as pool:
            while True:
                while len(pending) < 2 * cfg.threads and (url := next(queue, None)) is not None:
                    pending.add(pool.submit(fetch_and_record, url))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()  # a failed commit (the disk, not a page) or an interrupt stops the task
        segments.finish()
    except BaseException:
        segments.abort()
        raise
    finally:
        fetcher.close()
    results = segments.table()
    # The index: every links column, then the fetch columns, in links order.
    position = {u: i for i, u in enumerate(results.column("url").to_pylist())}
    order = pa.array([position[u] for u in links.column("url").to_pylist()], pa.int64())
    index = links
    for name, typ in FETCH_COLUMNS:
        index = index.append_column(pa.field(name, typ), results.column(name).take(order))
    index_path = out / f"{task.name}.parquet"
    write_parquet(index, index_path)
    errors = [e for e in index.column("error").to_pylist() if e is not None]
    record = finish_shard(
        task,
        [*segments.warc_files(), index_path],
        rows_in=index.num_rows,
        rows_out=index.num_rows - len(errors),
        drops=Counter(errors),
        extra={"fetch_seconds": round(time.time() - started, 3), "resumed_with": len(fetched)},
    )
    storage.remove_tree(segments.parts_dir)  # the index now holds them; the record is written
    return record


def run(cfg: FetchConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    return run_shardwise("fetch", cfg, fetch_shard, runner, overwrite, desc="pages")
