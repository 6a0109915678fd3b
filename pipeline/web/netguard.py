"""Server-side request forgery guard for the fetcher.

A link from Reddit can name any host, and a name can resolve to anything: 127.0.0.1, the cloud metadata service at
169.254.169.254, a database on the cluster's private network. So the check is made where the socket is opened,
on the address actually connected to (after DNS, so a name that resolves to a private address is caught, and
no second lookup can change the answer), for every connection including each redirect hop. Only public unicast
addresses pass, plus the networks named in an explicit allowlist (the demo and the tests allow 127.0.0.1 only).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable, Iterable

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import parse_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(Exception):
    """Not an OSError on purpose: urllib3 retries OSErrors, and a refused address must not be retried."""

    def __init__(self, host: str, address: str):
        super().__init__(f"{host} resolves to {address}, a non-public address (allow it with allow_networks)")
        self.host, self.address = host, address


class AddressPolicy:
    def __init__(self, allow_networks: Iterable[str] = ()):
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)

    def permits(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in net for net in self.allowed):
            return True
        # is_global is False for private, loopback, link-local (169.254/16, fe80::/10), shared (100.64/10),
        # reserved and documentation ranges; multicast is excluded separately as some of it is "global".
        return address.is_global and not address.is_multicast

    def check_literal(self, host: str) -> None:
        """Refuse a URL whose host is an address literal outside the policy (used when a proxy does the DNS)."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
                if not self.permits(ipaddress.ip_address("127.0.0.1")):
                    raise BlockedAddress(host, "127.0.0.1") from None
            return
        if not self.permits(address):
            raise BlockedAddress(host, str(address))


def guarded_connect(conn: HTTPConnection, policy: AddressPolicy) -> socket.socket:
    """Resolve, vet every address, connect to the first that passes and answers (what urllib3's _new_conn does)."""
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
            sock = guarded_connect(self, policy)
            if on_connect is not None:
                on_connect(sock)
            return sock

    return Guarded


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct or to a proxy) go through `guarded_connect`, and which refuses
    address-literal URLs outside the policy before sending (a proxy would resolve names itself)."""

    def __init__(self, policy: AddressPolicy, on_connect: Callable[[socket.socket], None] | None = None, **kw):
        self.policy = policy
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

    def send(self, request, *args, **kw):
        self.policy.check_literal(parse_url(request.url).host or "")  # every hop, redirects included
        return super().send(request, *args, **kw)
