"""The one-round-trip save on PostgreSQL (`cpf_save_checkpoint`, revision 0006).

Two real `cpf serve` replicas over a fresh PostgreSQL database (skipped without
`CPF_TEST_POSTGRES_URL`), driven by the real snapstate-sdk, plus direct calls of the
function for what HTTP cannot stage (a lost answer, a replica whose clock is behind).
What must hold: the same answers as the general save (diffs against the true previous
state whichever replica wrote it, 409s, the idempotent re-save, 401 before 400, a
revocation at once, the outbox rows), and that the saves do go through the function.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from snapstate_sdk import AuthError, ConflictError
from test_service_support import ServeProcess

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _sql(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


class Pair:
    def __init__(self, root: Path, url: str) -> None:
        env = {"CPF_DATABASE_URL": url, "CPF_WEBHOOK_ALLOW_PRIVATE": "1"}
        self.url = url
        self.a = ServeProcess(root / "a", rate_limit=0, env=env)
        try:
            self.b = ServeProcess(root / "b", rate_limit=0, env=env)
        except BaseException:
            self.a.stop()
            raise

    def stop(self) -> None:
        for s in (self.a, self.b):
            assert s.stop() == 0 and "Traceback" not in s.logs(), s.logs()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from sqlalchemy.engine import make_url

    assert ADMIN_URL is not None
    name = f"cpf_one_trip_{uuid.uuid4().hex[:12]}"
    _sql(ADMIN_URL, f'CREATE DATABASE "{name}"')
    # Count the function's calls (pg_stat_user_functions), for this database only.
    _sql(ADMIN_URL, f"ALTER DATABASE \"{name}\" SET track_functions = 'pl'")
    url = make_url(ADMIN_URL).set(database=name).render_as_string(False)
    try:
        p = Pair(tmp_path_factory.mktemp("one-trip"), url)
        yield p
        p.stop()
    finally:
        _sql(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _calls(url: str) -> int:
    rows = _sql(
        url, "SELECT calls FROM pg_stat_user_functions WHERE funcname = 'cpf_save_checkpoint'"
    )
    return int(rows[0][0]) if rows else 0


def _calls_since(url: str, before: int, want: int) -> int:
    """The function's calls since `before`, once `want` of them show or after 30 s:
    backends publish their function counts when idle for a while (PostgreSQL 15: ~10 s)."""
    deadline = time.monotonic() + 30
    while _calls(url) - before < want and time.monotonic() < deadline:
        time.sleep(0.5)
    return _calls(url) - before


def test_saves_alternating_replicas_diff_against_the_true_previous_state(pair: Pair) -> None:
    key = pair.a.key("alt")
    a, b = pair.a.client(key), pair.b.client(key)
    wf = f"alt-{uuid.uuid4().hex[:8]}"
    before = _calls(pair.url)
    for step in range(6):
        client = (a, b)[step % 2]  # each replica's cached head is always stale
        saved = client.save(wf, step, {"n": step, f"k{step}": True, "same": 1})
        diff = saved.diff_from_previous
        if step == 0:
            assert sorted(diff["added"]) == ["k0", "n", "same"]
        else:
            assert diff == {"added": [f"k{step}"], "removed": [f"k{step - 1}"], "changed": ["n"]}
    resumed = b.resume(wf)
    assert resumed.total_checkpoints == 6
    assert resumed.latest_checkpoint.step == 5
    assert [c.step for c in a.replay(wf).checkpoints] == list(range(6))
    # The saves went through the function (a stale head costs a second call).
    assert _calls_since(pair.url, before, 6) >= 6


def test_large_saves_take_the_worker_thread_path_with_the_same_answers(pair: Pair) -> None:
    # Bodies over routes.ASYNC_SAVE_MAX_BYTES are parsed in a worker thread; the save
    # is the same one round trip there.
    from core.service.routes import ASYNC_SAVE_MAX_BYTES

    key = pair.a.key("large")
    a, b = pair.a.client(key), pair.b.client(key)
    wf = f"large-{uuid.uuid4().hex[:8]}"
    blob = "x" * (ASYNC_SAVE_MAX_BYTES + 1000)
    before = _calls(pair.url)
    for step in range(4):
        saved = (a, b)[step % 2].save(wf, step, {"blob": blob, "n": step})
        if step:
            assert saved.diff_from_previous == {"added": [], "removed": [], "changed": ["n"]}
    with pytest.raises(ConflictError):
        b.save(wf, 3, {"blob": blob})
    assert a.resume(wf).total_checkpoints == 4
    assert _calls_since(pair.url, before, 5) >= 5


def test_conflicts_and_idempotent_resave_keep_their_answers(pair: Pair) -> None:
    key = pair.a.key("conflicts")
    a, b = pair.a.client(key), pair.b.client(key)
    wf = f"cf-{uuid.uuid4().hex[:8]}"
    first = a.save(wf, 0, {"v": 0})
    with pytest.raises(ConflictError):
        b.save(wf, 0, {"v": 1})
    again = b.save(wf, 0, {"v": 1}, if_match=first.etag)  # same etag: the stored record
    assert again.etag == first.etag
    with pytest.raises(ConflictError):
        a.save(wf, 1, {"v": 2}, if_match='"0000000000000000"')  # not the head
    nxt = a.save(wf, 1, {"v": 2}, if_match=first.etag)
    assert nxt.step == 1 and nxt.etag != first.etag
    r = pair.b.http("POST", "/checkpoints", key, json={"workflow_id": wf, "step": 0, "state": {}})
    assert r.status_code == 409 and r.json()["existing"]["etag"] == first.etag
    assert b.resume(wf).total_checkpoints == 2


def test_auth_comes_first_and_a_revocation_holds_at_once(pair: Pair) -> None:
    key = pair.a.key("revoked")
    wf = f"rv-{uuid.uuid4().hex[:8]}"
    pair.a.client(key).save(wf, 0, {"v": 0})
    bad = {"workflow_id": wf, "step": -1, "state": {}}
    r = pair.a.http("POST", "/checkpoints", "snp_" + "0" * 32, json=bad)
    assert r.status_code == 401, r.text
    r = pair.a.http("POST", "/checkpoints", key, json=bad)
    assert r.status_code == 400, r.text
    r = pair.a.http("POST", "/checkpoints", None, json={"workflow_id": wf, "step": 1, "state": {}})
    assert r.status_code == 401
    key_id = pair.a.cpf("keys", "list", "--account", "revoked")["result"]["keys"][0]["key_id"]
    assert pair.a.cpf("keys", "revoke", "--key-id", key_id)["ok"] is True
    for srv in (pair.a, pair.b):
        with pytest.raises(AuthError, match="revoked"):
            srv.client(key).save(wf, 1, {"v": 1})


def _webhook(pair: Pair, key: str, event: str) -> str:
    """A webhook of the key's account for `event` (never reached: port 9); its id."""
    body = {"url": "http://127.0.0.1:9/hook", "events": [event]}
    return str(pair.a.http("POST", "/webhooks", key, json=body).json()["webhook_id"])


def _delivery(pair: Pair, key: str, hook_id: str, event: str) -> dict[str, Any]:
    """The webhook's one delivery of `event`, from its delivery log."""
    log = pair.a.http("GET", f"/webhooks/{hook_id}/deliveries", key).json()
    [delivery] = [d for d in log["deliveries"] if d["event"] == event]
    return delivery  # type: ignore[no-any-return]


def test_outbox_rows_of_a_save(pair: Pair) -> None:
    key = pair.a.key("hooks")
    hook_id = _webhook(pair, key, "checkpoint.saved")
    wf = f"wh-{uuid.uuid4().hex[:8]}"
    saved = pair.b.client(key).save(wf, 0, {"v": 0}, label="first")
    delivery = _delivery(pair, key, hook_id, "checkpoint.saved")
    assert delivery["delivery_id"].startswith("dlv_") and len(delivery["delivery_id"]) == 28
    assert delivery["data"] == {
        "workflow_id": wf,
        "checkpoint_id": saved.checkpoint_id,
        "step": 0,
        "etag": saved.etag,
        "label": "first",
        "created_at": saved.created_at,
    }


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _call(url: str, key_hash: str, wf: str, step: int, now: datetime, **kw: Any) -> dict:
    from core.service.store.save_function import CALL_SAVE_FUNCTION

    ttl = 3600
    args = (
        key_hash, _iso(now), _iso(now + timedelta(seconds=ttl)), float(ttl), 0, 0.0,
        f"cp_{wf}_{step:03d}", wf, step, None, f'{{"s": {step}}}', None, None,
        kw.get("etag", f'"{uuid.uuid4().hex[:16]}"'), '{"added":[],"removed":[],"changed":[]}',
        8, None, kw.get("head_id"), kw.get("head_etag"), uuid.uuid4().hex,
    )  # fmt: skip
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        cur = conn.execute(CALL_SAVE_FUNCTION, args)  # type: ignore[arg-type]
        assert cur.description is not None
        row = cur.fetchone()
        assert row is not None
        return dict(zip([d[0] for d in cur.description], row, strict=True))


def test_a_retry_after_a_lost_answer_finds_its_own_commit(pair: Pair) -> None:
    from core.service.keys import hash_key

    key_hash = hash_key(pair.a.key("lost"))
    wf = f"lost-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    first = _call(pair.url, key_hash, wf, 0, now, etag='"aaaaaaaaaaaaaaaa"')
    again = _call(pair.url, key_hash, wf, 0, now, etag='"aaaaaaaaaaaaaaaa"')
    assert first["o_status"] == again["o_status"] == "ok"
    assert again["o_id"] == first["o_id"] and again["o_created_at"] == first["o_created_at"]
    other = _call(pair.url, key_hash, wf, 0, now)  # another request: the general save decides
    assert other["o_status"] == "fallback"
    rows = _sql(pair.url, "SELECT total FROM svc_workflows WHERE workflow_id = %s", (wf,))
    assert rows == [(1,)]
    assert _call(pair.url, "0" * 64, wf, 1, now)["o_status"] == "auth"


def test_stale_head_and_a_clock_behind(pair: Pair) -> None:
    from core.service.keys import hash_key

    key_hash = hash_key(pair.a.key("clock"))
    wf = f"clock-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    first = _call(pair.url, key_hash, wf, 0, now)
    # The caller diffed against "no workflow": told the head, nothing written.
    moved = _call(pair.url, key_hash, wf, 1, now)
    assert moved["o_status"] == "moved" and moved["o_head_id"] == first["o_id"]
    assert moved["o_head_state"] is not None and '"s"' in moved["o_head_state"]
    # A replica 10 s behind: its checkpoint is not older than the head it follows.
    late = _call(
        pair.url, key_hash, wf, 1, now - timedelta(seconds=10),
        head_id=moved["o_head_id"], head_etag=moved["o_head_etag"],
    )  # fmt: skip
    assert late["o_status"] == "ok"
    assert late["o_created_at"] == first["o_created_at"]
    assert late["o_expires_at"] == _iso(now + timedelta(seconds=3600))
    rows = _sql(
        pair.url,
        "SELECT total, head_id, last_activity_at FROM svc_workflows WHERE workflow_id = %s",
        (wf,),
    )
    assert rows == [(2, late["o_id"], first["o_created_at"])]


# -- the one-round-trip resume (Route.one_trip: the key and the reads in one statement) --


def _general_and_keyed(url: str, account: str, key: str, wf: str) -> tuple[Any, Any]:
    """The resume's answer (or ApiError code) by the general path and by the keyed one,
    in this process over the pair's database, as JSON."""
    import json

    from core.service.api import CheckpointService
    from core.service.common import ApiError
    from core.service.routes import render
    from core.store.store import Store

    def outcome(call: Any) -> Any:
        try:
            return json.loads(render(call()))
        except ApiError as err:
            return err.code

    store = Store(url)
    svc = CheckpointService(store)
    try:
        keyed = svc.resume_keyed(key, wf)
        assert keyed is not None
        who, answer = keyed
        assert who.account == account
        return outcome(lambda: svc.resume(account, wf, raw=True)), outcome(answer)
    finally:
        svc.ss.close()
        store.close()


def test_resume_in_one_trip_answers_as_the_general_resume(pair: Pair) -> None:
    key = pair.a.key("resume1")
    a, b = pair.a.client(key), pair.b.client(key)
    wf = f"rs-{uuid.uuid4().hex[:8]}"
    for step in range(3):
        a.save(wf, step, {"n": step, "deep": {"l": [step, None]}}, label=f"s{step}",
               metadata={"m": step})  # fmt: skip
    over_http = [srv.http("GET", f"/workflows/{wf}/resume", key) for srv in (pair.a, pair.b)]
    assert [r.status_code for r in over_http] == [200, 200]
    assert over_http[0].json() == over_http[1].json()
    body = over_http[0].json()
    assert body["total_checkpoints"] == 3 and body["latest_checkpoint"]["label"] == "s2"
    assert body["latest_checkpoint"]["state"] == {"n": 2, "deep": {"l": [2, None]}}
    assert body["latest_checkpoint"]["metadata"] == {"m": 2}
    assert over_http[0].headers["etag"] == body["latest_checkpoint"]["etag"]
    resumed = b.resume(wf)  # the SDK reads it too
    assert resumed.latest_checkpoint.step == 2 and resumed.total_checkpoints == 3
    general, keyed = _general_and_keyed(pair.url, "resume1", key, wf)
    assert general == keyed == body
    # Unknown to this account (another account's workflow too): the general 404.
    other = pair.a.key("resume1-other")
    r = pair.b.http("GET", f"/workflows/{wf}/resume", other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert _general_and_keyed(pair.url, "resume1-other", other, wf) == ("NOT_FOUND",) * 2


def test_resume_in_one_trip_keeps_the_order_of_errors(pair: Pair) -> None:
    key = pair.a.key("resume2")
    wf = f"rs-{uuid.uuid4().hex[:8]}"
    pair.a.client(key).save(wf, 0, {"v": 0})
    cases = [
        ("snp_" + "0" * 32, f"/workflows/{wf}/resume", 401),  # unknown key
        ("snp_" + "0" * 32, "/workflows/bad%20id/resume", 401),  # 401 before 400
        (key, "/workflows/bad%20id/resume", 400),
        (key, f"/workflows/{wf}/resume?limit=1", 400),  # resume takes no query
        (None, f"/workflows/{wf}/resume", 401),
    ]
    for k, path, status in cases:
        assert pair.b.http("GET", path, k).status_code == status, (k, path)
    key_id = pair.a.cpf("keys", "list", "--account", "resume2")["result"]["keys"][0]["key_id"]
    assert pair.a.cpf("keys", "revoke", "--key-id", key_id)["ok"] is True
    for srv in (pair.a, pair.b):
        r = srv.http("GET", f"/workflows/{wf}/resume", key)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_resume_in_one_trip_leaves_expiring_and_hooked_workflows_to_the_general_path(
    pair: Pair,
) -> None:
    key = pair.a.key("resume3")
    a = pair.a.client(key)
    # A first checkpoint that expires before the others: the total counts the live ones.
    wf = f"rs-{uuid.uuid4().hex[:8]}"
    a.save(wf, 0, {"v": 0}, ttl_seconds=1)
    a.save(wf, 1, {"v": 1})
    a.save(wf, 2, {"v": 2})
    time.sleep(1.2)
    assert pair.b.client(key).resume(wf).total_checkpoints == 2
    general, keyed = _general_and_keyed(pair.url, "resume3", key, wf)
    assert general == keyed and keyed["total_checkpoints"] == 2
    # A workflow whose every checkpoint expired: gone.
    gone = f"rs-{uuid.uuid4().hex[:8]}"
    a.save(gone, 0, {"v": 0}, ttl_seconds=1)
    time.sleep(1.2)
    assert pair.b.http("GET", f"/workflows/{gone}/resume", key).status_code == 404
    # A webhook that wants workflow.resumed: each resume enqueues its delivery.
    hook_id = _webhook(pair, key, "workflow.resumed")
    live = f"rs-{uuid.uuid4().hex[:8]}"  # nothing expiring: only the hook is different
    a.save(live, 0, {"v": 0})
    a.save(live, 1, {"v": 1})
    assert pair.b.client(key).resume(live).latest_checkpoint.step == 1
    delivery = _delivery(pair, key, hook_id, "workflow.resumed")
    assert delivery["data"]["workflow_id"] == live and delivery["data"]["step"] == 1
