import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from warcio.archiveiterator import ArchiveIterator

from pipeline.dataset import Dataset, read_parquet, shard_name, write_parquet
from pipeline.fetch import FetchConfig, fetch_shard
from pipeline.harvest import LINK_SCHEMA, links_table
from pipeline.replay import ReplayServer, warc_files_in
from pipeline.stage import ShardTask
from pipeline.warc import iter_responses, read_response_at


def links_shard(tmp_path: Path, urls: list[str]) -> Path:
    t = links_table(
        {u: {"host": "h", "max": 5, "sum": 5, "n": 1, "created": 1, "ids": {"x"}, "subs": {"s"}} for u in urls}
    )
    assert t.schema == LINK_SCHEMA
    p = tmp_path / "links" / f"{shard_name(0)}.parquet"
    write_parquet(t, p)
    return p


class Web(BaseHTTPRequestHandler):
    """A live loopback site for what replay cannot show: flaky 503s, big bodies, gzip on the wire."""

    hits: dict[str, int] = {}

    def log_message(self, *a):
        pass

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

    def _send(self, status, body, ctype, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def live_site():
    Web.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Web)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def run_shard(tmp_path, urls, **cfg):
    p = links_shard(tmp_path, urls)
    out = tmp_path / "fetched"
    config = FetchConfig(input=str(p.parent), output=str(out), **({"retries": 2} | cfg))
    rec = fetch_shard(ShardTask(shard_name(0), [str(p)], str(out), config))
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
    assert b"compressed page" in gz.body  # stored as sent (gzip), decoded on read
    assert rec["rows_in"] == 5 and rec["rows_out"] == 5
    # Ordinary WARC: warcio reads every record, request/response pairs, truncation flagged.
    with open(out / "warc" / f"{shard_name(0)}.warc.gz", "rb") as f:
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


def test_replay_serves_real_warc_captures(shared):
    warcs = warc_files_in([shared / "warc"])
    responses = [r for w in warcs for r in iter_responses(w) if r.status == 200]
    assert len(responses) >= 20
    with ReplayServer(warcs) as proxy:
        for r in responses[:5]:
            got = (
                requests.get(r.url, proxies={"http": proxy, "https": proxy}, timeout=5)
                if r.url.startswith("http://")
                else None
            )
            if got is not None:
                assert got.status_code == 200 and got.content == r.body


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
