"""Webhook targets against a real `cpf serve`: no calls into the server's own network.

By default a webhook URL on loopback, link-local (cloud metadata), private or otherwise
non-public addresses is refused at registration (400) and again at every delivery (a
failed attempt with the reason in the delivery log). `--allow-private-webhooks` (or
CPF_WEBHOOK_ALLOW_PRIVATE=1) lifts the address rules for local development.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from test_service_support import Receiver, ServeProcess, wait_until

REFUSED = {
    "http://127.0.0.1:9/hook": "127.0.0.1 is not a public address: loopback",
    "http://localhost:9/hook": "resolves to",
    "http://169.254.169.254/latest/meta-data": "link-local (cloud metadata)",
    "http://2852039166/": "169.254.169.254, not a public address: link-local",
    "http://0x7f.1/": "127.0.0.1, not a public address: loopback",
    "http://[::1]:9/": "loopback",
    "http://[::ffff:127.0.0.1]/": "IPv4-mapped carrying 127.0.0.1",
    "http://[64:ff9b::a9fe:a9fe]/": "NAT64 carrying 169.254.169.254",
    "http://[2002:a9fe:a9fe::]/": "6to4 carrying 169.254.169.254",
    "https://10.1.2.3/": "private",
    "https://[fd00:ec2::254]/": "unique local",
    "http://100.64.0.1/": "shared address space",
    "http://0.0.0.0:9/": "unspecified",
    "http://127.0.0.1:99999/": "port 99999 is out of range",
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # It registers a public address: it must never send to it.
    server = ServeProcess(
        tmp_path_factory.mktemp("serve-targets") / "base", args=("--no-webhook-delivery",)
    )
    yield server
    assert server.stop() == 0, server.logs()
    assert "Traceback" not in server.logs(), server.logs()


def test_registration_refuses_non_public_targets(strict: ServeProcess) -> None:
    key = strict.key("targets-" + uuid.uuid4().hex[:8])
    for url, says in REFUSED.items():
        r = strict.http("POST", "/webhooks", key, json={"url": url, "events": ["checkpoint.saved"]})
        assert r.status_code == 400, (url, r.text)
        error = r.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["message"].startswith("webhook url refused: "), error
        assert says in error["message"], (url, error["message"])
        assert "\n" not in error["message"]
        if "out of range" not in says:
            assert "--allow-private-webhooks" in error["message"]
    assert strict.http("GET", "/webhooks", key).json()["webhooks"] == []
    # A public address is accepted; so is a name that does not resolve now (its
    # deliveries are checked again, and fail, when they are made).
    for url in ("https://93.184.215.14/hook", "https://hooks.example.invalid/in"):
        r = strict.http("POST", "/webhooks", key, json={"url": url, "events": ["checkpoint.saved"]})
        assert r.status_code == 201, (url, r.text)
    assert len(strict.http("GET", "/webhooks", key).json()["webhooks"]) == 2


def _deliveries(srv: ServeProcess, key: str, hook_id: str) -> list[dict[str, Any]]:
    r = srv.http("GET", f"/webhooks/{hook_id}/deliveries", key)
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


def test_delivery_refused_when_the_server_does_not_allow_private_targets(
    tmp_path: Path,
) -> None:
    """Registered while the flag was on, delivered by a server without it: refused at
    delivery, recorded as a failed attempt, and the receiver hears nothing."""
    base = tmp_path / "base"
    rx = Receiver()
    try:
        dev = ServeProcess(base, args=("--allow-private-webhooks",))
        try:
            key = dev.key("flagged")
            client = dev.client(key)
            hook = client.register_webhook(rx.url + "/in", ["checkpoint.saved"])
            client.save("wf-dev", 0, {"v": 0})
            [first] = rx.wait_for(lambda bodies: len(bodies) >= 1)
            assert first["event"] == "checkpoint.saved"
            client.close()
        finally:
            assert dev.stop() == 0, dev.logs()
        assert "may target loopback, private and link-local" in dev.logs()

        prod = ServeProcess(base)
        try:
            client = prod.client(key)
            client.save("wf-prod", 0, {"v": 1})
            log = wait_until(
                lambda: [
                    d
                    for d in _deliveries(prod, key, hook["webhook_id"])
                    if d["data"].get("workflow_id") == "wf-prod" and d["attempts"] >= 1
                ],
                what="a recorded delivery attempt",
            )
            [attempt] = log
            assert attempt["status"] in ("pending", "failed"), attempt
            assert attempt["last_status_code"] is None
            assert attempt["last_error"].startswith(
                "refused: 127.0.0.1 is not a public address: loopback"
            ), attempt
            assert "--allow-private-webhooks" in attempt["last_error"]
            assert len(rx.bodies()) == 1  # only the delivery made under the flag
            client.close()
        finally:
            assert prod.stop() == 0, prod.logs()
            assert "Traceback" not in prod.logs(), prod.logs()
    finally:
        rx.close()


def test_no_webhook_delivery_queues_and_sends_nothing(tmp_path: Path) -> None:
    """`--no-webhook-delivery`: deliveries are queued, none is sent; a delivering server on
    the same store sends them later (the replica without egress)."""
    base = tmp_path / "base"
    rx = Receiver()
    try:
        quiet = ServeProcess(base, args=("--allow-private-webhooks", "--no-webhook-delivery"))
        try:
            key = quiet.key("quiet")
            client = quiet.client(key)
            hook = client.register_webhook(rx.url + "/in", ["checkpoint.saved"])
            client.save("wf-quiet", 0, {"v": 0})
            client.close()
            [queued] = _deliveries(quiet, key, hook["webhook_id"])
            assert queued["status"] == "pending" and queued["attempts"] == 0, queued
            assert rx.bodies() == []
        finally:
            assert quiet.stop() == 0, quiet.logs()
        assert rx.bodies() == []
        loud = ServeProcess(base, args=("--allow-private-webhooks",))
        try:
            [sent] = rx.wait_for(lambda bodies: len(bodies) >= 1)
            assert sent["data"]["workflow_id"] == "wf-quiet", sent
        finally:
            assert loud.stop() == 0, loud.logs()
    finally:
        rx.close()
