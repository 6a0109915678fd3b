"""Server-side request forgery guard for the fetcher.

A link from Reddit can name any host, and a name can resolve to anything: 127.0.0.1, the cloud metadata service at
169.254.169.254, a database on the cluster's private network. So the check is made where the socket is opened,
on the address actually connected to (after DNS, so a name that resolves to a private address is caught, and
no second lookup can change the answer), for every connection including each redirect hop. Only public unicast
addresses pass, plus the networks named in an explicit allowlist (the demo and the tests allow 127.0.0.1 only);
an IPv6 address that carries an IPv4 address (NAT64, 6to4, Teredo...) must pass for both.

Before anything is sent, a URL whose host is an address literal, in any spelling a browser or inet_aton reads as
one (0x7f000001, 2130706433, 0177.0.0.1, 127.1), is vetted the same way: through a proxy no socket of ours ever
sees that address. Names behind a proxy are the proxy's to resolve, unless `proxy_resolve` has them resolved,
vetted and pinned here (GuardedAdapter).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Annotated
from urllib.parse import unquote

import idna
from pydantic import AfterValidator
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import parse_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges whose addresses carry an IPv4 address that a translator or tunnel forwards to. Python's is_global
# (3.11) calls NAT64, 6to4, IPv4-compatible and SIIT addresses global whatever IPv4 address they embed, so
# 64:ff9b::a9fe:a9fe would reach 169.254.169.254 through a NAT64 gateway: the embedded address is judged too.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
# Refused whatever they embed: IPv4-compatible (RFC 4291, deprecated; old stacks tunnel it automatically),
# site-local (RFC 3879, deprecated; is_global is True for it in 3.11), and local-use NAT64 (RFC 8215, where the
# IPv4 address sits depends on the operator's prefix length; also is_global in 3.11).
_REFUSED_V6 = tuple(map(ipaddress.IPv6Network, ("::/96", "fec0::/10", "64:ff9b:1::/48")))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:  # 2002::/16, RFC 3056
        return [address.sixtofour]
    if address.teredo is not None:  # 2001::/32, RFC 4380: the server, and the client behind its NAT
        return list(address.teredo)
    if address in _NAT64 or address in _SIIT:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def unscoped(address: Address) -> Address:
    """Without a zone id (fe80::1%eth0): the zone names an interface, not another address."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address


def network(text: str) -> str:
    """A pydantic check for an `allow_networks` entry, so a typo is a config error naming it, not a traceback."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise ValueError(f"not an IP network, address/prefix length such as 127.0.0.1/32 ({e})") from None
    return text


class BlockedAddress(Exception):
    """Not an OSError on purpose: urllib3 retries OSErrors, and a refused address must not be retried."""

    def __init__(self, host: str, address: str):
        super().__init__(f"{host} resolves to {address}, a non-public address (allow it with allow_networks)")
        self.host, self.address = host, address


class AddressPolicy:
    # The type of an `allow_networks` entry in a pydantic config.
    NetworkSpec = Annotated[str, AfterValidator(network)]

    def __init__(self, allow_networks: Iterable[str] = ()):
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)

    def _public(self, address: Address) -> bool:
        if any(address in net for net in self.allowed):
            return True
        if isinstance(address, ipaddress.IPv6Address) and any(address in net for net in _REFUSED_V6):
            return False
        # is_global is False for private, loopback, link-local (169.254/16, fe80::/10), shared (100.64/10),
        # reserved and documentation ranges; multicast is excluded separately as some of it is "global".
        return address.is_global and not address.is_multicast

    def permits(self, address: Address) -> bool:
        address = unscoped(address)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # ::ffff:127.0.0.1 is 127.0.0.1 on the wire: only the IPv4 address counts.
            return self._public(address) or self._public(address.ipv4_mapped)
        if not self._public(address):
            return False
        embedded = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []
        return all(self._public(v4) for v4 in embedded)

    def check_literal(self, host: str) -> Address | None:
        """Refuse a URL host that is an address literal outside the policy, in any spelling a browser or resolver
        reads as one, before anything is sent (a proxy would connect to it unvetted). Returns the address, or
        None for a name."""
        address = host_address(host)
        if address is None:
            name = host.lower().rstrip(".")
            if name == "localhost" or name.endswith(".localhost"):
                address = ipaddress.IPv4Address("127.0.0.1")
                if not self.permits(address):
                    raise BlockedAddress(host, str(address))
                return None
            return None
        if not self.permits(address):
            raise BlockedAddress(host, str(address))
        return address

    def vet_name(self, host: str, port: int) -> Address:
        """Resolve a name and vet every address (one bad address refuses the name, as at connect); the first."""
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise NameResolutionError(host, None, e) from e  # type: ignore[arg-type]  # conn: only for the message
        addresses = [unscoped(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos]
        for address in addresses:
            if not self.permits(address):
                raise BlockedAddress(host, str(address))
        if not addresses:
            raise NameResolutionError(host, None, socket.gaierror(f"no address for {host}"))  # type: ignore[arg-type]
        return addresses[0]


# The WHATWG URL Standard's host parser (https://url.spec.whatwg.org/#host-parsing), which browsers follow and
# which accepts what inet_aton and curl accept: a host that "ends in a number" is an IPv4 address of 1 to 4 parts,
# each decimal, 0x hex or leading-0 octal, the last filling the remaining bytes (127.1 is 127.0.0.1, 0x7f000001
# too), with one trailing dot allowed; if it ends in a number but does not parse, the URL is invalid.
_DIGITS = {10: frozenset("0123456789"), 16: frozenset("0123456789abcdef"), 8: frozenset("01234567")}


def _ipv4_number(part: str) -> int | None:
    """https://url.spec.whatwg.org/#ipv4-number-parser; None for failure."""
    if not part:
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    if not part:
        return 0
    if not set(part.lower()) <= _DIGITS[radix]:  # int() alone would take "+1", " 1" and "1_0"
        return None
    return int(part, radix)


def _ends_in_a_number(parts: list[str]) -> bool:
    """https://url.spec.whatwg.org/#ends-in-a-number-checker, on the host split at dots, trailing empty dropped."""
    last = parts[-1]
    return bool(last) and (last.isascii() and last.isdigit() or _ipv4_number(last) is not None)


def _ipv4(parts: list[str], host: str) -> ipaddress.IPv4Address:
    """https://url.spec.whatwg.org/#concept-ipv4-parser"""
    numbers = [_ipv4_number(p) for p in parts]
    if len(parts) > 4 or None in numbers:
        raise InvalidURL(f"invalid IPv4 address in URL host: {host!r}")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise InvalidURL(f"IPv4 address out of range in URL host: {host!r}")
    return ipaddress.IPv4Address(sum(n * 256 ** (3 - i) for i, n in enumerate(values[:-1])) + values[-1])


def host_address(host: str) -> Address | None:
    """The address a URL host denotes if it is an address literal, else None (a name). Raises InvalidURL for a
    host that ends in a number but is no IPv4 address, which browsers refuse and a resolver might still read."""
    host = unquote(host)  # the spec percent-decodes first: %31%32%37.0.0.1 is 127.0.0.1
    if host.startswith("[") or ":" in host:
        try:  # the zone id of fe80::1%25eth0 (RFC 6874) names an interface, not an address
            return unscoped(ipaddress.IPv6Address(host.strip("[]").split("%")[0]))
        except ValueError:
            raise InvalidURL(f"invalid IPv6 address in URL host: {host!r}") from None
    if not host.isascii():
        try:  # the spec's domain-to-ASCII step maps fullwidth digits and ideographic full stops (UTS 46)
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except idna.IDNAError:
            return None  # not a valid name either; requests refuses it as such
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not _ends_in_a_number(parts):
        return None
    return _ipv4(parts, host)


def guarded_connect(
    conn: HTTPConnection, policy: AddressPolicy, on_socket: Callable[[socket.socket], None] | None = None
) -> socket.socket:
    """Resolve, vet every address, connect to the first that passes and answers (what urllib3's _new_conn does).
    `on_socket` sees each socket before its connect, so a deadline watchdog can cut a connect under way too."""
    host, port = conn._dns_host, conn.port
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameResolutionError(conn.host, conn, e) from e
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not policy.permits(address):
            raise BlockedAddress(host, str(address))
        sock = socket.socket(family, kind, proto)
        try:
            if on_socket is not None:
                on_socket(sock)
            for opt in conn.socket_options or ():
                sock.setsockopt(*opt)
            if conn.timeout is not None:
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
            sys.audit("http.client.connect", conn, conn.host, conn.port)
            return sock
        except TimeoutError as e:
            sock.close()
            raise ConnectTimeoutError(conn, f"Connection to {host} timed out") from e
        except OSError as e:
            sock.close()
            last = e
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last}")


def _guarded(
    base: type[HTTPConnection], policy: AddressPolicy, on_connect: Callable[[socket.socket], None] | None
) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            return guarded_connect(self, policy, on_connect)

    return Guarded


_PINNED_NAME = "_netguard_pinned_name"  # on a pinned copy of a request: the name its TLS must be checked against


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct or to a proxy) go through `guarded_connect`, and which refuses
    address-literal URLs outside the policy before sending. A proxy resolves names itself, out of our sight: with
    `proxy_resolve` the name is resolved and vetted here and the vetted address is what the proxy is asked for
    (pinned: absolute-form URL with the address and the Host header kept for http, CONNECT to the address with
    SNI and the certificate check on the name for https), so the proxy's own lookup cannot differ."""

    def __init__(
        self,
        policy: AddressPolicy,
        on_connect: Callable[[socket.socket], None] | None = None,
        proxy_resolve: bool = False,
        **kw,
    ):
        self.policy, self.proxy_resolve = policy, proxy_resolve
        http, https = _guarded(HTTPConnection, policy, on_connect), _guarded(HTTPSConnection, policy, on_connect)
        self._pools = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw) -> None:
        super().init_poolmanager(*args, **kw)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy, **kw):
        manager = super().proxy_manager_for(proxy, **kw)
        manager.pool_classes_by_scheme = self._pools
        return manager

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = getattr(request, _PINNED_NAME, None)
        if name is not None and host_params["scheme"] == "https":
            pool_kwargs |= {"server_hostname": name, "assert_hostname": name}  # part of urllib3's pool key
        return host_params, pool_kwargs

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        url = parse_url(request.url)
        host = url.host or ""
        literal = self.policy.check_literal(host)  # every hop, redirects included, whatever the transport
        if not (self.proxy_resolve and literal is None and select_proxy(request.url, proxies)):
            return super().send(request, stream, timeout, verify, cert, proxies)
        address = self.policy.vet_name(host, url.port or (443 if url.scheme == "https" else 80))
        pinned = request.copy()
        pinned.url = url._replace(host=f"[{address}]" if address.version == 6 else str(address)).url
        pinned.headers["Host"] = host if url.port is None else f"{host}:{url.port}"
        setattr(pinned, _PINNED_NAME, host)
        resp = super().send(pinned, stream, timeout, verify, cert, proxies)
        resp.url, resp.request = request.url, request  # the record shows the URL and request as asked
        return resp
