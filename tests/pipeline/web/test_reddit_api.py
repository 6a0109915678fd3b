"""The live-API harvester against a loopback server that behaves like Reddit: OAuth, pagination, rate-limit headers,
429 with Retry-After, a 5xx, an expired token."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.stages.harvest import HarvestConfig, read_links, run
from pipeline.web.reddit_api import RedditAPIConfig, RedditClient, harvest_to_files

PAGES = 3


def post(i: int) -> dict:
    return {
        "id": f"p{i}",
        "url": f"http://news{i % 4}.example.com/story/{i}",
        "score": i % 7,
        "is_self": i % 10 == 0,
        "over_18": False,
        "created_utc": 1400000000.0 + i,
        "subreddit": "science",
        "title": f"t{i}",
    }


class FakeReddit(BaseHTTPRequestHandler):
    log: list = []
    script: dict = {}

    def log_message(self, *a):
        pass

    def _json(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - the token endpoint
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization", "")
        ok = auth == "Basic " + base64.b64encode(b"cid:secret").decode()
        FakeReddit.log.append(("token", ok))
        FakeReddit.script["tokens"] = FakeReddit.script.get("tokens", 0) + 1
        if not ok:
            return self._json(401, {"error": 401})
        self._json(
            200, {"access_token": f"tok{FakeReddit.script['tokens']}", "token_type": "bearer", "expires_in": 3600}
        )

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path)
        q = parse_qs(parts.query)
        FakeReddit.log.append(
            (
                "get",
                parts.path,
                q.get("after", [None])[0],
                self.headers.get("Authorization"),
                self.headers.get("User-Agent"),
            )
        )
        n = FakeReddit.script["n"] = FakeReddit.script.get("n", 0) + 1
        if n == 2:
            return self._json(429, {"error": 429}, {"Retry-After": "7"})
        if n == 3:
            return self._json(503, {"error": 503})
        if n == 4 and FakeReddit.script.get("oauth"):
            return self._json(401, {"error": "expired"})
        after = q.get("after", [None])[0]
        page = 0 if after is None else int(after[1:])
        children = [{"kind": "t3", "data": post(page * 100 + i)} for i in range(100)]
        nxt = f"p{page + 1}" if page + 1 < PAGES else None
        headers = {
            "X-Ratelimit-Remaining": "0" if page == 1 else "50",
            "X-Ratelimit-Reset": "30",
            "X-Ratelimit-Used": "1",
        }
        self._json(200, {"kind": "Listing", "data": {"after": nxt, "children": children}}, headers)


@pytest.fixture()
def fake_reddit():
    FakeReddit.log, FakeReddit.script = [], {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeReddit)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class FakeClock:
    """Sleeps advance the clock instead of the test's wall time; every wait is recorded."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def sleep(self, s):
        self.sleeps.append(round(s, 3))
        self.now += s

    def __call__(self):
        return self.now


def client_for(url: str, clock: FakeClock, oauth: bool) -> RedditClient:
    cfg = RedditAPIConfig(
        base_url=url,
        oauth_base_url=url,
        auth_url=f"{url}/api/v1/access_token",
        client_id="cid" if oauth else None,
        client_secret="secret" if oauth else None,
        min_interval_s=1.0,
        backoff_s=2.0,
    )
    return RedditClient(cfg, sleep=clock.sleep, clock=clock)


@pytest.mark.parametrize("oauth", [False, True])
def test_pagination_rate_limits_and_errors(fake_reddit, oauth, tmp_path):
    FakeReddit.script["oauth"] = oauth
    clock = FakeClock()
    client = client_for(fake_reddit, clock, oauth)
    [(path, n)] = harvest_to_files(client, tmp_path / "dumps", ["science"], "top", "all", max_pages=10)
    assert n == PAGES * 100
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in recs] == [f"p{i}" for i in range(PAGES * 100)]
    gets = [e for e in FakeReddit.log if e[0] == "get"]
    assert all(e[4].startswith("python:owt-pipeline:") for e in gets)  # a descriptive User-Agent
    assert [e[2] for e in gets if e[2]][-2:] == ["p1", "p2"]  # followed `after`
    assert 7.0 in clock.sleeps  # 429: waited Retry-After
    assert 4.0 in clock.sleeps  # 503 on the call's second try: backed off 2 s x 2
    assert any(s >= 29 for s in clock.sleeps)  # X-Ratelimit-Remaining 0: waited for the reset
    assert all(s >= 0 for s in clock.sleeps)
    if oauth:
        assert gets[0][1] == "/r/science/top" and gets[0][3] == "bearer tok1"
        assert FakeReddit.script["tokens"] == 2  # the 401 made it authenticate again
        assert gets[-1][3] == "bearer tok2"
    else:
        assert gets[0][1] == "/r/science/top.json" and gets[0][3] is None
    # The files are dumps: harvest reads them with its usual rules.
    m = run(HarvestConfig(input=[str(tmp_path / "dumps")], output=str(tmp_path / "links"), num_shards=2), LocalRunner())
    assert m["rows_in"] == PAGES * 100 and m["drops"]["self_post"] == 30
    assert set(read_links(tmp_path / "links").column("domain").to_pylist()) <= {
        f"news{i}.example.com" for i in range(4)
    }


def test_bad_credentials_are_a_clear_error(fake_reddit, tmp_path):
    clock = FakeClock()
    cfg = RedditAPIConfig(
        base_url=fake_reddit,
        oauth_base_url=fake_reddit,
        auth_url=f"{fake_reddit}/api/v1/access_token",
        client_id="cid",
        client_secret="wrong",
    )
    with pytest.raises(PipelineError, match="HTTP 401; check REDDIT_CLIENT_ID"):
        harvest_to_files(RedditClient(cfg, sleep=clock.sleep, clock=clock), tmp_path, ["science"])
    assert not list(tmp_path.glob("*.ndjson"))  # nothing half-written left looking like a dump
