"""Support for the `cpf serve` tests (no tests here): a real server, keys, a receiver.

`ServeProcess` starts `cpf serve` on 127.0.0.1 with a free port and its own store
(CHECKPOINTFLOW_BASE_DIR), waits for /health, and creates keys with the real
`cpf keys create --account A`. `Receiver` is a small HTTP server the tests run to
receive webhook deliveries.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import storedb

CPF = shutil.which("cpf") or str(Path(sys.executable).parent / "cpf")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpf_env(base: Path, **extra: str) -> dict[str, str]:
    # The base dir's store (a database of its own under the PostgreSQL switch).
    env = storedb.store_env(dict(os.environ), storedb.url_for_base(base))
    env.pop("CPF_WEBHOOK_ALLOW_PRIVATE", None)  # the default refuses private targets
    env["CHECKPOINTFLOW_BASE_DIR"] = str(base)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_cpf(env: dict[str, str], *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run `cpf ARGS` and return its envelope (exit status must equal exit_code)."""
    proc = subprocess.run(
        [CPF, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    envelope = json.loads(proc.stdout)
    assert proc.returncode == envelope["exit_code"], proc.stdout + proc.stderr
    return envelope


class ServeProcess:
    def __init__(
        self,
        base: Path,
        *,
        rate_limit: int = 100_000,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.env = cpf_env(base, **(env or {}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (base / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [
                CPF, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--rate-limit", str(rate_limit), *args,
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cpf serve exited: {self.logs()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"cpf serve did not answer /health: {self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.base / "serve.log").read_text()

    def key(self, account: str) -> str:
        env = run_cpf(self.env, "keys", "create", "--account", account)
        assert env["ok"] is True, env
        key = env["result"]["api_key"]
        assert key.startswith("snp_") and len(key) == 36
        return key

    def cpf(self, *args: str) -> dict[str, Any]:
        return run_cpf(self.env, *args)

    def client(self, key: str, **kw: Any) -> Any:
        from snapstate_sdk import SnapStateClient

        return SnapStateClient(api_key=key, base_url=self.url, **kw)

    def http(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


class Receiver:
    """Records webhook deliveries; `plan(n)` gives the status of the n-th request."""

    def __init__(self, plan: Callable[[int], int] = lambda n: 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plan = plan
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                status = outer.plan(n)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bodies = self.bodies()
            if predicate(bodies):
                return bodies
            time.sleep(0.05)
        raise AssertionError(f"webhook receiver: condition not met; got {self.bodies()}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)
