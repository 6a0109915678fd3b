"""Harvest from the live Reddit API: listing endpoints -> Pushshift-format NDJSON files that `harvest` reads as dumps.

    python -m pipeline reddit-api OUT_DIR --subreddit worldnews --subreddit science [--listing top --time all]
    python -m pipeline harvest --set 'input=["OUT_DIR"]' ...

A listing's items (`data.children[].data`) are the same submission objects the Pushshift dumps hold, so every
harvest rule applies unchanged. With REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET in the environment the client uses
OAuth client credentials against oauth.reddit.com; without, the public JSON endpoints. Credentials are never
written to any output. Rate limits: Reddit's X-Ratelimit-Remaining/-Reset headers are obeyed (the client waits for
the window to reset when it runs out), 429 waits for Retry-After, 5xx and connection errors back off and retry.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

from pipeline import __version__
from pipeline.core.dataset import atomic_path
from pipeline.core.errors import PipelineError

USER_AGENT = f"python:owt-pipeline:{__version__} (open WebText replication; link harvesting)"


@dataclass
class RedditAPIConfig:
    base_url: str = "https://www.reddit.com"  # public JSON endpoints
    oauth_base_url: str = "https://oauth.reddit.com"
    auth_url: str = "https://www.reddit.com/api/v1/access_token"
    client_id: str | None = field(default_factory=lambda: os.environ.get("REDDIT_CLIENT_ID"))
    client_secret: str | None = field(default_factory=lambda: os.environ.get("REDDIT_CLIENT_SECRET"))
    user_agent: str = USER_AGENT
    min_interval_s: float = 1.0  # between requests, whatever the headers allow
    max_retries: int = 5
    backoff_s: float = 2.0
    timeout_s: float = 30.0


class RedditClient:
    def __init__(
        self,
        cfg: RedditAPIConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.sleep = sleep
        self.clock = clock
        self.session = requests.Session()
        self.session.headers["User-Agent"] = cfg.user_agent
        self.token: str | None = None
        self.token_expires = 0.0
        self.last_request = -1e9
        self.wait_until = 0.0  # set when the rate-limit window is used up
        self.requests = 0

    @property
    def oauth(self) -> bool:
        return bool(self.cfg.client_id and self.cfg.client_secret)

    def _authenticate(self) -> None:
        r = self.session.post(
            self.cfg.auth_url,
            auth=(self.cfg.client_id or "", self.cfg.client_secret or ""),
            data={"grant_type": "client_credentials"},
            timeout=self.cfg.timeout_s,
        )
        if r.status_code != 200:
            raise PipelineError(
                f"reddit OAuth at {self.cfg.auth_url}: HTTP {r.status_code}; check REDDIT_CLIENT_ID "
                "and REDDIT_CLIENT_SECRET"
            )
        body = r.json()
        if "access_token" not in body:
            raise PipelineError(f"reddit OAuth at {self.cfg.auth_url}: no access_token in the answer ({body})")
        self.token = body["access_token"]
        self.token_expires = self.clock() + float(body.get("expires_in", 3600)) - 60

    def _pace(self) -> None:
        now = self.clock()
        wait = max(self.wait_until - now, self.last_request + self.cfg.min_interval_s - now)
        if wait > 0:
            self.sleep(wait)
        self.last_request = self.clock()

    def _note_limits(self, r: requests.Response) -> None:
        remaining, reset = r.headers.get("X-Ratelimit-Remaining"), r.headers.get("X-Ratelimit-Reset")
        try:
            if remaining is not None and reset is not None and float(remaining) < 1:
                self.wait_until = self.clock() + float(reset)
        except ValueError:
            pass

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET a JSON listing path (e.g. /r/science/top), with pacing, retries and token refresh."""
        for attempt in range(self.cfg.max_retries + 1):
            headers = {}
            if self.oauth:
                if self.token is None or self.clock() >= self.token_expires:
                    self._authenticate()
                headers["Authorization"] = f"bearer {self.token}"
                url = f"{self.cfg.oauth_base_url}{path}"
            else:
                url = f"{self.cfg.base_url}{path}.json"
            self._pace()
            self.requests += 1
            try:
                r = self.session.get(url, params=params, headers=headers, timeout=self.cfg.timeout_s)
            except requests.RequestException as e:
                if attempt == self.cfg.max_retries:
                    raise PipelineError(f"reddit API {url}: {e.__class__.__name__} after {attempt + 1} tries") from None
                self.sleep(self.cfg.backoff_s * 2**attempt)
                continue
            self._note_limits(r)
            if r.status_code == 200:
                return r.json()
            if r.status_code == 429:
                retry_after = r.headers.get("Retry-After") or r.headers.get("X-Ratelimit-Reset") or self.cfg.backoff_s
                self.wait_until = self.clock() + float(retry_after)
                continue
            if r.status_code == 401 and self.oauth:
                self.token = None  # expired or revoked: authenticate again
                continue
            if r.status_code >= 500:
                self.sleep(self.cfg.backoff_s * 2**attempt)
                continue
            raise PipelineError(f"reddit API {url}: HTTP {r.status_code} (not retried)")
        raise PipelineError(f"reddit API {path}: gave up after {self.cfg.max_retries + 1} tries")

    def listing(
        self, subreddit: str, listing: str = "top", time_filter: str = "all", max_pages: int = 10
    ) -> Iterator[dict[str, Any]]:
        """Submissions of one subreddit listing, following `after` until it ends or max_pages."""
        after = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"limit": 100, "raw_json": 1}
            if listing in ("top", "controversial"):
                params["t"] = time_filter
            if after:
                params["after"] = after
            page = self.get(f"/r/{subreddit}/{listing}", params)
            data = page.get("data") or {}
            for child in data.get("children") or []:
                if child.get("kind") == "t3" and isinstance(child.get("data"), dict):
                    yield child["data"]
            after = data.get("after")
            if not after:
                return


def harvest_to_files(
    client: RedditClient,
    out_dir: str | Path,
    subreddits: list[str],
    listing: str = "top",
    time_filter: str = "all",
    max_pages: int = 10,
) -> list[tuple[Path, int]]:
    """One NDJSON file per subreddit, written atomically: a crash leaves no half file that looks like a dump."""
    written = []
    for sub in subreddits:
        path = Path(out_dir) / f"reddit-api_{sub}_{listing}_{time_filter}.ndjson"
        n = 0
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            for rec in client.listing(sub, listing, time_filter, max_pages):
                f.write(orjson.dumps(rec) + b"\n")
                n += 1
        written.append((path, n))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline reddit-api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", help="directory for the NDJSON files (then: harvest --set 'input=[\"OUT\"]')")
    ap.add_argument("--subreddit", action="append", required=True, help="repeatable")
    ap.add_argument("--listing", default="top", choices=["top", "new", "hot", "controversial", "rising"])
    ap.add_argument(
        "--time", dest="time_filter", default="all", choices=["hour", "day", "week", "month", "year", "all"]
    )
    ap.add_argument("--max-pages", type=int, default=10, help="pages of 100 per subreddit (Reddit stops near 10)")
    ap.add_argument("--base-url", default=None, help="override the API host (tests, proxies)")
    ap.add_argument("--min-interval", type=float, default=1.0, help="seconds between requests, at least")
    args = ap.parse_args(argv)
    cfg = RedditAPIConfig(min_interval_s=args.min_interval)
    if args.base_url:
        cfg.base_url = cfg.oauth_base_url = args.base_url.rstrip("/")
        cfg.auth_url = f"{cfg.base_url}/api/v1/access_token"
    client = RedditClient(cfg)
    for path, n in harvest_to_files(client, args.out, args.subreddit, args.listing, args.time_filter, args.max_pages):
        print(f"reddit-api: {n:,} submissions -> {path}")
    print(f"reddit-api: {client.requests} requests ({'OAuth' if client.oauth else 'public endpoints'})")
    return 0
