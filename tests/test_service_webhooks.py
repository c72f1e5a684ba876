"""Webhooks (signed, retried, scoped) and TTL expiry against a real `cpf serve`.

The server sweeps expired checkpoints every 0.3 s (CPF_SWEEP_INTERVAL) so expiry and
`workflow.expired` can be observed quickly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import storedb
from snapstate_sdk import ConflictError, NotFoundError
from test_service_support import Receiver, ServeProcess, wait_until

SECRET = "s3cr3t-for-tests"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # The receivers listen on 127.0.0.1: this server opts in to private webhook targets.
    server = ServeProcess(
        tmp_path_factory.mktemp("serve-hooks") / "base",
        env={"CPF_SWEEP_INTERVAL": "0.3", "CPF_WEBHOOK_ALLOW_PRIVATE": "1"},
    )
    yield server
    assert server.stop() == 0, server.logs()
    assert "Traceback" not in server.logs(), server.logs()


def wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def verify(request: dict[str, Any], secret: str) -> dict[str, Any]:
    """What a receiver does: check the signature, then trust the body's id and time."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-checkpoint-signature"], expected)
    body = json.loads(request["body"])
    assert headers["x-checkpoint-delivery"] == body["delivery_id"]
    assert headers["x-checkpoint-timestamp"] == str(body["sent_at"])
    assert headers["x-checkpoint-event"] == body["event"]
    assert abs(time.time() - int(headers["x-checkpoint-timestamp"])) < 300
    assert headers["content-type"] == "application/json"
    return body


def test_delivery_signed_retried_and_scoped(srv: ServeProcess) -> None:
    # Receiver A answers 500 to the first delivery, then 200.
    rx_a = Receiver(plan=lambda n: 500 if n == 0 else 200)
    rx_b = Receiver()
    key_a, key_b = srv.key("hooks-a"), srv.key("hooks-b")
    a, b = srv.client(key_a), srv.client(key_b)
    try:
        hook_a = a.register_webhook(
            rx_a.url + "/a", ["checkpoint.saved", "workflow.resumed"], secret=SECRET
        )
        b.register_webhook(rx_b.url + "/b", ["checkpoint.saved", "workflow.resumed",
                                             "workflow.expired"])
        w = wid("hooked")
        saved = a.save(w, 0, {"x": 1})

        bodies = rx_a.wait_for(lambda bs: len(bs) >= 2, timeout=30)
        first, second = rx_a.requests[0], rx_a.requests[1]
        b1, b2 = verify(first, SECRET), verify(second, SECRET)
        assert b1["delivery_id"] == b2["delivery_id"]  # a retry of the same event
        assert (b1["attempt"], b2["attempt"]) == (1, 2)
        assert b2["event"] == "checkpoint.saved"
        assert b2["webhook_id"] == hook_a["webhook_id"]
        assert b2["data"]["workflow_id"] == w
        assert b2["data"]["checkpoint_id"] == saved.checkpoint_id
        assert b2["data"]["step"] == 0 and b2["data"]["etag"] == saved.etag
        assert bodies[0]["delivery_id"] == bodies[1]["delivery_id"]

        a.resume(w)
        resumed = rx_a.wait_for(
            lambda bs: any(x["event"] == "workflow.resumed" for x in bs), timeout=30
        )
        event = next(x for x in resumed if x["event"] == "workflow.resumed")
        assert event["data"]["workflow_id"] == w and event["data"]["step"] == 0

        log = srv.http("GET", f"/webhooks/{hook_a['webhook_id']}/deliveries", key_a).json()
        saved_log = [d for d in log["deliveries"] if d["event"] == "checkpoint.saved"]
        assert saved_log[0]["status"] == "delivered" and saved_log[0]["attempts"] == 2
        assert saved_log[0]["last_status_code"] == 200
        # Another account cannot read A's delivery log.
        r = srv.http("GET", f"/webhooks/{hook_a['webhook_id']}/deliveries", key_b)
        assert r.status_code == 404

        # B's own save reaches only B's receiver; A's events never reached B.
        b.save(wid("b-own"), 0, {"y": 1})
        got_b = rx_b.wait_for(lambda bs: len(bs) >= 1, timeout=30)
        time.sleep(0.5)
        assert all(x["data"]["workflow_id"] != w for x in rx_b.bodies()), got_b
        assert "x-checkpoint-signature" not in {k.lower() for k in rx_b.requests[0]["headers"]}
        assert all(x["data"]["workflow_id"] == w for x in rx_a.bodies())
    finally:
        a.close()
        b.close()
        rx_a.close()
        rx_b.close()


def test_ttl_expiry_and_workflow_expired(srv: ServeProcess) -> None:
    rx = Receiver()
    key = srv.key("ttl-co")
    client = srv.client(key)
    try:
        client.register_webhook(rx.url, ["workflow.expired"], secret=SECRET)
        short = wid("short")
        s0 = client.save(short, 0, {"v": 0}, ttl_seconds=1)
        created = datetime.fromisoformat(s0.created_at.replace("Z", "+00:00"))
        got = srv.http("GET", f"/checkpoints/{s0.checkpoint_id}", key).json()
        expires = datetime.fromisoformat(got["expires_at"].replace("Z", "+00:00"))
        assert timedelta(seconds=0.9) <= expires - created <= timedelta(seconds=1.1)

        # Older checkpoints expire on their own; the workflow lives while its head does.
        mixed = wid("mixed")
        m0 = client.save(mixed, 0, {"v": 0}, ttl_seconds=1)
        client.save(mixed, 1, {"v": 1})

        # Junk TTLs fall back to the 7-day default.
        junk = client.save(wid("junk"), 0, {"v": 0}, ttl_seconds=-5)
        j = datetime.fromisoformat(junk.created_at.replace("Z", "+00:00"))
        je = srv.http("GET", f"/checkpoints/{junk.checkpoint_id}", key).json()["expires_at"]
        assert abs(
            datetime.fromisoformat(je.replace("Z", "+00:00")) - j - timedelta(days=7)
        ) < timedelta(seconds=1)

        def gone(checkpoint_id: str) -> bool:
            try:
                client.get(checkpoint_id)
            except NotFoundError:
                return True
            return False

        wait_until(lambda: gone(s0.checkpoint_id), timeout=20, what="expiry of `short`")
        with pytest.raises(NotFoundError):
            client.resume(short)
        assert client.replay(short).checkpoints == []
        wait_until(lambda: gone(m0.checkpoint_id), timeout=20, what="expiry of mixed step 0")
        kept = client.resume(mixed)
        assert kept.total_checkpoints == 1 and kept.latest_checkpoint.step == 1
        assert [c.step for c in client.replay(mixed).checkpoints] == [1]

        # The sweeper purges the rows and announces the expired workflow.
        bodies = rx.wait_for(
            lambda bs: any(x["data"]["workflow_id"] == short for x in bs), timeout=30
        )
        event = next(x for x in bodies if x["data"]["workflow_id"] == short)
        assert event["event"] == "workflow.expired" and event["data"]["total_checkpoints"] == 1
        verify(rx.requests[0], SECRET)

        def purged() -> bool:
            db = storedb.Sql(srv.base, srv.env.get("CPF_DATABASE_URL"))
            try:
                n = db.execute(
                    "SELECT count(*) FROM checkpoints WHERE workflow_id IN (?, ?) AND step = 0",
                    (short, mixed),
                ).fetchone()[0]
            finally:
                db.close()
            return n == 0

        wait_until(purged, timeout=20, what="sweeper purge")
        # An expired workflow's id is free again.
        again = client.save(short, 0, {"v": "new"})
        assert again.diff_from_previous["added"] == ["v"]
        with pytest.raises(ConflictError):
            client.save(short, 0, {"v": "dup"})
    finally:
        client.close()
        rx.close()


def test_deleted_webhook_gets_nothing(srv: ServeProcess) -> None:
    rx = Receiver()
    key = srv.key("unhook-co")
    client = srv.client(key)
    try:
        hook = client.register_webhook(rx.url, ["checkpoint.saved"])
        assert srv.http("DELETE", f"/webhooks/{hook['webhook_id']}", key).status_code == 204
        client.save(wid("quiet"), 0, {"v": 1})
        time.sleep(1.5)
        assert rx.bodies() == []
    finally:
        client.close()
        rx.close()
