"""Which addresses cpf may call out to, and connections pinned to the address checked.

Used by the `api` step and by `cpf serve`'s webhook deliveries, so a workflow author or
an API tenant cannot make cpf call into the operator's own network (loopback, cloud
metadata at 169.254.169.254, private ranges...).

Three rules:

- An address is public only if it is outside every special-purpose range below (the
  IANA special-purpose registries: loopback, link-local, private, shared 100.64/10,
  documentation, benchmarking, reserved, multicast, unspecified...). IPv4 carried inside
  IPv6 (`::ffff:a.b.c.d` mapped, `64:ff9b::/96` NAT64, `2002::/16` 6to4) is judged by the
  IPv4 it carries; IPv4-compatible `::a.b.c.d`, Teredo and local-use NAT64 are refused.
- A host name is resolved once; every address it resolves to must be public.
- The connection goes to one of those checked addresses (the network backend below),
  never to a second resolution, so DNS rebinding cannot swap in another address. The
  URL, the Host header, the TLS server name and certificate checks keep the host name.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, what it is); the first match names the refusal.
BLOCKED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "'this network' (unspecified)"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared address space (carrier-grade NAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "deprecated 6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved (or broadcast)"),
)

BLOCKED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/32"), "Teredo tunnel"),
    (_V6("2001::/23"), "IETF protocol assignment"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)
# Everything else outside global unicast is reserved by the IETF.
GLOBAL_UNICAST_V6 = _V6("2000::/3")
NAT64_WELL_KNOWN = _V6("64:ff9b::/96")


class Refused(Exception):
    """A URL cpf will not call; the text says why in one line."""


class Unresolvable(Refused):
    """The host name did not resolve (now): refused, but not known to be private."""


def refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address, or None when it is."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _refusal_v4(ip)
    ip = ipaddress.IPv6Address(int(ip))  # drop a %scope: it changes nothing here
    embedded: tuple[str, ipaddress.IPv4Address] | None = None
    if ip.ipv4_mapped is not None:
        embedded = ("IPv4-mapped", ip.ipv4_mapped)
    elif ip in NAT64_WELL_KNOWN:
        embedded = ("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    elif ip.sixtofour is not None:
        embedded = ("6to4", ip.sixtofour)
    if embedded is not None:
        how, v4 = embedded
        why = _refusal_v4(v4)
        return f"{how} carrying {v4}, {why}" if why else None
    for net, what in BLOCKED_V6:
        if ip in net:
            if ip.teredo is not None:
                server, client = ip.teredo
                return f"{what} (server {server}, client {client})"
            if what.startswith("IPv4-compatible"):
                return f"{what}, carrying {ipaddress.IPv4Address(int(ip))}"
            return what
    if ip not in GLOBAL_UNICAST_V6:
        return "reserved (outside global unicast 2000::/3)"
    if not ip.is_global:  # the standard library's own table, as a second opinion
        return "not globally reachable"
    return None


def _refusal_v4(ip: ipaddress.IPv4Address) -> str | None:
    for net, what in BLOCKED_V4:
        if ip in net:
            return what
    if not ip.is_global or ip.is_multicast:
        return "not globally reachable"
    return None


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class Endpoint:
    """Where a URL points, as the HTTP client will see it (IDNA host, no brackets)."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class Target:
    """An endpoint and the addresses it resolved to, every one of them checked."""

    endpoint: Endpoint
    addresses: tuple[str, ...]

    @property
    def pins(self) -> dict[tuple[str, int], tuple[str, ...]]:
        return {(self.endpoint.host, self.endpoint.port): self.addresses}


def parse(url: str) -> Endpoint:
    """The endpoint of an http(s) URL, parsed exactly as httpx will parse it."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise Refused(f"malformed URL {_short(url)}: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs are allowed, not {_short(parsed.scheme or url)}")
    try:
        host = parsed.raw_host.decode("ascii")
    except UnicodeDecodeError:
        raise Refused(f"malformed host in URL {_short(url)}") from None
    if not host:
        raise Refused(f"no host in URL {_short(url)}")
    port = parsed.port
    if port is None:
        port = 443 if parsed.scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise Refused(f"port {port} is out of range (1-65535) in URL {_short(url)}")
    return Endpoint(parsed.scheme, host, port)


def resolve(host: str, port: int) -> list[str]:
    """Every address of `host` (numeric forms such as 2852039166 or 0x7f.1 included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check(endpoint: Endpoint, *, allow_private: bool, hint: str = "") -> Target:
    """Resolve the host once; refuse unless every address is public (or private is allowed)."""
    host = endpoint.host
    try:
        addresses = resolve(host, endpoint.port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise Unresolvable(f"cannot resolve host {_short(host)}: {exc}") from None
    if not addresses:
        raise Unresolvable(f"host {_short(host)} resolves to no address")
    if not allow_private:
        for text in addresses:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                raise Refused(f"host {_short(host)} resolves to {text!r}, not an IP") from None
            why = refusal(ip)
            if why:
                if _literal(host) == ip:
                    raise Refused(f"{ip} is not a public address: {why}{hint}")
                raise Refused(
                    f"host {_short(host)} resolves to {ip}, not a public address: {why}{hint}"
                )
    return Target(endpoint, tuple(addresses))


def check_url(url: str, *, allow_private: bool, hint: str = "") -> Target:
    return check(parse(url), allow_private=allow_private, hint=hint)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _short(text: str, limit: int = 200) -> str:
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


# --------------------------------------------------------------------------- connections

# The async backend reads the pins of the task making the request (set by `pinned()`),
# so one client and its connection pool serve many deliveries.
_PINS: contextvars.ContextVar[dict[tuple[str, int], tuple[str, ...]] | None] = (
    contextvars.ContextVar("cpf_netguard_pins", default=None)
)


def _addresses(pins: dict[tuple[str, int], tuple[str, ...]] | None, host: str, port: int):
    import httpcore

    found = (pins or {}).get((host, port))
    if not found:
        # Fail closed: only a checked endpoint is ever connected to.
        raise httpcore.ConnectError(f"refused: {host}:{port} was not checked")
    return found


def sync_transport(target: Target) -> Any:
    """An httpx transport that connects only to the checked addresses of `target`."""
    import httpcore
    import httpx

    class Backend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self.inner = httpcore.SyncBackend()

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            last: Exception | None = None
            for address in _addresses(target.pins, host, port):
                try:
                    return self.inner.connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last = exc
            assert last is not None
            raise last

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            raise httpcore.ConnectError("refused: unix sockets are not allowed")

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

    ssl_context = httpx.create_ssl_context()
    transport = httpx.HTTPTransport(verify=ssl_context, trust_env=False)
    # httpx has no public hook for a network backend: give its transport a pool with ours.
    transport._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=Backend())
    return transport


def async_transport() -> Any:
    """An async httpx transport that connects only to addresses pinned by `pinned()`."""
    import httpcore
    import httpx

    class Backend(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self.inner = httpcore.AnyIOBackend()

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.AsyncNetworkStream:
            last: Exception | None = None
            for address in _addresses(_PINS.get(), host, port):
                try:
                    return await self.inner.connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last = exc
            assert last is not None
            raise last

        async def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.AsyncNetworkStream:
            raise httpcore.ConnectError("refused: unix sockets are not allowed")

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    ssl_context = httpx.create_ssl_context()
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context, network_backend=Backend()
    )
    return transport


@contextlib.contextmanager
def pinned(target: Target) -> Iterator[Target]:
    """Within `with pinned(target):` this task's requests may connect to `target` only."""
    token = _PINS.set(target.pins)
    try:
        yield target
    finally:
        _PINS.reset(token)
