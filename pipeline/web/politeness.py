"""Being a good citizen of the web, per fetch task: robots.txt, per-host concurrency and spacing, a global rate, and
a hard deadline per URL.

These are per task (one links shard); a Ray cluster runs many tasks at once, so cluster-wide figures are these
times the number of concurrent fetch tasks. Shards are hash-partitioned by URL, so one host's links spread over
all shards: keep `max_per_host` at 1-2 and `min_host_delay_s` at >= 1 s for a polite full-scale crawl.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from protego import Protego

ROBOTS_MAX_BYTES = 512_000  # RFC 9309 asks crawlers to parse at least 500 KiB


class Robots:
    """robots.txt fetched once per scheme+host and cached for the task. RFC 9309: a 4xx means no rules (fetch
    anything); a 5xx or an unreachable server means assume complete disallow."""

    def __init__(
        self, get: Callable[[str], tuple[int | None, bytes, str]], user_agent: str, max_crawl_delay_s: float = 30.0
    ):
        self.get, self.user_agent = get, user_agent  # get(url) -> (status or None, body, error class)
        # A Crawl-delay of a day would park every URL of its host for the whole task: longer ones are cut to this.
        self.max_crawl_delay_s = max_crawl_delay_s
        # origin -> parsed rules, "allow", or why nothing may be fetched: the robots fetch's own error (a dead
        # host is reported as what it is, e.g. dns_error) or robots_unreachable for a 5xx.
        self.rules: dict[str, Protego | str] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()

    def _origin_rules(self, origin: str) -> Protego | str:
        with self.lock:
            lock = self.locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch per origin; other threads for the same host wait for it
            if origin not in self.rules:
                status, body, error = self.get(origin + "/robots.txt")
                if status is not None and 200 <= status < 300:
                    text = body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace")
                    self.rules[origin] = Protego.parse(text)
                elif status is not None and 300 <= status < 500:
                    # A 3xx is what is left after too many redirects: RFC 9309 2.3.1.2 lets that count as
                    # unavailable, like a 4xx.
                    self.rules[origin] = "allow"
                else:
                    self.rules[origin] = error or "robots_unreachable"
            return self.rules[origin]

    def verdict(self, url: str) -> tuple[str | None, float]:
        """(None or the reason not to fetch, the crawl delay it asks for in seconds)."""
        parts = urlsplit(url)
        rules = self._origin_rules(f"{parts.scheme}://{parts.netloc}")
        if rules == "allow":
            return None, 0.0
        if isinstance(rules, str):
            return rules, 0.0
        delay = min(float(rules.crawl_delay(self.user_agent) or 0.0), self.max_crawl_delay_s)
        return (None if rules.can_fetch(url, self.user_agent) else "robots_disallowed"), delay


class HostGate:
    """At most `max_per_host` requests in flight per host, started at least `min_delay_s` apart. One condition per
    host, so a release wakes only the threads waiting for that host."""

    def __init__(self, max_per_host: int, min_delay_s: float):
        self.max_per_host, self.min_delay_s = max_per_host, min_delay_s
        self.lock = threading.Lock()
        self.hosts: dict[str, list] = {}  # host -> [condition, requests in flight, earliest next start, waiters]

    def acquire(self, host: str, delay_s: float = 0.0, spaced: bool = True) -> None:
        """Wait for a turn at `host`; `spaced=False` (robots.txt) waits for a slot but not for the spacing, and
        does not delay the next request."""
        with self.lock:
            state = self.hosts.setdefault(host, [threading.Condition(self.lock), 0, 0.0, 0])
            cond = state[0]
            state[3] += 1
            while True:
                now = time.monotonic()
                wait = state[2] - now
                if state[1] < self.max_per_host and (wait <= 0 or not spaced):
                    state[1] += 1
                    if spaced:
                        state[2] = now + max(self.min_delay_s, delay_s)
                    state[3] -= 1
                    return
                cond.wait(timeout=wait if wait > 0 and spaced else None)

    def release(self, host: str) -> None:
        with self.lock:
            state = self.hosts[host]
            state[1] -= 1
            if state[3]:
                state[0].notify()
            elif not state[1] and state[2] <= time.monotonic():
                del self.hosts[host]  # idle and past its spacing: forget it, a task sees many hosts


class RateLimiter:
    """At most `per_s` request starts per second across the task's threads (None: unlimited)."""

    def __init__(self, per_s: float | None):
        self.interval = 1.0 / per_s if per_s else 0.0
        self.lock = threading.Lock()
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            time.sleep(start - now)


class Deadlines:
    """A hard deadline per URL. Timeouts bound each connect and each recv, not a server that drips a byte a second
    or redirects slowly forever; a watchdog thread shuts the sockets of a request that has run out of time, which
    makes its blocked read fail at once."""

    def __init__(self, tick_s: float = 0.1):
        self.tick_s = tick_s
        self.lock = threading.Lock()
        self.deadline: dict[int, float] = {}  # thread id -> monotonic deadline of its current URL
        self.expired: set[int] = set()
        self.sockets: dict[int, list[socket.socket]] = {}  # every socket a thread opened (its pool's too)
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def close(self) -> None:
        self.stopped.set()

    def start(self, seconds: float) -> bool:
        """Start this thread's clock unless it is running; True if this call started it."""
        me = threading.get_ident()
        with self.lock:
            if me in self.deadline:
                return False
            self.deadline[me] = time.monotonic() + seconds
            self.expired.discard(me)
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch, name="fetch-deadlines", daemon=True)
                self.thread.start()
            return True

    def end(self) -> bool:
        """Forget this thread's deadline; True if it had expired (even if the watchdog has not seen it yet)."""
        me = threading.get_ident()
        with self.lock:
            deadline = self.deadline.pop(me, None)
            was = me in self.expired or (deadline is not None and deadline <= time.monotonic())
            self.expired.discard(me)
            return was

    def remaining(self) -> float | None:
        """Seconds left on this thread's clock (<= 0 once it has run out), or None when no clock runs."""
        with self.lock:
            deadline = self.deadline.get(threading.get_ident())
        return None if deadline is None else deadline - time.monotonic()

    def register(self, sock: socket.socket) -> None:
        me = threading.get_ident()
        with self.lock:
            deadline = self.deadline.get(me)
            if me in self.expired or (deadline is not None and deadline <= time.monotonic()):
                # A socket urllib3 opens for a retry after the watchdog shut the late ones: nothing would watch
                # it, so a dripping server would hold the thread for another round of timeouts.
                self.expired.add(me)
                _shut(sock)
                sock.close()  # registered before its connect: the connect fails at once (EBADF)
                return
            live = [s for s in self.sockets.get(me, []) if s.fileno() != -1]
            live.append(sock)
            self.sockets[me] = live

    def _watch(self) -> None:
        while not self.stopped.wait(self.tick_s):
            now = time.monotonic()
            with self.lock:
                late = [t for t, d in self.deadline.items() if d <= now and t not in self.expired]
                for t in late:
                    self.expired.add(t)
                    for s in self.sockets.pop(t, []):
                        _shut(s)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
