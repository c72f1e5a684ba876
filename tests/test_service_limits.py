"""Rate limit per API key (`cpf serve --rate-limit 5`, a 3-second window for speed)."""

from __future__ import annotations

from typing import Any

import pytest
from snapstate_sdk import RateLimitError
from test_service_support import ServeProcess

LIMIT = 5
WINDOW = 3


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ServeProcess(
        tmp_path_factory.mktemp("serve-limits") / "base",
        rate_limit=LIMIT,
        env={"CPF_RATE_LIMIT_WINDOW": str(WINDOW)},
    )
    yield server
    assert server.stop() == 0, server.logs()


def test_rate_limit_per_key_with_retry_after(srv: ServeProcess) -> None:
    key_a, key_b = srv.key("rl-a"), srv.key("rl-b")
    for i in range(LIMIT):
        r = srv.http("GET", f"/workflows/w{i}/replay", key_a)
        assert r.status_code == 200, r.text
    r = srv.http("POST", "/checkpoints", key_a, json={"workflow_id": "w", "step": 0, "state": {}})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "RATE_LIMITED"
    retry_after = r.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= WINDOW
    # Another account's key has its own bucket.
    assert srv.http("GET", "/workflows/w/replay", key_b).status_code == 200
    # Agents are not rate limited (as in the reference).
    assert srv.http("GET", "/agents", key_a).status_code == 200

    # The SDK raises RateLimitError once its retries are spent.
    client = srv.client(key_a, max_retries=1)
    with pytest.raises(RateLimitError) as e:
        client.resume("w")
    assert e.value.status_code == 429 and isinstance(e.value.retry_after, int)
    client.close()
    # After waiting Retry-After (the SDK slept it), the key works again; with retries
    # the SDK gets through on its own.
    patient = srv.client(key_a, max_retries=4)
    saved = patient.save("after-wait", 0, {"ok": True})
    assert saved.step == 0
    patient.close()


def test_rejected_requests_do_not_extend_the_wait(srv: ServeProcess) -> None:
    key = srv.key("rl-c")
    for _ in range(LIMIT):
        assert srv.http("GET", "/webhooks", key).status_code == 200
    waits = []
    for _ in range(3):
        r = srv.http("GET", "/webhooks", key)
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
    assert waits == sorted(waits, reverse=True)  # never growing
