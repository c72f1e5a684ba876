"""Tests of the `api` step kind.

Black-box through the `cpf` CLI against a real HTTP server this module starts on
127.0.0.1 (reached through the opt-in: `defaults.api.allow_private: true` or
`CPF_API_ALLOW_PRIVATE=1`), the default refusal of loopback / private / link-local /
unresolvable hosts, and a unit test of `core.steps.api` with an injected
`httpx.MockTransport`.

Contract §5 (api), §12 defects 5 (`${item}` in non-cli foreach bodies) and 14 (api `outputs`
schema not validated, dict bodies not interpolated), §13 (refusal with an opt-in).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import CpfRunner, step_results_for

# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(status)
            if body:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._reply(status, json.dumps(value).encode())

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            record = {
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": raw.decode("utf-8", "replace"),
            }
            with server.lock:
                server.requests.append(record)
            path = parts.path
            if path == "/json":
                self._json(200, {"name": "widget", "n": 7})
            elif path == "/list":
                self._json(200, [1, 2])
            elif path == "/jsonstr":
                self._json(200, "just a string")
            elif path == "/text":
                self._reply(200, b"hello there", "text/plain")
            elif path == "/empty":
                self._reply(204)
            elif path.startswith("/status/"):
                self._json(int(path.rsplit("/", 1)[1]), {"error": "as requested"})
            elif path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/json")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/slow":
                time.sleep(3)
                self._json(200, {"slow": True})
            elif path.startswith("/flaky/"):
                with server.lock:
                    n = server.counters[path] = server.counters.get(path, 0) + 1
                if n == 1:
                    self._json(500, {"error": "try again"})
                else:
                    self._json(200, {"attempt": n})
            elif path.startswith("/echo"):
                body: Any = record["body"]
                if record["headers"].get("content-type", "").startswith("application/json"):
                    body = json.loads(body)
                self._json(
                    200,
                    {
                        "method": self.command,
                        "path": path,
                        "query": parts.query,
                        "token": record["headers"].get("x-token"),
                        "body": body,
                    },
                )
            else:
                self._json(404, {"error": "no such path"})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    httpd.daemon_threads = True
    srv.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def no_optin(cpf: CpfRunner) -> CpfRunner:
    """The runner without the environment opt-in, whatever the caller's environment says."""
    cpf.env.pop("CPF_API_ALLOW_PRIVATE", None)
    return cpf


def _doc(steps: str, *, allow_private: bool | None = True, wf_id: str = "api") -> str:
    defaults = (
        ""
        if allow_private is None
        else f"  defaults: {{ api: {{ allow_private: {str(allow_private).lower()} }} }}\n"
    )
    return (
        "schema_version: checkpointflow/v1\n"
        "workflow:\n"
        f"  id: {wf_id}\n"
        f"{defaults}"
        "  inputs: { type: object }\n"
        "  steps:\n" + steps.strip("\n") + "\n"
    )


# --------------------------------------------------------------------------- outputs


SHAPES = """
    - id: obj
      kind: api
      method: GET
      url: ${inputs.base}/json
      outputs:
        type: object
        required: [name, n, status_code]
        properties: { n: { type: integer } }
    - id: arr
      kind: api
      method: GET
      url: ${inputs.base}/list
    - id: jstr
      kind: api
      method: GET
      url: ${inputs.base}/jsonstr
    - id: text
      kind: api
      method: GET
      url: ${inputs.base}/text
    - id: empty
      kind: api
      method: GET
      url: ${inputs.base}/empty
    - id: post
      kind: api
      method: POST
      url: ${inputs.base}/echo/${inputs.name}?n=${inputs.n}
      headers:
        X-Token: "t-${inputs.name}"
      body:
        name: ${inputs.name}
        n: ${inputs.n}
        greeting: "hello ${inputs.name}"
        nested: { list: ["${inputs.name}", "${inputs.n}"], flag: true }
    - id: put_text
      kind: api
      method: PUT
      url: ${inputs.base}/echo
      body: "name=${inputs.name}&n=${inputs.n}"
    - id: patch
      kind: api
      method: PATCH
      url: ${inputs.base}/echo
      body: { v: 1 }
    - id: delete
      kind: api
      method: DELETE
      url: ${inputs.base}/echo
    - id: not_found_ok
      kind: api
      method: GET
      url: ${inputs.base}/status/404
      success: { status_codes: [404] }
    - id: redirect
      kind: api
      method: GET
      url: ${inputs.base}/redirect
      success: { status_codes: [302] }
    - id: skipped
      kind: api
      if: inputs.n > 100
      method: GET
      url: ${inputs.base}/never
    - id: flaky
      kind: api
      method: GET
      url: ${inputs.base}/flaky/top
      retry: { max_attempts: 2 }
    - id: done
      kind: end
      result:
        obj: ${steps.obj.outputs}
        arr: ${steps.arr.outputs}
        jstr: ${steps.jstr.outputs}
        text: ${steps.text.outputs}
        empty: ${steps.empty.outputs}
        post: ${steps.post.outputs}
        put_text: ${steps.put_text.outputs.body}
        patch: ${steps.patch.outputs.method}
        delete: ${steps.delete.outputs.method}
        not_found: ${steps.not_found_ok.outputs}
        redirect: ${steps.redirect.outputs.status_code}
        skipped: '${"skipped" in steps}'
        flaky: ${steps.flaky.outputs}
"""


def test_api_outputs_and_requests_through_the_workflow_opt_in(
    cpf: CpfRunner, no_optin: CpfRunner, server: Server, write_workflow
) -> None:
    path = write_workflow(_doc(SHAPES))
    inputs = json.dumps({"base": server.url, "name": "Ada", "n": 3})
    env = cpf.ok("run", "-f", str(path), "--input", inputs)
    assert env["status"] == "completed"
    result = env["result"]
    # JSON object body -> its keys; other JSON -> {"body": v}; text -> {"body": text};
    # status_code always added.
    assert result["obj"] == {"name": "widget", "n": 7, "status_code": 200}
    assert result["arr"] == {"body": [1, 2], "status_code": 200}
    assert result["jstr"] == {"body": "just a string", "status_code": 200}
    assert result["text"] == {"body": "hello there", "status_code": 200}
    assert result["empty"] == {"status_code": 204}
    # url, headers and a mapping body are all interpolated; a lone ${...} keeps its type.
    assert result["post"] == {
        "method": "POST",
        "path": "/echo/Ada",
        "query": "n=3",
        "token": "t-Ada",
        "body": {
            "name": "Ada",
            "n": 3,
            "greeting": "hello Ada",
            "nested": {"list": ["Ada", 3], "flag": True},
        },
        "status_code": 200,
    }
    # A string body is interpolated and sent as it is.
    assert result["put_text"] == "name=Ada&n=3"
    assert result["patch"] == "PATCH"
    assert result["delete"] == "DELETE"
    assert result["not_found"] == {"error": "as requested", "status_code": 404}
    # Redirects are not followed.
    assert result["redirect"] == 302
    assert result["skipped"] is False
    assert result["flaky"] == {"attempt": 2, "status_code": 200}

    paths = server.paths()
    assert "/never" not in paths
    assert paths.count("/json") == 1  # only the `obj` step; the redirect was not followed
    assert paths.count("/flaky/top") == 2
    [post_req] = [r for r in server.requests if r["method"] == "POST"]
    assert post_req["headers"]["content-type"].startswith("application/json")

    ins = cpf.inspect(env["run_id"])
    flaky = step_results_for(ins, "flaky")
    assert [(r["attempt"], r["status"]) for r in flaky] == [(1, "failed"), (2, "completed")]
    assert flaky[0]["error_code"] == "ERR_STEP_FAILED"
    assert "500" in flaky[0]["error_message"]
    [text] = step_results_for(ins, "text")
    assert text["step_kind"] == "api"
    # The response body is stored as the step's stdout.
    assert Path(text["stdout_path"]).read_text() == "hello there"
    assert step_results_for(ins, "skipped") == []


def test_api_opt_in_by_environment_variable(
    no_optin: CpfRunner, server: Server, write_workflow
) -> None:
    cpf = no_optin
    path = write_workflow(
        _doc(
            """
    - id: obj
      kind: api
      method: GET
      url: ${inputs.base}/json
    - id: done
      kind: end
      result: ${steps.obj.outputs}
""",
            allow_private=None,
        )
    )
    env = dict(cpf.env, CPF_API_ALLOW_PRIVATE="1")
    out = cpf.ok("run", "-f", str(path), "--input", json.dumps({"base": server.url}), env=env)
    assert out["result"] == {"name": "widget", "n": 7, "status_code": 200}
    assert server.paths() == ["/json"]


# --------------------------------------------------------------------------- failures


def test_api_status_outputs_schema_and_timeout_failures(
    cpf: CpfRunner, no_optin: CpfRunner, server: Server, write_workflow
) -> None:
    base = json.dumps({"base": server.url})
    # A status outside success.status_codes (default 200/201/204).
    path = write_workflow(
        _doc(
            """
    - id: call
      kind: api
      method: GET
      url: ${inputs.base}/status/404
    - id: after
      kind: cli
      command: touch after
"""
        ),
        "status.yaml",
    )
    env = cpf.ok("run", "-f", str(path), "--input", base, exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "call"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "404" in env["error"]["message"]
    assert not (cpf.cwd / "after").exists()

    # Defect 14: the declared outputs schema is validated.
    path = write_workflow(
        _doc(
            """
    - id: call
      kind: api
      method: GET
      url: ${inputs.base}/json
      outputs:
        type: object
        required: [missing_key]
"""
        ),
        "schema.yaml",
    )
    env = cpf.ok("run", "-f", str(path), "--input", base, exit_code=30)
    assert env["current_step_id"] == "call"
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"
    assert "missing_key" in env["error"]["message"]

    # timeout_seconds: the server answers after 3 s.
    path = write_workflow(
        _doc(
            """
    - id: call
      kind: api
      method: GET
      url: ${inputs.base}/slow
      timeout_seconds: 1
"""
        ),
        "timeout.yaml",
    )
    started = time.monotonic()
    env = cpf.ok("run", "-f", str(path), "--input", base, exit_code=30)
    assert time.monotonic() - started < 10
    assert env["current_step_id"] == "call"
    assert env["error"]["code"] == "ERR_TIMEOUT"


def test_api_refuses_loopback_by_default(
    no_optin: CpfRunner, server: Server, write_workflow
) -> None:
    cpf = no_optin
    # `allow_private: false` is the default (the other refusal test sets no defaults).
    path = write_workflow(
        _doc(
            """
    - id: call
      kind: api
      method: GET
      url: ${inputs.base}/json
    - id: after
      kind: cli
      command: touch after
""",
            allow_private=False,
        )
    )
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps({"base": server.url}), exit_code=30)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"]
    assert env["current_step_id"] == "call"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "127.0.0.1" in env["error"]["message"]
    assert not (cpf.cwd / "after").exists()
    # Refused before connecting: the server saw nothing.
    assert server.requests == []


REFUSED = {
    "localhost": "http://localhost:9/x",
    "private10": "http://10.1.2.3/x",
    "private192": "http://192.168.1.1/x",
    "private172": "https://172.16.0.1/x",
    "link_local": "http://169.254.169.254/latest/meta-data",
    "ipv6_loopback": "http://[::1]:9/x",
    "unspecified": "http://0.0.0.0:9/x",
    "unresolvable": "http://no-such-host.invalid/x",
    "not_http": "file:///etc/passwd",
}


def test_api_refuses_private_and_unresolvable_hosts(no_optin: CpfRunner, write_workflow) -> None:
    cpf = no_optin
    steps = "".join(
        f"""
    - id: {name}
      kind: api
      method: GET
      url: "{url}"
      timeout_seconds: 2
"""
        for name, url in REFUSED.items()
    )
    branches = ", ".join(f"{{ start_at: {name} }}" for name in REFUSED)
    path = write_workflow(
        _doc(
            f"""
    - id: fan
      kind: parallel
      branches: [{branches}]
{steps}
""",
            allow_private=None,
        )
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["current_step_id"] == "fan"
    for name in REFUSED:
        assert name in env["error"]["message"], name
    ins = cpf.inspect(env["run_id"])
    for name in REFUSED:
        [rec] = step_results_for(ins, name)
        assert rec["status"] == "failed", rec
        assert rec["error_code"] == "ERR_STEP_FAILED", rec
        assert "refused" in rec["error_message"], rec


# --------------------------------------------------------------------------- contexts


def test_api_in_foreach_body_parallel_branch_and_sub_workflow(
    cpf: CpfRunner, no_optin: CpfRunner, server: Server, write_workflow
) -> None:
    write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: child_api
          defaults: { api: { allow_private: true } }
          inputs: { type: object, required: [base], properties: { base: { type: string } } }
          steps:
            - id: child_call
              kind: api
              method: POST
              url: ${inputs.base}/echo/child
              body: { from: child }
              retry: { max_attempts: 2 }
              outputs: { type: object, required: [body] }
            - id: child_flaky
              kind: api
              method: GET
              url: ${inputs.base}/flaky/child
              retry: { max_attempts: 2 }
            - id: child_skip
              kind: api
              if: inputs.base == ""
              method: GET
              url: ${inputs.base}/never
        """,
        "parts/child_api.yaml",
    )
    path = write_workflow(
        _doc(
            """
    - id: loop
      kind: foreach
      items: ${["a", "b"]}
      body:
        - id: per_item
          kind: api
          method: POST
          url: ${inputs.base}/echo/${item}?i=${item_index}
          body: { item: "${item}", index: "${item_index}" }
          outputs: { type: object, required: [body] }
        - id: body_flaky
          kind: api
          if: item == "b"
          method: GET
          url: ${inputs.base}/flaky/body
          retry: { max_attempts: 2 }
    - id: fan
      kind: parallel
      branches: [{ start_at: branch_call }, { start_at: branch_flaky }]
    - id: branch_call
      kind: api
      method: GET
      url: ${inputs.base}/json
      outputs: { type: object, required: [name] }
    - id: branch_flaky
      kind: api
      method: GET
      url: ${inputs.base}/flaky/branch
      retry: { max_attempts: 2 }
    - id: sub
      kind: workflow
      workflow_ref: parts/child_api.yaml
      inputs: { base: "${inputs.base}" }
    - id: done
      kind: end
      result:
        loop: ${steps.loop.outputs.iterations}
        fan: ${steps.fan.outputs}
        sub: ${steps.sub.outputs}
"""
        )
    )
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps({"base": server.url}))
    result = env["result"]
    # Defect 5: ${item} / ${item_index} reach an api body step (url and mapping body).
    assert [it["per_item"] for it in result["loop"]] == [
        {
            "method": "POST",
            "path": "/echo/a",
            "query": "i=0",
            "token": None,
            "body": {"item": "a", "index": 0},
            "status_code": 200,
        },
        {
            "method": "POST",
            "path": "/echo/b",
            "query": "i=1",
            "token": None,
            "body": {"item": "b", "index": 1},
            "status_code": 200,
        },
    ]
    assert "body_flaky" not in result["loop"][0]
    assert result["loop"][1]["body_flaky"] == {"attempt": 2, "status_code": 200}
    assert result["fan"] == {
        "branch_call": {"name": "widget", "n": 7, "status_code": 200},
        "branch_flaky": {"attempt": 2, "status_code": 200},
    }
    assert result["sub"]["child_call"]["body"] == {"from": "child"}
    assert result["sub"]["child_flaky"] == {"attempt": 2, "status_code": 200}
    assert "child_skip" not in result["sub"]
    assert "/never" not in server.paths()

    ins = cpf.inspect(env["run_id"])
    [loop] = step_results_for(ins, "loop")
    [fan] = step_results_for(ins, "fan")
    [sub] = step_results_for(ins, "sub")
    for step_id, parent in (
        ("per_item", loop),
        ("body_flaky", loop),
        ("branch_call", fan),
        ("branch_flaky", fan),
        ("child_call", sub),
        ("child_flaky", sub),
    ):
        recs = step_results_for(ins, step_id)
        assert recs and all(r["parent_id"] == parent["id"] for r in recs), step_id
    for step_id in ("body_flaky", "branch_flaky", "child_flaky"):
        recs = step_results_for(ins, step_id)
        assert [(r["attempt"], r["status"]) for r in recs] == [(1, "failed"), (2, "completed")]


# --------------------------------------------------------------------------- unit


def test_api_step_with_injected_mock_transport(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import httpx

    import core.steps.api as api
    from core.steps.base import StepContext

    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/items":
            return httpx.Response(201, json={"id": 42, "echo": json.loads(request.content)})
        if request.url.path == "/list":
            return httpx.Response(200, json=["x"])
        if request.url.path == "/text":
            return httpx.Response(200, text="plain")
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("too slow", request=request)
        return httpx.Response(500, text="boom")

    monkeypatch.setattr(api, "transport", httpx.MockTransport(handle))
    monkeypatch.delenv("CPF_API_ALLOW_PRIVATE", raising=False)

    def ctx(step: dict[str, Any], allow_private: bool = True) -> StepContext:
        return StepContext(
            run_id="r" * 32,
            step={"kind": "api", **step},
            attempt=1,
            scope={"inputs": {"who": "Ada", "n": 2}, "steps": {}},
            defaults={"api": {"allow_private": allow_private}},
            workflow_path=tmp_path / "wf.yaml",
            run_dir=tmp_path / "run",
            cancel=threading.Event(),
            output=lambda _batch: None,
        )

    out = api.run(
        ctx(
            {
                "id": "create",
                "method": "POST",
                "url": "https://api.example.test/items?who=${inputs.who}",
                "headers": {"Authorization": "Bearer ${inputs.who}"},
                "body": {"who": "${inputs.who}", "n": "${inputs.n}", "tag": "n=${inputs.n}"},
            }
        )
    )
    assert out.status == "completed", out.error
    assert out.outputs == {
        "id": 42,
        "echo": {"who": "Ada", "n": 2, "tag": "n=2"},
        "status_code": 201,
    }
    req = seen[-1]
    assert req.method == "POST"
    assert str(req.url) == "https://api.example.test/items?who=Ada"
    assert req.headers["authorization"] == "Bearer Ada"
    assert json.loads(Path(out.stdout_path).read_text()) == {
        "id": 42,
        "echo": {"who": "Ada", "n": 2, "tag": "n=2"},
    }

    out = api.run(ctx({"id": "l", "method": "GET", "url": "https://api.example.test/list"}))
    assert out.outputs == {"body": ["x"], "status_code": 200}
    out = api.run(ctx({"id": "t", "method": "GET", "url": "https://api.example.test/text"}))
    assert out.outputs == {"body": "plain", "status_code": 200}

    out = api.run(ctx({"id": "e", "method": "GET", "url": "https://api.example.test/err"}))
    assert out.status == "failed"
    assert out.error.code == "ERR_STEP_FAILED"
    assert "500" in out.error.message

    out = api.run(
        ctx(
            {
                "id": "s",
                "method": "GET",
                "url": "https://api.example.test/list",
                "outputs": {"type": "object", "required": ["nope"]},
            }
        )
    )
    assert out.status == "failed"
    assert out.error.code == "ERR_STEP_OUTPUT_INVALID"

    out = api.run(
        ctx(
            {
                "id": "w",
                "method": "GET",
                "url": "https://api.example.test/slow",
                "timeout_seconds": 1,
            }
        )
    )
    assert out.status == "failed"
    assert out.error.code == "ERR_TIMEOUT"

    # Without the opt-in, a private address is refused before the transport is used.
    count = len(seen)
    out = api.run(
        ctx({"id": "p", "method": "GET", "url": "http://10.0.0.1/items"}, allow_private=False)
    )
    assert out.status == "failed"
    assert out.error.code == "ERR_STEP_FAILED"
    assert "refused" in out.error.message
    assert len(seen) == count


# --------------------------------------------------------------------------- hostile URLs

HOSTILE = {
    # malformed: refused before any lookup, never exit 90
    "bad_port": ("http://127.0.0.1:99999/", "port 99999 is out of range"),
    "zero_port": ("http://127.0.0.1:0/", "port 0 is out of range"),
    "open_bracket": ("http://[::1/", "malformed URL"),
    "no_host": ("http:///x", "no host"),
    "bad_scheme": ("gopher://example.com/", "only http and https"),
    "bad_octet": ("http://256.0.0.1/", "malformed URL"),
    # IPv4 spelled as numbers, and carried inside IPv6
    "decimal": ("http://2852039166/", "169.254.169.254, not a public address: link-local"),
    "hex_short": ("http://0x7f.1/", "127.0.0.1, not a public address: loopback"),
    "nat64": ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 carrying 169.254.169.254"),
    "sixtofour": ("http://[2002:a9fe:a9fe::]/", "6to4 carrying 169.254.169.254"),
    "compat": ("http://[::a9fe:a9fe]/", "IPv4-compatible"),
    "mapped": ("http://[::ffff:127.0.0.1]/", "IPv4-mapped carrying 127.0.0.1"),
    "teredo": ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    "cgnat": ("http://100.64.0.1/", "shared address space"),
    "ula_metadata": ("http://[fd00:ec2::254]/", "unique local"),
}
MALFORMED = ("bad_port", "zero_port", "open_bracket", "no_host", "bad_scheme", "bad_octet")


def _fan_from_inputs(names: list[str]) -> str:
    """A parallel step over one api step per name, each URL taken from run input."""
    branches = ", ".join(f"{{ start_at: {name} }}" for name in names)
    steps = "".join(
        f"""
    - id: {name}
      kind: api
      method: GET
      url: ${{inputs.{name}}}
      timeout_seconds: 2
"""
        for name in names
    )
    return f"    - id: fan\n      kind: parallel\n      branches: [{branches}]\n{steps}"


@pytest.mark.parametrize("opt_in", [False, True])
def test_api_hostile_urls_fail_the_step_cleanly(
    no_optin: CpfRunner, write_workflow, opt_in: bool
) -> None:
    """Each URL comes from run input, as an attacker would send it: every branch fails
    with a one-line refusal, exit 30, never 90. The opt-in lifts the address rules (so
    only malformed URLs are sent then: nothing here may reach a real address), but a
    malformed URL is refused all the same."""
    cpf = no_optin
    names = list(MALFORMED if opt_in else HOSTILE)
    path = write_workflow(_doc(_fan_from_inputs(names), allow_private=None))
    urls = {name: HOSTILE[name][0] for name in names}
    env = dict(cpf.env, CPF_API_ALLOW_PRIVATE="1") if opt_in else None
    out = cpf.ok("run", "-f", str(path), "--input", json.dumps(urls), exit_code=30, env=env)
    assert out["error"]["code"] == "ERR_STEP_FAILED"
    ins = cpf.inspect(out["run_id"])
    for name in names:
        [rec] = step_results_for(ins, name)
        assert rec["status"] == "failed", rec
        assert rec["error_code"] == "ERR_STEP_FAILED", rec
        assert "request refused" in rec["error_message"], rec
        assert HOSTILE[name][1] in rec["error_message"], (name, rec["error_message"])
        assert "\n" not in rec["error_message"]
