"""The SSRF guard: address forms, IP literals in every spelling, names behind a proxy, pinning, the config check.

No socket here goes anywhere but loopback: address cases are judged by the policy directly, or behind a patched
getaddrinfo with a socket class that fails the test on any non-loopback connect.
"""

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from pipeline.core.config import validate
from pipeline.core.errors import ConfigError
from pipeline.stages.fetch import FetchConfig, Fetcher
from pipeline.web import netguard
from pipeline.web.netguard import AddressPolicy, BlockedAddress, host_address
from pipeline.web.replay import LocalCA

PUBLIC = "93.184.216.34"  # a public address no test connects to: only a loopback proxy ever sees it

REFUSED = [
    "64:ff9b::169.254.169.254",  # NAT64 (RFC 6052) of the metadata service
    "64:ff9b::10.0.0.1",
    "64:ff9b:1::8.8.8.8",  # local-use NAT64 (RFC 8215): where the IPv4 sits depends on the operator's prefix
    "2002:a00:1::1",  # 6to4 (RFC 3056) of 10.0.0.1
    "2002:a9fe:a9fe::1",
    "::10.0.0.1",  # IPv4-compatible (RFC 4291, deprecated)
    "::8.8.8.8",
    "::ffff:0:10.0.0.1",  # SIIT IPv4-translated (RFC 2765)
    "::ffff:169.254.169.254",  # IPv4-mapped
    "fec0::1",  # site-local (RFC 3879, deprecated)
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo (RFC 4380)
    "fe80::1%eth0",  # link-local with a zone id
    "::1",
    "::",
    "ff02::1",
    "169.254.169.254",
    "0.0.0.0",
    "100.64.0.1",
]
PERMITTED = ["8.8.8.8", "2606:4700::1111", "64:ff9b::8.8.8.8", "2002:808:808::1", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", REFUSED)
def test_refused_address_forms(text):
    assert not AddressPolicy().permits(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PERMITTED)
def test_public_address_forms(text):
    assert AddressPolicy().permits(ipaddress.ip_address(text))


def test_allowlist_covers_the_mapped_form_but_not_a_translated_private_one():
    policy = AddressPolicy(["127.0.0.1/32"])
    assert policy.permits(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.permits(ipaddress.ip_address("64:ff9b::10.0.0.1"))


LITERALS = {
    "167772161": "10.0.0.1",
    "0x7f000002": "127.0.0.2",
    "0177.0.0.2": "127.0.0.2",
    "2130706434": "127.0.0.2",
    "127.2": "127.0.0.2",
    "0": "0.0.0.0",
    "0xa9fea9fe": "169.254.169.254",
    "169.254.43518": "169.254.169.254",
    "0x7f.1": "127.0.0.1",
    "0XA9.0376.43518.": "169.254.169.254",  # upper-case 0X, octal, trailing dot
    "0x": "0.0.0.0",
    "%31%32%37.0.0.2": "127.0.0.2",  # hosts are percent-decoded first
    "１２７.０.０.２": "127.0.0.2",  # fullwidth digits map to ASCII (UTS 46)
    "[64:ff9b::a00:1]": "64:ff9b::a00:1",
    "[fe80::1%25eth0]": "fe80::1",
    "[::ffff:127.0.0.2]": "::ffff:7f00:2",
}


@pytest.mark.parametrize("host", LITERALS)
def test_ip_literals_in_any_spelling(host):
    address = host_address(host)
    assert address is not None and str(address) == LITERALS[host]
    with pytest.raises(BlockedAddress):
        AddressPolicy().check_literal(host)


@pytest.mark.parametrize("host", ["1.2.3.4.example.com", "example.com", "0xg", "a1", "127.0.0.1x", "0x1_0", "1.+2"])
def test_names_are_not_literals(host):
    assert host_address(host) is None


@pytest.mark.parametrize("host", ["999.1.1.1", "1.2.3.4.5", "example.0x10", "1.256.1", "09", "0x100000000", "[::g]"])
def test_hosts_that_end_in_a_number_but_are_no_address_are_invalid(host):
    # Browsers refuse these URLs (WHATWG "ends in a number"); a resolver might still read one as an address.
    with pytest.raises(requests.exceptions.InvalidURL):
        AddressPolicy().check_literal(host)


@pytest.fixture()
def loopback_only(monkeypatch):
    """Sockets that fail the test on a connect outside loopback; `opened` counts the sockets made."""
    opened: list[object] = []

    class Loopback(socket.socket):
        def connect(self, address):
            assert ipaddress.ip_address(address[0]).is_loopback, f"connect to {address}"
            return super().connect(address)

    def make(*a, **kw):
        opened.append(a)
        return Loopback(*a, **kw)

    monkeypatch.setattr(netguard.socket, "socket", make)
    return opened


def fake_dns(monkeypatch, names: dict[str, str]) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *a, **kw):
        if host in names:
            address = ipaddress.ip_address(names[host])
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sockaddr = (str(address), port or 0, 0, 0) if address.version == 6 else (str(address), port or 0)
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        assert host in ("127.0.0.1", "localhost"), f"a real lookup of {host}"
        return real(host, port, *a, **kw)

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)


def config(**kw) -> FetchConfig:
    base = {"input": "unused", "output": "unused", "min_host_delay_s": 0.0, "retries": 0, "deadline_s": 10.0}
    return FetchConfig(**(base | kw))


def fetch(cfg: FetchConfig, url: str) -> dict:
    fetcher = Fetcher(cfg)
    try:
        return fetcher.fetch(url)
    finally:
        fetcher.close()


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "2002:a00:1::1", "fec0::1"])
def test_a_name_resolving_to_an_embedded_private_address_is_refused_before_any_socket(monkeypatch, address):
    fake_dns(monkeypatch, {"metadata.example": address})

    def no_socket(*a, **kw):
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(netguard.socket, "socket", no_socket)
    row = fetch(config(), "http://metadata.example/latest/meta-data/")
    assert row["error"] == "blocked_address"


class RecordingProxy(BaseHTTPRequestHandler):
    """A loopback stand-in for a forward proxy: it records what it is asked for and answers itself (it connects
    nowhere). CONNECT tunnels are terminated with a certificate for `tls_name`, made by a throwaway CA."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str]] = []  # (method, target, Host header)
    ca: LocalCA
    tls_name = "pinned.example"
    redirects: dict[str, str] = {}

    def log_message(self, *a):
        pass

    def do_CONNECT(self):  # noqa: N802
        RecordingProxy.seen.append(("CONNECT", self.path, self.headers.get("Host", "")))
        self.send_response(200, "Connection Established")
        self.end_headers()
        tls = self.ca.context(self.tls_name).wrap_socket(self.connection, server_side=True)
        self.connection, self.rfile = tls, tls.makefile("rb", -1)
        self.wfile = tls.makefile("wb")  # buffered: the handler flushes it after each request
        self.close_connection = False

    def do_GET(self):  # noqa: N802
        RecordingProxy.seen.append(("GET", self.path, self.headers.get("Host", "")))
        if self.path.endswith("/robots.txt"):
            status, body, extra = 404, b"", {}
        elif self.path in self.redirects:
            status, body, extra = 302, b"", {"Location": self.redirects[self.path]}
        else:
            status, body, extra = 200, b"<html><body><p>proxied</p></body></html>", {}
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def ca():
    return LocalCA()


@pytest.fixture()
def proxy(ca):
    RecordingProxy.seen, RecordingProxy.ca, RecordingProxy.redirects = [], ca, {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RecordingProxy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


PROXIED = {"allow_networks": ["127.0.0.1/32"]}

LITERAL_URLS = [
    "http://167772161/",
    "http://0x7f000002/",
    "http://0177.0.0.2/",
    "http://2130706434/",
    "http://127.2/",
    "http://0/",
    "http://0xa9fea9fe/latest/meta-data/",
    "http://169.254.43518/",
    "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    "https://0xa9fea9fe/",
    "http://[fe80::1%25eth0]/",
]


def test_ip_literals_never_reach_the_proxy(proxy, loopback_only):
    cfg = config(proxy=proxy, **PROXIED)
    for url in LITERAL_URLS:
        assert fetch(cfg, url)["error"] == "blocked_address", url
    assert RecordingProxy.seen == []
    # The proxy works: a name goes through it (robots.txt first, then the page).
    assert fetch(cfg, "http://example.com/page")["error"] is None
    assert [t for _, t, _ in RecordingProxy.seen] == ["http://example.com/robots.txt", "http://example.com/page"]


def test_a_redirect_to_a_literal_is_refused_at_that_hop(proxy, loopback_only):
    RecordingProxy.redirects = {"http://example.com/go": "http://0x7f000002/admin"}
    row = fetch(config(proxy=proxy, **PROXIED), "http://example.com/go")
    assert row["error"] == "blocked_address"
    assert "http://0x7f000002/admin" not in [t for _, t, _ in RecordingProxy.seen]
    assert not any("127.0.0.2" in t for _, t, _ in RecordingProxy.seen)


def test_proxy_resolve_refuses_a_name_with_a_private_address_before_the_proxy(monkeypatch, proxy, loopback_only):
    fake_dns(monkeypatch, {"innocent.example": "10.1.2.3", "nat64.example": "64:ff9b::a9fe:a9fe"})
    cfg = config(proxy=proxy, proxy_resolve=True, **PROXIED)
    assert fetch(cfg, "http://innocent.example/")["error"] == "blocked_address"
    assert fetch(cfg, "https://nat64.example/")["error"] == "blocked_address"
    assert RecordingProxy.seen == []


def test_proxy_resolve_off_leaves_names_to_the_proxy(monkeypatch, proxy, loopback_only):
    fake_dns(monkeypatch, {"innocent.example": "10.1.2.3"})
    assert fetch(config(proxy=proxy, **PROXIED), "http://innocent.example/")["error"] is None
    assert ("GET", "http://innocent.example/", "innocent.example") in RecordingProxy.seen


def test_proxy_resolve_pins_the_vetted_address_for_http(monkeypatch, proxy, loopback_only):
    fake_dns(monkeypatch, {"pinned.example": PUBLIC})
    row = fetch(config(proxy=proxy, proxy_resolve=True, **PROXIED), "http://pinned.example:8080/page?q=1")
    assert row["error"] is None and row["final_url"] == "http://pinned.example:8080/page?q=1"
    assert ("GET", f"http://{PUBLIC}:8080/page?q=1", "pinned.example:8080") in RecordingProxy.seen
    assert not any("pinned.example" in target for _, target, _ in RecordingProxy.seen)
    assert ("Host", "pinned.example:8080") not in row["request_headers"]  # the record shows the request as asked


def test_proxy_resolve_pins_the_vetted_address_for_https_and_checks_the_name(monkeypatch, proxy, loopback_only, ca):
    fake_dns(monkeypatch, {"pinned.example": PUBLIC, "other.example": PUBLIC})
    cfg = config(proxy=proxy, proxy_resolve=True, ca_bundle=str(ca.ca_path), **PROXIED)
    row = fetch(cfg, "https://pinned.example/page")
    assert row["error"] is None and row["final_url"] == "https://pinned.example/page"
    assert [t for m, t, _ in RecordingProxy.seen if m == "CONNECT"] == [f"{PUBLIC}:443"] * 2  # robots.txt, page
    assert ("GET", "/page", "pinned.example") in RecordingProxy.seen
    # The certificate is checked against the name, not the pinned address: one for another name fails.
    assert fetch(cfg, "https://other.example/page")["error"] == "tls_error"


def test_a_bad_allow_networks_entry_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as e:
        validate(FetchConfig, "fetch", {"input": "i", "output": "o", "allow_networks": ["127.0.0.1/33"]})
    message = str(e.value)
    assert "allow_networks" in message and "127.0.0.1/33" in message and "\n" not in message
