"""A replaying HTTP server on loopback: serves recorded responses from WARC files by URL.

Used as an HTTP proxy (`fetch.proxy = http://127.0.0.1:PORT`), it lets the real fetcher fetch real-looking URLs
(http://news.example/...) offline; unknown URLs get 404. Plain requests (GET /path with a Host header) work too.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.urls import normalize_url
from pipeline.warc import HOP_BY_HOP, Response, iter_responses


def _key(url: str) -> str:
    return normalize_url(url) or url


class ReplayArchive:
    def __init__(self, warc_files: list[Path]):
        self.responses: dict[str, Response] = {}
        for path in sorted(warc_files):
            for resp in iter_responses(path):
                self.responses.setdefault(_key(resp.url), resp)  # first capture of a URL wins

    def lookup(self, url: str) -> Response | None:
        return self.responses.get(_key(url))


def warc_files_in(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("**/*.warc.gz")) if p.is_dir() else [p])
    return out


class _Handler(BaseHTTPRequestHandler):
    archive: ReplayArchive
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet: the fetcher's index is the log
        pass

    def do_GET(self) -> None:  # noqa: N802
        target = self.path
        if not urlsplit(target).scheme:  # origin-form: rebuild the absolute URL from Host
            target = f"http://{self.headers.get('Host', 'localhost')}{self.path}"
        resp = self.archive.lookup(target)
        if resp is None:
            body = b"<html><body><h1>404 Not Found</h1></body></html>"
            self._send(404, [("Content-Type", "text/html; charset=utf-8")], body)
        else:
            # Bodies are stored decoded, so encodings that described the wire form are dropped too.
            headers = [(k, v) for k, v in resp.headers if k.lower() not in HOP_BY_HOP | {"content-encoding"}]
            self._send(resp.status, headers, resp.body)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client closing its keep-alive connection is normal, not an error
        super().handle_error(request, client_address)


class ReplayServer:
    """`with ReplayServer(warcs) as url:` serves on 127.0.0.1 in a background thread."""

    def __init__(self, warc_files: list[Path], host: str = "127.0.0.1", port: int = 0):
        archive = ReplayArchive(warc_files)
        handler = type("Handler", (_Handler,), {"archive": archive})
        self.httpd = _Server((host, port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline replay", description=__doc__)
    ap.add_argument("warc", nargs="+", help="WARC files or directories of *.warc.gz")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args(argv)
    server = ReplayServer(warc_files_in(args.warc), port=args.port)
    print(
        f"replaying {len(server.httpd.RequestHandlerClass.archive.responses)} URLs on {server.url} "
        "(use it as fetch.proxy); Ctrl-C stops"
    )
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
