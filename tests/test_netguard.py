"""The outbound address policy and the pinned connection (core.netguard).

- Property tests: the policy agrees with an oracle written here independently (IPv6
  embeddings decoded by bit arithmetic, special ranges as ipaddress networks) over
  generated IPv4/IPv6 addresses, IPv4 carried in IPv6 every way, and numeric spellings
  of IPv4 in URLs (decimal, hex, short forms); and it never allows what the standard
  library calls non-global.
- DNS rebinding: a resolver that answers differently the second time. The request
  must go to the address that was checked (real HTTP servers on 127.0.0.1 and
  127.0.0.2), for the `api` step (sync) and webhook delivery (async); over TLS the
  host name still drives SNI and certificate verification.

The resolver is replaced on the module (`netguard.resolve`) only here: there is no
DNS server to rebind in a test.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import netguard

IPv4, IPv6 = ipaddress.IPv4Address, ipaddress.IPv6Address
M32 = 0xFFFFFFFF

# --------------------------------------------------------------------------- the oracle

# IPv4: the IANA special-purpose ranges that are not globally reachable, plus multicast
# and the deprecated 6to4 relay anycast.
ORACLE_V4_BLOCKED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
# IPv6: only global unicast 2000::/3 may be public, less these ranges inside it.
ORACLE_V6_IN_GUA_BLOCKED = [
    ipaddress.ip_network(n) for n in ("2001::/23", "2001:db8::/32", "3fff::/20")
]
GUA = ipaddress.ip_network("2000::/3")
MAPPED_HI = 0xFFFF  # ::ffff:a.b.c.d, top 96 bits
NAT64_HI = int(IPv6("64:ff9b::")) >> 32  # 64:ff9b::a.b.c.d, top 96 bits


def oracle_embedded(ip: IPv6) -> IPv4 | None:
    """The IPv4 an IPv6 address carries and is judged by (mapped, NAT64, 6to4)."""
    n = int(ip)
    if n >> 32 in (MAPPED_HI, NAT64_HI):
        return IPv4(n & M32)
    if n >> 112 == 0x2002:
        return IPv4((n >> 80) & M32)
    return None


def oracle_public(ip: IPv4 | IPv6) -> bool:
    if isinstance(ip, IPv4):
        return not any(ip in net for net in ORACLE_V4_BLOCKED)
    carried = oracle_embedded(ip)
    if carried is not None:
        return oracle_public(carried)
    return ip in GUA and not any(ip in net for net in ORACLE_V6_IN_GUA_BLOCKED)


# --------------------------------------------------------------------------- strategies

v4 = st.ip_addresses(v=4)
SPECIAL = [*ORACLE_V4_BLOCKED, *ORACLE_V6_IN_GUA_BLOCKED] + [
    ipaddress.ip_network(n)
    for n in (
        "::/96",
        "::ffff:0:0/96",
        "::ffff:0:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "2000::/3",
    )
]


def _embed(carried: IPv4, how: str, noise: int) -> IPv6:
    c = int(carried)
    if how == "mapped":
        return IPv6((MAPPED_HI << 32) | c)
    if how == "nat64":
        return IPv6((NAT64_HI << 32) | c)
    if how == "6to4":
        return IPv6((0x2002 << 112) | (c << 80) | (noise & ((1 << 80) - 1)))
    if how == "compat":
        return IPv6(c)
    if how == "translated":  # ::ffff:0:a.b.c.d (SIIT)
        return IPv6((0xFFFF << 48) | c)
    # Teredo: 2001:0:<server>:<flags>:<port>:<client XOR ones>
    return IPv6((0x20010000 << 96) | (c << 64) | (noise & ((1 << 32) - 1)) << 32 | (c ^ M32))


embedded = st.builds(
    _embed,
    v4,
    st.sampled_from(["mapped", "nat64", "6to4", "compat", "translated", "teredo"]),
    st.integers(min_value=0, max_value=(1 << 80) - 1),
)
addresses = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    embedded,
    st.sampled_from(SPECIAL).flatmap(lambda net: st.ip_addresses(network=net)),
)


# --------------------------------------------------------------------------- properties


@given(addresses)
def test_policy_agrees_with_the_oracle(ip: IPv4 | IPv6) -> None:
    why = netguard.refusal(ip)
    assert (why is None) == oracle_public(ip), (str(ip), why)
    if why is not None:
        assert why and "\n" not in why


@given(addresses)
def test_policy_never_allows_what_the_standard_library_calls_non_global(
    ip: IPv4 | IPv6,
) -> None:
    if netguard.refusal(ip) is not None:
        return
    if isinstance(ip, IPv6):
        carried = oracle_embedded(ip)
        if carried is not None:
            assert carried.is_global and not carried.is_multicast, str(ip)
            return
    assert ip.is_global and not ip.is_multicast, str(ip)


def test_named_examples_from_the_issue() -> None:
    for text in (
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::",
        "::a9fe:a9fe",
        "::ffff:169.254.169.254",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "169.254.169.254",
        "100.64.0.1",
        "fd00:ec2::254",  # the IPv6 cloud metadata address
        "fe80::1",
        "::",
        "0.0.0.0",
        "255.255.255.255",
        "ff02::1",
        "::1",
    ):
        assert netguard.refusal(ipaddress.ip_address(text)) is not None, text
    for text in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "64:ff9b::808:808"):
        assert netguard.refusal(ipaddress.ip_address(text)) is None, text


def _spellings(n: int) -> list[str]:
    a, b, c, d = n.to_bytes(4, "big")
    return [
        str(n),  # 2852039166
        hex(n),  # 0xa9fea9fe
        f"{a}.{(b << 16) | (c << 8) | d}",  # 169.16689662
        f"{a}.{b}.{(c << 8) | d}",  # 169.254.43518
        f"{hex(a)}.{b}.{c}.{d}",  # 0xa9.254.169.254
        f"{hex(a)}.{(b << 16) | (c << 8) | d}",  # 0x7f.1
        f"0{a:o}.{b}.{c}.{d}",  # octal first part (httpx refuses: malformed)
    ]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(v4, st.integers(min_value=0, max_value=6), st.sampled_from(["http", "https"]))
def test_numeric_ipv4_spellings_in_urls(ip: IPv4, which: int, scheme: str) -> None:
    """Whatever spelling, the URL is judged (and pinned) by the address it means."""
    host = _spellings(int(ip))[which]
    url = f"{scheme}://{host}/x"
    try:
        target = netguard.check_url(url, allow_private=True)
    except netguard.Refused as exc:
        # Only a spelling the HTTP client itself rejects may be refused here.
        assert str(exc).startswith("malformed URL"), (url, str(exc))
        pinned = None
    else:
        pinned = target.addresses
        assert pinned == (str(ip),), (url, pinned)
    try:
        netguard.check_url(url, allow_private=False)
    except netguard.Refused:
        allowed = False
    else:
        allowed = True
    assert allowed == (pinned is not None and oracle_public(ip)), url


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://127.0.0.1:99999/", "port 99999 is out of range"),
        ("http://127.0.0.1:0/", "port 0 is out of range"),
        ("http://[::1/", "malformed URL"),
        ("http:///x", "no host"),
        ("http://", "no host"),
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("  ", "only http and https"),
        ("http://256.1.1.1/", "malformed URL"),
        ("http://x\x00y/", "malformed URL"),
    ],
)
def test_malformed_urls_are_refused_in_one_line(url: str, says: str) -> None:
    with pytest.raises(netguard.Refused) as info:
        netguard.check_url(url, allow_private=True)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- servers


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hosts(self) -> list[str]:
        with self.lock:
            return [r["host"] for r in self.requests]


def _serve(address: str, port: int, seen: Seen, tls: ssl.SSLContext | None = None):
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with seen.lock:
                seen.requests.append(
                    {"method": self.command, "host": self.headers["Host"], "body": body}
                )
            out = b'{"at": "%s"}' % address.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _any

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer((address, port), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd


@pytest.fixture
def twin() -> Iterator[tuple[int, Seen, Seen]]:
    """Servers on 127.0.0.1:P and 127.0.0.2:P (one port, two loopback addresses)."""
    for _ in range(20):
        first = _serve("127.0.0.1", 0, seen_a := Seen())
        port = first.server_address[1]
        try:
            second = _serve("127.0.0.2", port, seen_b := Seen())
        except OSError:
            first.shutdown()
            first.server_close()
            continue
        break
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")
    try:
        yield port, seen_a, seen_b
    finally:
        for httpd in (first, second):
            httpd.shutdown()
            httpd.server_close()


class Rebinder:
    """Answers `first` to the first lookup of a name, then `later` (a rebinding DNS)."""

    def __init__(self, first: str, later: str) -> None:
        self.first, self.later = first, later
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        try:  # an address literal needs no lookup, as with getaddrinfo
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        self.calls.append(host)
        return [self.first if len(self.calls) == 1 else self.later]


def _api_ctx(tmp_path: Path, url: str, *, allow_private: bool, timeout: float = 5) -> Any:
    from core.steps.base import StepContext

    return StepContext(
        run_id="r" * 32,
        step={"id": "call", "kind": "api", "method": "GET", "url": url, "timeout_seconds": timeout},
        attempt=1,
        scope={"inputs": {}, "steps": {}},
        defaults={"api": {"allow_private": allow_private}},
        workflow_path=tmp_path / "wf.yaml",
        run_dir=tmp_path / "run",
        cancel=threading.Event(),
        output=lambda _batch: None,
    )


# --------------------------------------------------------------------------- rebinding


def test_api_step_connects_to_the_address_it_checked(
    twin: tuple[int, Seen, Seen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.steps.api as api

    port, at_1, at_2 = twin
    rebind = Rebinder("127.0.0.1", "127.0.0.2")
    monkeypatch.setattr(netguard, "resolve", rebind)
    monkeypatch.setattr(api, "transport", None)
    out = api.run(_api_ctx(tmp_path, f"http://rebind.test:{port}/x", allow_private=True))
    assert out.status == "completed", out.error
    assert out.outputs == {"at": "127.0.0.1", "status_code": 200}
    assert rebind.calls == ["rebind.test"]  # resolved once
    assert at_1.hosts() == [f"rebind.test:{port}"]  # the Host header keeps the name
    assert at_2.hosts() == []


def test_api_step_rebinding_to_loopback_never_reaches_it(
    twin: tuple[int, Seen, Seen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked as public, then the name rebinds to loopback: the connection still goes to
    the public address (which does not answer here), never to 127.0.0.1."""
    import core.steps.api as api

    port, at_1, at_2 = twin
    rebind = Rebinder("93.184.215.14", "127.0.0.1")
    monkeypatch.setattr(netguard, "resolve", rebind)
    monkeypatch.setattr(api, "transport", None)
    out = api.run(
        _api_ctx(tmp_path, f"http://rebind.test:{port}/x", allow_private=False, timeout=1)
    )
    assert out.status == "failed"
    assert rebind.calls == ["rebind.test"]
    assert at_1.hosts() == [] and at_2.hosts() == []
    # Without the opt-in, a name that resolves to loopback is refused before connecting.
    rebind = Rebinder("127.0.0.1", "93.184.215.14")
    monkeypatch.setattr(netguard, "resolve", rebind)
    out = api.run(_api_ctx(tmp_path, f"http://rebind.test:{port}/x", allow_private=False))
    assert out.status == "failed"
    assert "resolves to 127.0.0.1, not a public address: loopback" in out.error.message
    assert "defaults.api.allow_private" in out.error.message
    assert at_1.hosts() == []


def _delivery(url: str) -> dict[str, Any]:
    return {
        "url": url,
        "attempts": 0,
        "event": "checkpoint.saved",
        "webhook_id": "wh_test",
        "delivery_id": "dlv_test",
        "data": {"n": 1},
        "secret": None,
    }


def test_webhook_delivery_connects_to_the_address_it_checked(
    twin: tuple[int, Seen, Seen], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.service import delivery

    port, at_1, at_2 = twin

    async def deliver(url: str) -> tuple[int | None, str | None]:
        async with httpx.AsyncClient(transport=netguard.async_transport(), timeout=5) as c:
            return await delivery.post(c, _delivery(url))

    async def unpinned(url: str) -> str:
        async with httpx.AsyncClient(transport=netguard.async_transport(), timeout=5) as c:
            try:
                await c.post(url)
            except httpx.ConnectError as exc:
                return str(exc)
        return "connected"

    rebind = Rebinder("127.0.0.1", "127.0.0.2")
    monkeypatch.setattr(netguard, "resolve", rebind)
    monkeypatch.setenv("CPF_WEBHOOK_ALLOW_PRIVATE", "1")
    assert asyncio.run(deliver(f"http://hook.test:{port}/in")) == (200, None)
    assert rebind.calls == ["hook.test"]
    assert at_1.hosts() == [f"hook.test:{port}"] and at_2.hosts() == []
    # The transport fails closed: a request outside `pinned()` connects nowhere.
    assert "was not checked" in asyncio.run(unpinned(f"http://127.0.0.1:{port}/"))

    monkeypatch.delenv("CPF_WEBHOOK_ALLOW_PRIVATE")
    status, error = asyncio.run(deliver(f"http://hook.test:{port}/in"))
    assert status is None
    assert error is not None and error.startswith("refused: host 'hook.test' resolves to")
    assert "--allow-private-webhooks" in error
    assert len(at_1.hosts()) == 1 and at_2.hosts() == []


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Seen, list[str], Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    cmd += ["-subj", "/CN=pinned.test", "-addext", "subjectAltName=DNS:pinned.test"]
    cmd += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        cmd,
        check=True,
        capture_output=True,
    )
    names: list[str] = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment]
    seen = Seen()
    httpd = _serve("127.0.0.1", 0, seen, tls=ctx)
    try:
        yield httpd.server_address[1], seen, names, cert
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_tls_keeps_the_host_name_for_sni_and_certificate_checks(
    tls_server: tuple[int, Seen, list[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import core.steps.api as api

    port, seen, names, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["127.0.0.1"])
    monkeypatch.setattr(api, "transport", None)
    out = api.run(_api_ctx(tmp_path, f"https://pinned.test:{port}/x", allow_private=True))
    assert out.status == "completed", out.error
    assert names == ["pinned.test"]  # SNI: the name, not the pinned address
    assert seen.hosts() == [f"pinned.test:{port}"]
    # Same address, another name: the certificate does not match and nothing is sent.
    out = api.run(_api_ctx(tmp_path, f"https://other.test:{port}/x", allow_private=True))
    assert out.status == "failed"
    assert "certificate" in out.error.message.lower(), out.error.message
    assert len(seen.hosts()) == 1
