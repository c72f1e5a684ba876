"""`cpf serve` under abuse: hostile paths, queries, bodies, depths, sizes, big integers and
bytes on every route (hypothesis, real HTTP to a real server), slow and idle sockets,
and schemathesis over the server's own OpenAPI document.

The properties: never a 5xx; every error is the documented `{"error": {code, message}}`
with a status the OpenAPI document lists for that route; stored data is intact after.
Budgets are small here; `pytest --hypothesis-profile=deep` runs them long.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import time
import uuid
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_service_support import ServeProcess, wait_until

from core.service.routes import MAX_JSON_DEPTH, ROUTES

ROUTE_KEYS = [(r.method, r.path) for r in ROUTES]


def budget(n: int) -> int:
    """`n` examples in CI; the profile's budget under --hypothesis-profile=deep."""
    if settings.get_current_profile_name() == "deep":
        return settings.default.max_examples
    return n


def hostile(n: int) -> settings:
    return settings(
        max_examples=budget(n),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Generated webhook URLs may name public addresses: this server never sends.
    server = ServeProcess(
        tmp_path_factory.mktemp("hostile") / "base", args=("--no-webhook-delivery",)
    )
    yield server
    assert server.stop() == 0, server.logs()
    logs = server.logs()
    assert "Traceback" not in logs and "unhandled error" not in logs, logs


@pytest.fixture(scope="module")
def key(srv: ServeProcess) -> str:
    return srv.key("acme")


@pytest.fixture(scope="module")
def doc(srv: ServeProcess) -> dict[str, Any]:
    return srv.http("GET", "/openapi.json").json()


BIG = 123456789012345678901234567890


@pytest.fixture(scope="module")
def canary(srv: ServeProcess, key: str) -> dict[str, Any]:
    """A workflow, an agent and a webhook the hostile requests must leave as they were."""
    wf = f"canary-{uuid.uuid4().hex}"
    states = [
        {"n": BIG, "neg": -BIG, "u": "é\u2028😀", "f": 0.1, "deep": {"a": [1, {"b": None}]}},
        {"n": 1, "list": list(range(50))},
    ]
    for step, state in enumerate(states):
        r = srv.http(
            "POST", "/checkpoints", key,
            json={"workflow_id": wf, "step": step, "state": state, "metadata": {"big": BIG}},
        )
        assert r.status_code == 201, r.text
    agent = f"canary-{uuid.uuid4().hex}"
    r = srv.http("POST", "/agents", key, json={"agent_id": agent, "metadata": {"big": BIG}})
    assert r.status_code == 201, r.text
    r = srv.http(
        "POST", "/webhooks", key,
        json={"url": "https://example.com/canary", "events": ["workflow.expired"]},
    )
    assert r.status_code == 201, r.text
    return {"wf": wf, "states": states, "agent": agent, "hook": r.json()["webhook_id"]}


def assert_intact(srv: ServeProcess, key: str, canary: dict[str, Any]) -> None:
    wf = canary["wf"]
    r = srv.http("GET", f"/workflows/{wf}/replay", key)
    assert r.status_code == 200, r.text
    got = json.loads(r.content)  # Python ints: exact
    assert [c["state"] for c in got["checkpoints"]] == canary["states"]
    assert [c["metadata"] for c in got["checkpoints"]] == [{"big": BIG}, {"big": BIG}]
    r = srv.http("GET", f"/agents/{canary['agent']}", key)
    assert r.status_code == 200 and r.json()["metadata"] == {"big": BIG}, r.text
    assert srv.http("GET", f"/webhooks/{canary['hook']}", key).status_code == 200


def documented(doc: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(c) for c in doc["paths"][path][method.lower()]["responses"]}


def check_response(doc: dict[str, Any], method: str, path: str, r: httpx.Response) -> Any:
    """The service's promises for any response, whatever was sent."""
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code == 204:
        assert r.content == b""
        return None
    body = json.loads(r.content.decode("utf-8"))  # strict UTF-8 JSON
    if r.status_code >= 400:
        err = body["error"]
        assert isinstance(err["code"], str) and err["code"].isupper(), body
        assert isinstance(err["message"], str) and err["message"], body
        assert "\n" not in err["message"], body
        if err["code"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED") and "route" in err["message"]:
            return body  # a hostile segment (an encoded /) left the route: a plain 404/405
    assert r.status_code in documented(doc, method, path), (method, path, r.status_code, r.text)
    return body


# -- strategies ----------------------------------------------------------------------

# Text that can travel in a URL or JSON (no lone surrogates: not encodable as UTF-8).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
DIGITS = st.integers(min_value=0, max_value=10**40).map(str)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
HUGE = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**53, 10**400]),
)


def _segment() -> st.SearchStrategy[str]:
    """A path segment, already percent-encoded."""
    return st.one_of(
        TEXT.filter(bool).map(lambda s: quote(s, safe="")),
        st.binary(min_size=1, max_size=30).map(lambda b: quote_from_bytes(b, safe="")),
        DIGITS,
        st.builds(lambda w, d: f"cp_{w}_{d}", st.sampled_from(["wf-a", "x", "é"]), DIGITS),
        st.sampled_from(["..", ".", "%2e%2e", "a" * 300, "wh_" + "0" * 24, "%00", "%ff"]),
    )


def _query() -> st.SearchStrategy[list[tuple[str, str]]]:
    names = st.sampled_from(["limit", "offset", "from_step", "to_step", "x", "", "limit"])
    values = st.one_of(
        HUGE.map(str), DIGITS, TEXT, st.sampled_from(["", "-", "--5", "1e3", " 7 ", "0x10"])
    )
    return st.lists(st.tuples(names, values), max_size=4)


JSON_LEAF = st.one_of(
    st.none(), st.booleans(), HUGE, st.floats(allow_nan=False, allow_infinity=False), TEXT
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


def _body() -> st.SearchStrategy[bytes]:
    """Raw request bodies: near-valid ones for every body route, JSON, and junk bytes."""
    save = st.fixed_dictionaries(
        {"workflow_id": st.one_of(TEXT, st.just("hostile-wf")), "step": st.one_of(HUGE, TEXT),
         "state": JSON},
        optional={"label": JSON, "metadata": JSON, "agent_id": JSON, "extra": JSON},
    )
    agent = st.fixed_dictionaries(
        {"agent_id": st.one_of(TEXT, st.just("hostile-agent"))},
        optional={"name": JSON, "description": JSON, "capabilities": JSON, "metadata": JSON},
    )
    hook = st.fixed_dictionaries(
        {"url": st.one_of(TEXT, TEXT.map(lambda s: "http://" + s)), "events": JSON},
        optional={"secret": JSON},
    )
    as_json = st.one_of(save, agent, hook, JSON).map(
        lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    return st.one_of(
        as_json,
        st.binary(max_size=200),
        st.builds(lambda n, open_: open_ * n, st.integers(150, 12_000), st.sampled_from(
            [b"[", b'{"a":', b'{"workflow_id":"w","step":0,"state":{"a":'])),
        st.sampled_from([b"NaN", b'{"a": Infinity}', b"1" * 5000, b'"\\ud800"', b"\xff\xfe{"]),
    )


# -- properties on every route --------------------------------------------------------


@hostile(30)
@given(
    route=st.sampled_from(ROUTE_KEYS),
    segments=st.lists(_segment(), min_size=2, max_size=2),
    query=_query(),
    body=_body(),
    extra=st.dictionaries(
        st.sampled_from(["X-Checkpoint-TTL", "If-Match", "X-Request-Id", "Content-Type"]),
        st.one_of(HEADER_TEXT, DIGITS, st.integers(4000, 6000).map(lambda n: "9" * n)),
        max_size=2,
    ),
)
def test_any_route_any_input(
    srv: ServeProcess, key: str, doc: dict[str, Any], canary: dict[str, Any],
    route: tuple[str, str], segments: list[str], query: list[tuple[str, str]], body: bytes,
    extra: dict[str, str],
) -> None:
    method, template = route
    path = template
    for i, name in enumerate(re.findall(r"\{[a-z_]+\}", template)):
        path = path.replace(name, segments[i % len(segments)])
    qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    url = srv.url + path + (f"?{qs}" if qs else "")
    headers = {"Authorization": f"Bearer {key}"}
    content = None
    if method in ("POST", "PATCH"):
        headers["Content-Type"] = "application/json"
        content = body
    try:
        r = httpx.request(
            method, url, headers={**extra, **headers}, content=content, timeout=30
        )
    except httpx.LocalProtocolError:
        return  # a header value no HTTP client sends
    check_response(doc, method, template, r)
    # Cheap enough to check after every example: the canary is untouched.
    if method != "GET":
        assert_intact(srv, key, canary)


@hostile(15)
@given(route=st.sampled_from(ROUTE_KEYS), auth=st.one_of(st.none(), TEXT, st.binary(max_size=40)))
def test_bad_keys_are_401_first(
    srv: ServeProcess, doc: dict[str, Any], route: tuple[str, str], auth: Any
) -> None:
    method, template = route
    path = template.replace("{workflow_id}", "w").replace("{agent_id}", "a")
    path = path.replace("{webhook_id}", "wh_x").replace("{checkpoint_id}", "cp_w_000")
    headers: dict[str, Any] = {}
    if isinstance(auth, bytes):
        headers["Authorization"] = b"Bearer " + auth.replace(b"\r", b"").replace(b"\n", b"")
    elif auth is not None:
        headers["Authorization"] = "Bearer " + quote(auth)
    try:
        r = httpx.request(method, srv.url + path, headers=headers, content=b"[[[[", timeout=30)
    except httpx.LocalProtocolError:
        return  # bytes no HTTP client sends (the client refused them)
    if r.status_code == 400 and b"Invalid HTTP request" in r.content:
        return  # the HTTP parser itself refused the header bytes (a text/plain 400)
    body = check_response(doc, method, template, r)
    assert r.status_code == 401 and body["error"]["code"] == "UNAUTHORIZED", r.text


@hostile(12)
@given(
    state=st.dictionaries(TEXT, JSON, max_size=5),
    metadata=st.one_of(st.none(), st.dictionaries(TEXT, JSON, max_size=3)),
    big=HUGE,
)
def test_round_trip_is_exact(
    srv: ServeProcess, key: str, doc: dict[str, Any], state: dict[str, Any],
    metadata: dict[str, Any] | None, big: int,
) -> None:
    """Whatever is accepted comes back exactly (big integers too) from every reader, and
    one record's big integer never turns the other records' states into strings."""
    wf = f"rt-{uuid.uuid4().hex[:12]}"
    meta = None if metadata is None else {**metadata, "big": big}
    r0 = srv.http("POST", "/checkpoints", key,
                  json={"workflow_id": wf, "step": 0, "state": {"plain": 1}, "metadata": meta})
    r1 = srv.http("POST", "/checkpoints", key,
                  json={"workflow_id": wf, "step": 1, "state": {**state, "big": big}})
    assert (r0.status_code, r1.status_code) == (201, 201), (r0.text, r1.text)
    expected = [{"plain": 1}, {**state, "big": big}]
    replay = json.loads(srv.http("GET", f"/workflows/{wf}/replay", key).content)
    assert [c["state"] for c in replay["checkpoints"]] == expected
    assert replay["checkpoints"][0]["metadata"] == (meta or {})
    got = json.loads(srv.http("GET", f"/checkpoints/cp_{wf}_001", key).content)
    assert got["state"] == expected[1]
    resumed = json.loads(srv.http("GET", f"/workflows/{wf}/resume", key).content)
    assert resumed["latest_checkpoint"]["state"] == expected[1]
    assert srv.http("DELETE", f"/workflows/{wf}", key).status_code == 204


@hostile(20)
@given(wf=TEXT.filter(bool))
def test_workflow_id_spec_and_server_agree(
    srv: ServeProcess, key: str, doc: dict[str, Any], wf: str
) -> None:
    """The OpenAPI pattern of {workflow_id} accepts exactly the ids the server does."""
    param = doc["paths"]["/workflows/{workflow_id}/resume"]["get"]["parameters"][0]
    in_spec = re.search(param["schema"]["pattern"], wf) is not None
    r = srv.http("GET", f"/workflows/{quote(wf, safe='')}/resume", key)
    if "/" in wf or wf in (".", ".."):
        return  # the path itself changes (another route, or dot segments)
    assert (r.status_code != 400) == in_spec, (wf, r.status_code, r.text)
    saved = srv.http("POST", "/checkpoints", key, json={"workflow_id": wf, "step": 0, "state": {}})
    assert (saved.status_code == 201) == in_spec, (wf, saved.text)


@pytest.mark.parametrize(
    "query",
    [
        "/workflows?offset=285483893186204631040",
        "/workflows?limit=99999999999999999999999",
        "/workflows?offset=-1",
        "/workflows/wf-a/replay?to_step=99999999999999999999",
        "/workflows/wf-a/replay?from_step=18446744073709551616",
        "/workflows/wf-a/replay?limit=--5",
        "/workflows/wf-a/replay?from_step=" + "9" * 5000,
        "/webhooks/wh_x/deliveries?limit=9223372036854775808",
    ],
)
def test_integers_past_64_bits_are_400(srv: ServeProcess, key: str, query: str) -> None:
    r = srv.http("GET", query, key)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("digits", [4301, 5000])
def test_numbers_past_the_parser_limit_are_400(srv: ServeProcess, key: str, digits: int) -> None:
    body = b'{"workflow_id":"many-digits","step":0,"state":{"n":' + b"7" * digits + b"}}"
    r = srv.http("POST", "/checkpoints", key, content=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR", r.text
    r = srv.http("POST", "/checkpoints", key,
                 json={"workflow_id": "many-digits", "step": "9" * digits, "state": {}})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("ttl", ["9" * 5000, "0" * 40, "-5", "1e9", "99999999999999999999"])
def test_any_ttl_header_saves(srv: ServeProcess, key: str, ttl: str) -> None:
    wf = f"ttl-{uuid.uuid4().hex[:8]}"
    r = srv.http("POST", "/checkpoints", key, headers={"X-Checkpoint-TTL": ttl},
                 json={"workflow_id": wf, "step": 0, "state": {}})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "cp", ["cp_wf-a_99999999999999999999999", "cp_wf-a_9007199254740992", "cp_wf_" + "9" * 5000]
)
def test_checkpoint_ids_that_cannot_exist_are_404(srv: ServeProcess, key: str, cp: str) -> None:
    r = srv.http("GET", f"/checkpoints/{cp}", key)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", r.text


@pytest.mark.parametrize("path", ["/checkpoints", "/agents", "/webhooks"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 10_000, 100_000])
def test_deep_bodies_are_400(srv: ServeProcess, key: str, path: str, depth: int) -> None:
    body = b'{"workflow_id":"deep","step":0,"state":' + b"[" * depth + b"]" * depth + b"}"
    r = srv.http("POST", path, key, content=body)
    assert r.status_code == 400, r.text
    assert "deeper than" in r.json()["error"]["message"]


def test_deepest_allowed_state_round_trips(srv: ServeProcess, key: str) -> None:
    wf = f"deep-{uuid.uuid4().hex[:8]}"
    depth = MAX_JSON_DEPTH - 1  # the body's own object is one level
    state: Any = {"leaf": BIG}
    for _ in range(depth - 1):
        state = {"d": state}
    r = srv.http("POST", "/checkpoints", key,
                 json={"workflow_id": wf, "step": 0, "state": state, "metadata": state})
    assert r.status_code == 201, r.text
    got = json.loads(srv.http("GET", f"/workflows/{wf}/replay", key).content)
    assert got["checkpoints"][0]["state"] == state and got["checkpoints"][0]["metadata"] == state


@pytest.mark.parametrize(
    "url",
    [
        "https://exa\x01mple.com/", "https://example.com/a b", "http://example.com/\x7f",
        "https://āý\x0f", "ftp://example.com/", "javascript:alert(1)", "http://", "http:///x",
        "http://:80/", "http://example.com:99999/", "http://example.com:0/",
        "http://example.com:8x/", "http://[::1/", "http://[zz]/", "http://example.com/%zz",
        "https://example.com/\u2028", "http://ex\\ample.com/", "http://exa<mple>.com/",
    ],
)
def test_bad_webhook_urls_are_400(srv: ServeProcess, key: str, url: str) -> None:
    r = srv.http("POST", "/webhooks", key, json={"url": url, "events": ["checkpoint.saved"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "url", ["https://example.com/hook?x=1#y", "http://10.0.0.1:8080/h", "http://[2001:db8::1]:9/"]
)
def test_good_webhook_urls_are_kept(srv: ServeProcess, key: str, url: str) -> None:
    # (Which addresses may be reached is the delivery guard's business, not syntax's.)
    r = srv.http("POST", "/webhooks", key, json={"url": url, "events": ["checkpoint.saved"]})
    if r.status_code == 400 and "private" in r.text.lower():
        pytest.skip("private targets are refused by the address guard")
    assert r.status_code == 201 and r.json()["url"] == url, r.text
    assert srv.http("DELETE", f"/webhooks/{r.json()['webhook_id']}", key).status_code == 204


def test_request_id_is_echoed_only_when_plain(srv: ServeProcess) -> None:
    plain = srv.http("GET", "/health", headers={"X-Request-Id": "abc-123"})
    assert plain.headers["x-request-id"] == "abc-123"
    odd = srv.http("GET", "/health", headers={"X-Request-Id": b"a\xffb"})
    assert odd.status_code == 200 and odd.headers["x-request-id"] != "a\xffb"


def test_everything_left_intact(srv: ServeProcess, key: str, canary: dict[str, Any]) -> None:
    assert_intact(srv, key, canary)


# -- slow and idle sockets ------------------------------------------------------------


def _open(port: int, data: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        s.sendall(data)
    return s


def _answer(s: socket.socket, timeout: float) -> bytes:
    """What the server sends before closing (b"" if it just closes)."""
    s.settimeout(timeout)
    chunks = []
    try:
        while chunk := s.recv(4096):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ServeProcess(
        tmp_path_factory.mktemp("strict") / "base",
        args=("--header-timeout", "1", "--body-timeout", "1", "--keep-alive-timeout", "1",
              "--max-connections", "64"),
    )
    yield server
    assert server.stop() == 0, server.logs()
    assert "Traceback" not in server.logs(), server.logs()


SLOW_HEADS = [
    b"",  # connects and says nothing
    b"GET /health HTTP/1.1\r\n",  # half a head
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ",  # a header that never ends
    b"G",
]


@pytest.mark.parametrize("head", SLOW_HEADS)
def test_incomplete_heads_are_closed(strict: ServeProcess, head: bytes) -> None:
    s = _open(strict.port, head)
    t0 = time.monotonic()
    answer = _answer(s, timeout=15)
    s.close()
    assert time.monotonic() - t0 < 15  # closed by the server, not by our timeout
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "REQUEST_TIMEOUT"


def test_trickled_head_is_closed(strict: ServeProcess) -> None:
    """One byte at a time keeps no connection open past the head deadline."""
    s = _open(strict.port, b"GET /health HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 10:
        try:
            s.sendall(b"X")
        except OSError:
            closed = True
            break
        time.sleep(0.2)
    s.close()
    assert closed


def test_keep_alive_then_silence_is_closed(strict: ServeProcess) -> None:
    s = _open(strict.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(10)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /heal")  # the next request never completes
    assert b"HTTP/1.1 408" in _answer(s, timeout=15)
    s.close()


def test_slow_body_gets_408(strict: ServeProcess) -> None:
    key = strict.key("slow")
    head = (
        "POST /checkpoints HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    s = _open(strict.port, head + b'{"workflow_id":')
    answer = _answer(s, timeout=15)
    s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"REQUEST_TIMEOUT" in answer


def test_client_served_while_slowloris_sockets_are_open(strict: ServeProcess) -> None:
    socks = [_open(strict.port, SLOW_HEADS[i % len(SLOW_HEADS)]) for i in range(40)]
    try:
        r = httpx.get(strict.url + "/health", timeout=10)
        assert r.status_code == 200
        # ...and the slow ones were still open then (served alongside, not after).
        socks[1].settimeout(0.01)
        with pytest.raises(TimeoutError):
            socks[1].recv(1)
    finally:
        for s in socks:
            s.close()


def test_connections_past_the_cap_get_503(strict: ServeProcess) -> None:
    socks = [_open(strict.port) for _ in range(64)]
    try:
        extra = _open(strict.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _answer(extra, timeout=5)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"TOO_MANY_CONNECTIONS" in answer
    finally:
        for s in socks:
            s.close()
    # Once they are gone, service is back.
    wait_until(lambda: httpx.get(strict.url + "/health", timeout=5).status_code == 200,
               timeout=10, what="service after the cap")


def _low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def test_low_file_limit_300_slowloris(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With 128 descriptors and 300 idle sockets, real clients are still answered
    (503 at worst while the cap is full, 200 once the head deadline frees slots);
    the server never runs out of descriptors and never resets them."""
    server = ServeProcess(
        tmp_path_factory.mktemp("lowfiles") / "base",
        args=("--header-timeout", "2"),
        preexec_fn=_low_file_limit,
    )
    socks: list[socket.socket] = []
    try:
        for i in range(300):
            with contextlib.suppress(OSError):  # the backlog may be full a moment: fine
                socks.append(_open(server.port, SLOW_HEADS[i % len(SLOW_HEADS)]))
        statuses = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = httpx.get(server.url + "/health", timeout=10)  # never a reset
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.json()["error"]["code"] == "TOO_MANY_CONNECTIONS"
            time.sleep(0.2)
        assert statuses[-1] == 200, statuses
        assert server.proc.poll() is None
    finally:
        for s in socks:
            s.close()
        assert server.stop() == 0, server.logs()
    assert "Too many open files" not in server.logs(), server.logs()


# -- schemathesis over the server's own OpenAPI document --------------------------------


QUOTAS = ("MAX_AGENTS_REACHED", "MAX_WEBHOOKS_REACHED")


@pytest.fixture(scope="module")
def st_schema(srv: ServeProcess) -> Any:
    return schemathesis.openapi.from_url(srv.url + "/openapi.json")


@schemathesis.pytest.from_fixture("st_schema").parametrize()
@settings(max_examples=budget(6), deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis(case: Any, key: str) -> None:
    """Every operation: generated valid and invalid requests, every check (status codes
    and response schemas as documented, no 5xx, invalid data refused)."""
    response = case.call(headers={"Authorization": f"Bearer {key}"})
    if response.status_code == 400 and response.json()["error"]["code"] in QUOTAS:
        return  # a valid request past a per-account quota: a documented 400 by design
    case.validate_response(response, headers={"Authorization": f"Bearer {key}"})


def test_guard_also_holds_with_h11() -> None:
    """`cpf serve` uses httptools when installed, else h11: the same limits on both."""
    import threading

    import uvicorn
    from test_service_support import free_port
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from core.service.guard import guarded_protocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    protocol = guarded_protocol(H11Protocol, header_timeout=1, max_connections=5)
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, lifespan="off",
        log_level="warning", timeout_keep_alive=1,
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, what="uvicorn (h11)")
        partial = _open(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
        idle = [_open(port) for _ in range(4)]
        extra = _open(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _answer(extra, timeout=5).startswith(b"HTTP/1.1 503")
        assert _answer(partial, timeout=10).startswith(b"HTTP/1.1 408")
        for s in [partial, extra, *idle]:
            s.close()

        def served() -> socket.socket | None:
            s = _open(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(10)
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                return s
            s.close()  # a 503 while the closed ones are still being counted
            return None

        ok = wait_until(served, timeout=10, what="a slot after the others closed")
        ok.sendall(b"GET /x")
        assert b"HTTP/1.1 408" in _answer(ok, timeout=10)
        ok.close()
    finally:
        server.should_exit = True
        thread.join(15)
