"""A replaying HTTP server on loopback: serves recorded responses from WARC files by URL.

Used as an HTTP proxy (`fetch.proxy = http://127.0.0.1:PORT`), it lets the real fetcher fetch real URLs offline;
unknown URLs get 404. Plain requests (GET /path with a Host header) work too. https URLs arrive as CONNECT
tunnels: the server terminates TLS with a certificate for the requested host, signed by a throwaway local CA that
the fetcher is told to trust (`fetch.ca_bundle = <server>.ca_path`), so the fetcher's TLS code path, certificate
verification included, runs unchanged.
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import json
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.core.errors import PipelineError, os_error_line
from pipeline.text.urls import normalize_url
from pipeline.text.warc import HOP_BY_HOP, Response, iter_responses


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


def html_benchmark_pages(root: str | Path) -> Iterator[tuple[str, bytes]]:
    """The pages of ../shared/data/html-benchmark under their real URLs: (url, HTML bytes)."""
    root = Path(root)
    truth = json.loads((root / "ground-truth.json").read_text())
    for page_id, item in sorted(truth.items()):
        yield item["url"], gzip.decompress((root / "html" / f"{page_id}.html.gz").read_bytes())


def warc_files_in(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("**/*.warc.gz")) if p.is_dir() else [p])
    return out


class LocalCA:
    """A certificate authority that lives as long as the server: leaf certificates per host, made on demand."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="replay-ca-"))
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())  # one key for every leaf: this is a test CA
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "owt-pipeline replay CA")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = self.dir / "ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.leaf_key_path = self.dir / "leaf.key"
        self.leaf_key_path.write_bytes(
            self.leaf_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.lock = threading.Lock()

    def _builder(self, subject, public_key):
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=7))
        )

    def context(self, host: str) -> ssl.SSLContext:
        with self.lock:
            if host not in self.contexts:
                try:
                    alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
                except ValueError:
                    alt = x509.DNSName(host)
                subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
                cert = (
                    self._builder(subject, self.leaf_key.public_key())
                    .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                    .add_extension(
                        x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
                    )
                    .sign(self.key, hashes.SHA256())
                )
                chain = self.dir / f"{len(self.contexts)}.pem"
                chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(chain, self.leaf_key_path)
                self.contexts[host] = ctx
            return self.contexts[host]


class _Handler(BaseHTTPRequestHandler):
    archive: ReplayArchive
    ca: LocalCA
    protocol_version = "HTTP/1.1"
    origin = ""  # inside a CONNECT tunnel: https://host[:port], the origin of origin-form request paths

    def log_message(self, format, *args):  # noqa: A002 - quiet: the fetcher's index is the log
        pass

    def do_CONNECT(self) -> None:  # noqa: N802
        host, _, port = self.path.rpartition(":")
        self.send_response(200, "Connection Established")
        self.end_headers()
        try:
            tls = self.ca.context(host).wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        # The same handler goes on reading requests, now from inside the tunnel.
        self.connection = tls
        self.rfile = tls.makefile("rb", -1)
        self.wfile = socketserver._SocketWriter(tls)  # type: ignore[attr-defined]
        self.origin = f"https://{host}" + ("" if port in ("", "443") else f":{port}")
        self.close_connection = False  # http.client sends CONNECT as HTTP/1.0, which would end the connection

    def do_GET(self) -> None:  # noqa: N802
        target = self.path
        if not urlsplit(target).scheme:  # origin-form: rebuild the absolute URL from the tunnel or Host
            target = (self.origin or f"http://{self.headers.get('Host', 'localhost')}") + self.path
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
        self.archive = archive = ReplayArchive(warc_files)
        self.ca = LocalCA()
        handler = type("Handler", (_Handler,), {"archive": archive, "ca": self.ca})
        try:
            self.httpd = _Server((host, port), handler)
        except OSError as e:  # the port is taken (another replay still running?), or privileged
            raise PipelineError(
                f"replay: cannot listen on {host}:{port}: {os_error_line(e)}; choose another --port"
            ) from None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def ca_path(self) -> str:
        """The CA certificate a client must trust to fetch https URLs through this server."""
        return str(self.ca.ca_path)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

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
        f"replaying {len(server.archive.responses)} URLs on {server.url} "
        f"(use it as fetch.proxy, with fetch.ca_bundle = {server.ca_path} for https); Ctrl-C stops"
    )
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
