import gzip
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.core.dataset import Dataset, read_parquet, shard_name, write_parquet
from pipeline.core.stage import ShardTask
from pipeline.stages.fetch import FetchConfig, fetch_shard
from pipeline.stages.harvest import LINK_SCHEMA, links_table
from pipeline.text.warc import iter_responses, read_response_at, write_pages_warc
from pipeline.web.replay import ReplayServer, html_benchmark_pages, warc_files_in


def links_shard(tmp_path: Path, urls: list[str]) -> Path:
    t = links_table(
        {u: {"host": "h", "max": 5, "sum": 5, "n": 1, "created": 1, "ids": {"x"}, "subs": {"s"}} for u in urls}
    )
    assert t.schema == LINK_SCHEMA
    p = tmp_path / "links" / f"{shard_name(0)}.parquet"
    write_parquet(t, p)
    return p


class Site(BaseHTTPRequestHandler):
    """A quiet loopback handler; `_send` writes a whole response (a client that hung up is not an error)."""

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


class Web(Site):
    """A live loopback site for what replay cannot show: flaky 503s, big bodies, gzip on the wire."""

    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802
        Web.hits[self.path] = Web.hits.get(self.path, 0) + 1
        if self.path == "/flaky" and Web.hits[self.path] == 1:
            return self._send(503, b"busy", "text/html")
        if self.path == "/big":
            return self._send(200, b"<html><body>" + b"x" * 200_000 + b"</body></html>", "text/html")
        if self.path == "/gz":
            body = gzip.compress(b"<html><body><p>compressed page</p></body></html>")
            return self._send(200, body, "text/html; charset=utf-8", [("Content-Encoding", "gzip")])
        if self.path == "/redirect":
            return self._send(301, b"", "text/html", [("Location", "/flaky")])
        return self._send(200, b"<html><body><p>hello</p></body></html>", "text/html")


@pytest.fixture()
def live_site():
    Web.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Web)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


# The tests' sites live on loopback, which the fetcher refuses unless allowed; no politeness delay against them.
LOOPBACK = {"allow_networks": ["127.0.0.1/32"], "min_host_delay_s": 0.0}


def run_shard(tmp_path, urls, **cfg):
    p = links_shard(tmp_path, urls)
    out = tmp_path / "fetched"
    config = FetchConfig(input=str(p.parent), output=str(out), **(LOOPBACK | {"retries": 2} | cfg))
    rec = fetch_shard(ShardTask(shard_name(0), [str(p)], str(out), config, None))
    index = {r["url"]: r for r in read_parquet(out / f"{shard_name(0)}.parquet").to_pylist()}
    return rec, index, out


def test_retries_redirects_truncation_and_wire_encoding(tmp_path, live_site):
    urls = [f"{live_site}/{p}" for p in ("flaky", "big", "gz", "redirect", "plain")]
    rec, index, out = run_shard(tmp_path, urls, max_bytes=50_000)
    assert index[f"{live_site}/flaky"]["status"] == 200 and Web.hits["/flaky"] >= 2  # 503 retried
    assert index[f"{live_site}/redirect"]["final_url"] == f"{live_site}/flaky"
    big = index[f"{live_site}/big"]
    assert big["bytes"] == 50_000
    gz = read_response_at(out / index[f"{live_site}/gz"]["warc_file"], index[f"{live_site}/gz"]["warc_offset"])
    assert gz.body == b"<html><body><p>compressed page</p></body></html>"  # stored decoded
    assert ("X-Crawler-Content-Encoding", "gzip") in gz.headers  # and said so, for readers
    assert rec["rows_in"] == 5 and rec["rows_out"] == 5
    # Ordinary WARC: warcio reads every record, request/response pairs, truncation flagged.
    with open(out / "warc" / f"{shard_name(0)}.00000.warc.gz", "rb") as f:
        records = list((r.rec_type, r.rec_headers.get_header("WARC-Truncated")) for r in ArchiveIterator(f))
    assert [t for t, _ in records] == ["request", "response"] * 5
    assert ("response", "length") in records


def test_replay_of_the_demo_world(tmp_path, demo_world, replay):
    world = json.loads((demo_world / "WORLD.json").read_text())
    pages = {r.url: r for r in iter_responses(demo_world / "web" / "pages.warc.gz")}
    ok = [u for u, r in pages.items() if r.status == 200 and r.headers[0][1].startswith("text/html")][:5]
    dead = "http://www.nowhere-at-all.com/missing.html"
    err = [u for u, r in pages.items() if r.status == 500][:1]
    rec, index, out = run_shard(tmp_path, ok + [dead] + err, proxy=replay, retries=1)
    for u in ok:
        assert index[u]["error"] is None
        got = read_response_at(out / index[u]["warc_file"], index[u]["warc_offset"])
        assert got.body == pages[u].body  # byte-identical round trip through replay and WARC
    assert index[dead]["error"] == "http_404"
    assert index[err[0]]["error"] == "http_500"
    assert rec["drops"] == {"http_404": 1, "http_500": 1}
    assert world["planted"]["server_errors"] == 2


def test_real_pages_under_their_real_urls_through_replay(tmp_path, shared):
    """The real fetch code path, https and certificate checks included, against real captures replayed offline."""
    pages = dict(html_benchmark_pages(shared / "html-benchmark"))
    assert len(pages) >= 170
    web = tmp_path / "web" / "html-benchmark.warc.gz"
    write_pages_warc(pages.items(), web)
    captures = warc_files_in([shared / "warc"])
    expected: dict[str, bytes] = {}
    for w in sorted([web, *captures]):  # a URL captured twice (allenai.org/ is): the first capture is served
        for r in iter_responses(w):
            if r.status == 200:
                expected.setdefault(r.url, r.body)
    assert all(expected[u] == body for u, body in pages.items())
    server = ReplayServer([web, *captures])
    with server as proxy:
        rec, index, out = run_shard(tmp_path, sorted(expected), proxy=proxy, ca_bundle=server.ca_path, retries=0)
    assert {u: r["error"] for u, r in index.items() if r["error"]} == {}
    assert sum(u.startswith("https://") for u in expected) > 150
    for u, body in expected.items():
        got = read_response_at(out / index[u]["warc_file"], index[u]["warc_offset"])
        assert got.body == body and got.url == u  # byte-identical round trip
    # What the fetcher wrote is ordinary WARC/1.1 for other tools too.
    from fastwarc.warc import ArchiveIterator as FastIterator
    from fastwarc.warc import WarcRecordType

    with open(out / index[sorted(expected)[0]]["warc_file"], "rb") as f:
        kinds = [r.record_type for r in FastIterator(f, parse_http=True)]
    assert kinds.count(WarcRecordType.response) == kinds.count(WarcRecordType.request) > 0


def test_https_through_replay_needs_its_ca(tmp_path, shared):
    captures = warc_files_in([shared / "warc"])
    url = next(r.url for w in captures for r in iter_responses(w) if r.status == 200)
    with ReplayServer(captures) as proxy:  # no ca_bundle: the replay's certificate is not trusted
        _, index, _ = run_shard(tmp_path, [url], proxy=proxy, retries=0)
    assert index[url]["error"] == "tls_error"


def test_connection_refused_is_recorded_not_raised(tmp_path):
    rec, index, _ = run_shard(tmp_path, ["http://127.0.0.1:9/nothing-listens-here"], retries=0)
    assert index["http://127.0.0.1:9/nothing-listens-here"]["error"] == "connection_error"
    assert rec["rows_out"] == 0 and rec["drops"] == {"connection_error": 1}


def test_index_schema_keeps_links_columns(tmp_path, live_site):
    _, index, out = run_shard(tmp_path, [f"{live_site}/plain"])
    t = read_parquet(out / f"{shard_name(0)}.parquet")
    assert t.schema.names[: len(LINK_SCHEMA)] == LINK_SCHEMA.names
    assert t.schema.field("warc_offset").type == pa.int64()
    assert Dataset(out).done_record(shard_name(0)) is not None


class Faults(Site):
    """Everything the web throws at a crawler, one path each."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        path, port = self.path, self.server.server_address[1]
        Faults.arrivals.append((path, time.monotonic()))
        if path == "/robots.txt":
            return self._send(200, b"User-agent: *\nDisallow: /private\n", "text/plain")
        if path == "/drip":  # headers at once, then a byte every 0.5 s, forever: only a deadline ends it
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(200):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.5)
            return
        if path == "/slow-headers":  # a header line every 0.5 s: each recv is within the read timeout
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(200):
                try:
                    self.wfile.write(f"X-Slow-{i}: y\r\n".encode())
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.5)
            return
        if path == "/hang":  # nothing at all after the request: the read timeout
            time.sleep(5)
            return
        if path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return self._send(code, b"<html>status</html>", "text/html")
        if path == "/429-short":
            Faults.hits[path] = Faults.hits.get(path, 0) + 1
            if Faults.hits[path] == 1:
                return self._send(429, b"slow down", "text/html", [("Retry-After", "1")])
            return self._send(200, b"<html><body>after waiting</body></html>", "text/html")
        if path == "/429-long":
            return self._send(429, b"slow down", "text/html", [("Retry-After", "3600")])
        if path == "/loop":
            return self._send(302, b"", "text/html", [("Location", "/loop2")])
        if path == "/loop2":
            return self._send(302, b"", "text/html", [("Location", "/loop")])
        if path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            return self._send(302, b"", "text/html", [("Location", f"/chain/{n + 1}")])
        if path == "/to-private":  # loopback is allowed for the test, 127.0.0.2 is not
            return self._send(302, b"", "text/html", [("Location", f"http://127.0.0.2:{port}/ok")])
        if path == "/to-metadata":
            return self._send(302, b"", "text/html", [("Location", "http://169.254.169.254/latest/meta-data/")])
        if path == "/huge":
            return self._send(200, b"<html><body>" + b"y" * 3_000_000 + b"</body></html>", "text/html")
        if path == "/bomb":
            return self._send(200, BOMB, "text/html", [("Content-Encoding", "gzip")])
        if path == "/latin1-meta":
            body = '<html><head><meta charset="iso-8859-1"></head><body>caf\u00e9</body></html>'.encode("latin-1")
            return self._send(200, body, "text/html")
        if path == "/latin1-none":
            body = LATIN1_PAGE.encode("latin-1")
            return self._send(200, body, "text/html")
        if path == "/wrong-charset":  # says utf-8, is latin-1
            return self._send(200, LATIN1_PAGE.encode("latin-1"), "text/html; charset=utf-8")
        if path == "/pdf":
            return self._send(200, b"%PDF-1.4 ...", "application/pdf")
        if path == "/private/page":
            return self._send(200, b"<html>secret</html>", "text/html")
        if path == "/bad-headers":  # parsed as far as it goes: no Content-Type survives, so not_html
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type text/html no colon\r\n\x00\x01garbage\r\n\r\n<html>x</html>"
            )
            self.close_connection = True
            return
        if path == "/many-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n")
            self.close_connection = True
            return
        if path == "/bad-status":
            self.wfile.write(b"HTTP/1.1 TWO HUNDRED\r\n\r\n")
            self.close_connection = True
            return
        return self._send(200, b"<html><body><p>ok</p></body></html>", "text/html; charset=utf-8")

    hits: dict[str, int] = {}


LATIN1_PAGE = (
    "<html><body>" + "Les enfants jouaient dans le jardin pendant que leurs parents pr\u00e9paraient le d\u00eener. "
    "\u00c0 la fin de la soir\u00e9e, tout le monde \u00e9tait fatigu\u00e9 mais heureux. " * 3 + "</body></html>"
)
BOMB = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # ~50 KB on the wire, 50 MB inflated


@pytest.fixture()
def fault_site():
    Faults.hits, Faults.arrivals = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Faults)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


EXPECTED = {
    "/drip": "deadline",
    "/slow-headers": "deadline",
    "/hang": "read_timeout",
    "/reset": "connection_reset",
    "/status/404": "http_404",
    "/status/410": "http_410",
    "/status/500": "http_500",
    "/status/503": "http_503",
    "/429-short": None,
    "/429-long": "http_429",
    "/loop": "redirect_loop",
    "/chain/0": "too_many_redirects",
    "/to-private": "blocked_address",
    "/to-metadata": "blocked_address",
    "/huge": None,
    "/bomb": "decompression_bomb",
    "/latin1-meta": None,
    "/latin1-none": None,
    "/wrong-charset": None,
    "/pdf": "not_html",
    "/private/page": "robots_disallowed",
    "/bad-headers": "not_html",
    "/many-headers": "bad_response",
    "/bad-status": "bad_response",
    "/fine": None,
}


def test_every_fault_ends_classified_within_its_deadline(tmp_path, fault_site):
    urls = [fault_site + p for p in EXPECTED]
    started = time.monotonic()
    rec, index, out = run_shard(
        tmp_path, urls, retries=1, read_timeout_s=1.0, deadline_s=3.0, max_bytes=1_000_000, threads=len(urls)
    )
    took = time.monotonic() - started
    got = {u[len(fault_site) :]: r["error"] for u, r in index.items()}
    assert got == EXPECTED
    assert took < 15  # every URL in parallel; none held past its deadline (3 s) plus retries and backoff
    huge = index[fault_site + "/huge"]
    assert huge["truncated"] and huge["bytes"] == 1_000_000
    assert index[fault_site + "/latin1-meta"]["charset"] == "iso-8859-1"
    for path in ("/latin1-none", "/wrong-charset"):  # none declared, or a wrong one: detected, and it decodes
        row = index[fault_site + path]
        stored = read_response_at(out / row["warc_file"], row["warc_offset"]).body
        assert stored.decode(row["charset"]) == LATIN1_PAGE
    assert index[fault_site + "/fine"]["charset"] == "utf-8"
    assert index[fault_site + "/chain/0"]["redirects"] == 6
    assert index[fault_site + "/pdf"]["warc_file"] is not None and index[fault_site + "/pdf"]["bytes"] == 0
    assert Faults.hits["/429-short"] == 2  # retried after its Retry-After
    assert rec["rows_out"] == sum(1 for e in EXPECTED.values() if e is None)
    assert sum(rec["drops"].values()) + rec["rows_out"] == rec["rows_in"] == len(EXPECTED)


def test_connect_timeout(tmp_path):
    """A server whose accept queue is full: the SYN goes unanswered, only the connect timeout ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        queued.append(c)
    url = f"http://127.0.0.1:{port}/page"
    started = time.monotonic()
    try:
        _, index, _ = run_shard(tmp_path, [url], retries=0, connect_timeout_s=0.5, obey_robots=False)
    finally:
        for c in [*queued, server]:
            c.close()
    assert index[url]["error"] == "connect_timeout" and time.monotonic() - started < 5


def test_names_that_resolve_to_private_addresses_are_refused(tmp_path, fault_site):
    port = fault_site.rsplit(":", 1)[1]
    # "localhost" resolves to loopback: refused by default, like any private address, even on the first hop.
    _, index, _ = run_shard(tmp_path, [f"http://localhost:{port}/fine"], allow_networks=[])
    assert index[f"http://localhost:{port}/fine"]["error"] == "blocked_address"


def test_robots_can_be_ignored_with_a_warning(tmp_path, fault_site):
    with pytest.warns(UserWarning, match="robots.txt is ignored"):
        _, index, _ = run_shard(tmp_path, [fault_site + "/private/page"], obey_robots=False)
    assert index[fault_site + "/private/page"]["error"] is None


def test_politeness_spaces_requests_to_one_host(tmp_path, fault_site):
    urls = [f"{fault_site}/fine?n={i}" for i in range(5)]
    _, index, _ = run_shard(tmp_path, urls, min_host_delay_s=0.4, max_per_host=1, threads=5)
    assert all(r["error"] is None for r in index.values())
    starts = sorted(t for path, t in Faults.arrivals if path.startswith("/fine"))
    assert len(starts) == 5 and min(b - a for a, b in zip(starts, starts[1:])) >= 0.38  # 5 threads, one at a time
    assert [p for p, _ in Faults.arrivals].count("/robots.txt") == 1  # fetched once per host, then cached


def test_global_rate_limit(tmp_path, fault_site):
    urls = [f"{fault_site}/fine?n={i}" for i in range(6)]
    _, index, _ = run_shard(tmp_path, urls, max_requests_per_s=5, max_per_host=6, threads=6)
    assert all(r["error"] is None for r in index.values())
    starts = sorted(t for path, t in Faults.arrivals if path.startswith("/fine"))
    assert starts[-1] - starts[0] >= 5 * 0.2 * 0.95  # six starts at most 5 a second


def test_a_killed_task_resumes_from_its_committed_segments(tmp_path, fault_site):
    urls = [f"{fault_site}/fine?n={i}" for i in range(7)]
    p = links_shard(tmp_path, urls)
    out = tmp_path / "fetched"
    cfg = FetchConfig(input=str(p.parent), output=str(out), segment_urls=3, **LOOPBACK)
    task = ShardTask(shard_name(0), [str(p)], str(out), cfg, None, "v1")
    # A first run that dies after two committed segments (6 URLs), with a half-written third WARC file left over.
    from pipeline.stages import fetch as fetch_module

    real_commit = fetch_module.Segments.commit
    calls = []

    def dying_commit(self, rows):
        if len(calls) == 2:
            (out / "warc" / f"{shard_name(0)}.{self.next:05d}.warc.gz").write_bytes(b"half a record")
            raise KeyboardInterrupt("killed")
        calls.append(len(rows))
        real_commit(self, rows)

    fetch_module.Segments.commit = dying_commit
    try:
        with pytest.raises(KeyboardInterrupt):
            fetch_shard(task)
    finally:
        fetch_module.Segments.commit = real_commit
    assert calls == [3, 3] and Dataset(out).done_record(shard_name(0)) is None
    rec = fetch_shard(task)
    assert rec["resumed_with"] == 6 and rec["rows_out"] == 7
    index = read_parquet(out / f"{shard_name(0)}.parquet").to_pylist()
    assert [r["url"] for r in index] == urls  # links order, each once
    warcs = sorted((out / "warc").glob("*.warc.gz"))
    assert [w.name.split(".")[1] for w in warcs] == ["00000", "00001", "00002"]
    responses = [r for w in warcs for r in iter_responses(w)]
    assert sorted(r.url for r in responses) == sorted(urls)  # nothing lost, nothing twice
    for r in index:
        assert read_response_at(out / r["warc_file"], r["warc_offset"]).url == r["url"]
