"""`cpf serve` driven by the real snapstate-sdk (sync and async) and raw httpx.

One server for the module (its own store); keys made with `cpf keys create`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import storedb
from snapstate_sdk import (
    AuthError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    SnapStateClient,
    SnapStateError,
    ValidationError,
)
from test_service_support import ServeProcess


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ServeProcess(tmp_path_factory.mktemp("serve") / "base")
    yield server
    assert server.stop() == 0, server.logs()
    assert "Traceback" not in server.logs(), server.logs()


@pytest.fixture(scope="module")
def key_a(srv: ServeProcess) -> str:
    return srv.key("acme")


@pytest.fixture(scope="module")
def key_b(srv: ServeProcess) -> str:
    return srv.key("globex")


@pytest.fixture
def a(srv: ServeProcess, key_a: str) -> Any:
    client = srv.client(key_a)
    yield client
    client.close()


@pytest.fixture
def b(srv: ServeProcess, key_b: str) -> Any:
    client = srv.client(key_b)
    yield client
    client.close()


def wid(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- every SDK method --------------------------------------------------------------------


def test_sync_save_get_resume_replay(a: SnapStateClient) -> None:
    w = wid()
    first = a.save(w, 0, {"a": 1, "b": {"c": 2}, "gone": True, "list": [1, 2]}, label="start")
    assert first.checkpoint_id == f"cp_{w}_000"
    assert first.workflow_id == w and first.step == 0
    assert first.etag.startswith('"') and first.etag.endswith('"') and len(first.etag) == 18
    assert first.created_at.endswith("Z") and len(first.created_at) == 24
    assert set(first.diff_from_previous["added"]) == {"a", "b.c", "gone", "list[0]", "list[1]"}
    second = a.save(
        w,
        1,
        {"a": 2, "b": {"c": 2, "d": 3}, "list": [1, 2, 3], "new": "x"},
        metadata={"k": "v"},
        agent_id="bot-1",
    )
    # The §6.3 example.
    assert set(second.diff_from_previous["added"]) == {"b.d", "list[2]", "new"}
    assert second.diff_from_previous["removed"] == ["gone"]
    assert second.diff_from_previous["changed"] == ["a"]
    assert second.size_bytes == len(
        json.dumps(
            {"a": 2, "b": {"c": 2, "d": 3}, "list": [1, 2, 3], "new": "x"}, separators=(",", ":")
        )
    )
    assert second.etag != first.etag

    got = a.get(second.checkpoint_id)
    assert got.state == {"a": 2, "b": {"c": 2, "d": 3}, "list": [1, 2, 3], "new": "x"}
    assert got.metadata == {"k": "v", "agent_id": "bot-1"}
    assert got.agent_id == "bot-1"
    assert got.etag == second.etag
    assert got.size_bytes == second.size_bytes
    assert got.diff_from_previous == second.diff_from_previous
    assert a.get(first.checkpoint_id).label == "start"

    resumed = a.resume(w)
    assert resumed.workflow_id == w
    assert resumed.total_checkpoints == 2
    assert resumed.latest_checkpoint.step == 1
    assert resumed.latest_checkpoint.etag == second.etag  # §9.7 fixed
    assert resumed.latest_checkpoint.state["new"] == "x"
    assert resumed.workflow_started_at == first.created_at
    assert resumed.last_activity_at == second.created_at

    replay = a.replay(w)
    assert [c.step for c in replay.checkpoints] == [0, 1]
    assert replay.total == 2 and replay.has_more is False
    assert [c.etag for c in replay.checkpoints] == [first.etag, second.etag]


def test_utf8_size_and_coercion(srv: ServeProcess, key_a: str, a: SnapStateClient) -> None:
    w = wid()
    state = {"name": "Zoë ☃", "n": None}
    r = a.save(w, 0, state)
    assert r.size_bytes == len(json.dumps(state, separators=(",", ":"), ensure_ascii=False)
                               .encode("utf-8"))
    # "step": "1" is coerced like the reference; 1.5 is not an integer.
    resp = srv.http("POST", "/checkpoints", key_a,
                    json={"workflow_id": w, "step": "1", "state": {}})
    assert resp.status_code == 201 and resp.json()["step"] == 1
    resp = srv.http("POST", "/checkpoints", key_a,
                    json={"workflow_id": w, "step": 1.5, "state": {}})
    assert resp.status_code == 400
    # Integers beyond 64 bits survive exactly; numbers beyond a double are refused.
    big = 12345678901234567890123
    saved = a.save(w, 2, {"big": big, "f": 0.1})
    assert a.get(saved.checkpoint_id).state == {"big": big, "f": 0.1}
    resp = srv.http("POST", "/checkpoints", key_a,
                    content=b'{"workflow_id":"%s","step":3,"state":{"x":1e400}}' % w.encode())
    assert resp.status_code == 400
    resp = srv.http("POST", "/checkpoints", key_a,
                    content=b'{"workflow_id":"%s","step":3,"state":{"x":NaN}}' % w.encode())
    assert resp.status_code == 400


def test_async_methods(srv: ServeProcess, key_a: str) -> None:
    async def scenario() -> None:
        async with SnapStateClient(api_key=key_a, base_url=srv.url) as client:
            w = wid("async")
            saved = await client.async_save(w, 0, {"x": 1}, label="l0")
            saved2 = await client.async_save(w, 1, {"x": 2}, if_match=saved.etag)
            got = await client.async_get(saved2.checkpoint_id)
            assert got.state == {"x": 2}
            resumed = await client.async_resume(w)
            assert resumed.latest_checkpoint.etag == saved2.etag
            replay = await client.async_replay(w, from_step=1)
            assert [c.step for c in replay.checkpoints] == [1]
            agent = await client.async_register_agent("async-bot", "Async Bot",
                                                      capabilities=["x"])
            assert agent.agent_id == "async-bot" and agent.capabilities == ["x"]
            agents = await client.async_list_agents()
            assert "async-bot" in [ag.agent_id for ag in agents]
            with pytest.raises(NotFoundError):
                await client.async_resume(wid("nothing"))
            with pytest.raises(ConflictError):
                await client.async_save(w, 1, {"x": 3})

    asyncio.run(scenario())


def test_agents(srv: ServeProcess, key_a: str, a: SnapStateClient) -> None:
    agent = a.register_agent(
        "bot-7", "Bot Seven", description="d", capabilities=["plan"], metadata={"m": 1}
    )
    assert (agent.name, agent.description, agent.capabilities, agent.metadata) == (
        "Bot Seven", "d", ["plan"], {"m": 1}
    )
    assert agent.last_seen_at is None and agent.created_at
    again = a.register_agent("bot-7", "Bot 7")
    assert again.name == "Bot 7" and again.created_at == agent.created_at
    # A tagged save marks the (registered) agent as seen.
    a.save(wid(), 0, {"s": 1}, agent_id="bot-7")
    listed = {ag.agent_id: ag for ag in a.list_agents()}
    assert listed["bot-7"].last_seen_at is not None
    # get / patch / delete (beyond the SDK)
    r = srv.http("GET", "/agents/bot-7", key_a)
    assert r.status_code == 200 and r.json()["agent_id"] == "bot-7"
    r = srv.http("PATCH", "/agents/bot-7", key_a, json={"description": "new"})
    assert r.status_code == 200 and r.json()["description"] == "new"
    assert r.json()["name"] == "Bot 7"
    assert srv.http("PATCH", "/agents/bot-7", key_a, json={}).status_code == 400
    assert srv.http("PATCH", "/agents/nobody", key_a, json={"name": "x"}).json()["error"][
        "code"] == "AGENT_NOT_FOUND"
    assert srv.http("DELETE", "/agents/bot-7", key_a).status_code == 204
    r = srv.http("GET", "/agents/bot-7", key_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "AGENT_NOT_FOUND"
    with pytest.raises(ValidationError):
        a.register_agent("bad id!", "x")


def test_register_webhook_and_manage(srv: ServeProcess, key_a: str, a: SnapStateClient) -> None:
    hook = a.register_webhook("https://example.com/hook", ["checkpoint.saved"], secret="s3")
    assert hook["webhook_id"].startswith("wh_")
    assert hook["events"] == ["checkpoint.saved"] and "secret" not in hook
    listed = srv.http("GET", "/webhooks", key_a).json()["webhooks"]
    assert hook["webhook_id"] in [h["webhook_id"] for h in listed]
    with pytest.raises(ValidationError):
        a.register_webhook("https://example.com/hook", ["workflow.archived"])
    with pytest.raises(ValidationError):
        a.register_webhook("not a url", ["checkpoint.saved"])
    assert srv.http("DELETE", f"/webhooks/{hook['webhook_id']}", key_a).status_code == 204
    r = srv.http("DELETE", f"/webhooks/{hook['webhook_id']}", key_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


# -- errors ------------------------------------------------------------------------------


def test_error_classes(srv: ServeProcess, a: SnapStateClient, key_a: str) -> None:
    with pytest.raises(AuthError) as e:
        srv.client("snp_" + "0" * 32).resume("x")
    assert e.value.status_code == 401 and e.value.code == "UNAUTHORIZED"
    with pytest.raises(NotFoundError) as e:
        a.get("cp_nope_000")
    assert e.value.code == "NOT_FOUND"
    with pytest.raises(NotFoundError):
        a.resume(wid("none"))
    w = wid()
    first = a.save(w, 0, {"v": 1})
    with pytest.raises(ConflictError) as e:
        a.save(w, 0, {"v": 2})
    assert e.value.code == "CONFLICT"
    raw = srv.http("POST", "/checkpoints", key_a, json={"workflow_id": w, "step": 0, "state": {}})
    assert raw.status_code == 409
    assert raw.json()["existing"] == {"checkpoint_id": f"cp_{w}_000", "etag": first.etag}
    with pytest.raises(ValidationError) as e:
        a.save(w, -1, {})
    assert e.value.code == "VALIDATION_ERROR"
    with pytest.raises(ValidationError):
        a.save("has/slash", 0, {})
    with pytest.raises(ValidationError):
        a.save(w, 5, None)  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLargeError) as e:
        a.save(w, 9, {"blob": "x" * (1200 * 1024)})
    assert e.value.code == "PAYLOAD_TOO_LARGE"


def test_error_envelope_and_http_details(srv: ServeProcess, key_a: str) -> None:
    # Authentication comes before any body detail: a bad key on an oversized body is 401.
    big = b'{"workflow_id":"w","step":0,"state":{"x":"' + b"y" * (1200 * 1024) + b'"}}'
    r = srv.http("POST", "/checkpoints", None, content=big)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "UNAUTHORIZED",
                                  "message": "Missing or malformed Authorization header"}}
    r = srv.http("POST", "/checkpoints", None, content=b"{", headers={"Authorization": "bearer x"})
    assert r.status_code == 401
    r = srv.http("POST", "/checkpoints", key_a, content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # Bad JSON and schema violations: 400 in the envelope, never 422.
    r = srv.http("POST", "/checkpoints", key_a, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    r = srv.http("POST", "/checkpoints", key_a,
                 json={"workflow_id": "w", "step": 0, "state": {}, "extra": 1})
    assert r.status_code == 400 and "extra" in r.json()["error"]["message"]
    # No redirects, exact paths only; unknown routes answer in the envelope.
    r = srv.http("POST", "/checkpoints/", key_a, json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = srv.http("GET", "/agents/", key_a)
    assert r.status_code == 404
    r = srv.http("GET", "/nope", key_a)
    assert r.status_code == 404 and "error" in r.json()
    r = srv.http("PUT", "/checkpoints", key_a)
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert r.headers["x-request-id"]
    # Replay query validation.
    r = srv.http("GET", "/workflows/w/replay?limit=0", key_a)
    assert r.status_code == 400
    r = srv.http("GET", "/workflows/w/replay?bogus=1", key_a)
    assert r.status_code == 400
    r = srv.http("GET", "/workflows/w/replay?from_step=x", key_a)
    assert r.status_code == 400


def test_revoked_key_and_forbidden_account(srv: ServeProcess) -> None:
    key = srv.key("temp-co")
    client = srv.client(key)
    client.save(wid(), 0, {"a": 1})
    listed = srv.cpf("keys", "list", "--account", "temp-co")["result"]["keys"]
    assert len(listed) == 1 and "api_key" not in listed[0]
    assert listed[0]["prefix"] == key[:12]
    revoked = srv.cpf("keys", "revoke", "--key-id", listed[0]["key_id"])
    assert revoked["ok"] is True
    with pytest.raises(AuthError) as e:
        client.resume("anything")
    assert "revoked" in str(e.value)
    unknown = srv.cpf("keys", "revoke", "--key-id", "key_nope")
    assert unknown["ok"] is False and unknown["exit_code"] == 10
    # Keys are stored as hashes only.
    db = storedb.Sql(srv.base, srv.env.get("CPF_DATABASE_URL"))
    try:
        rows = db.execute("SELECT key_hash, prefix FROM svc_api_keys").fetchall()
        assert all(key not in (h, p) for h, p in rows)
        key2 = srv.key("frozen-co")
        db.execute("UPDATE svc_accounts SET status = 'suspended' WHERE name = 'frozen-co'")
        db.commit()
    finally:
        db.close()
    with pytest.raises(SnapStateError) as e:
        srv.client(key2).resume("x")
    assert e.value.status_code == 403 and e.value.code == "FORBIDDEN"
    client.close()


# -- concurrency and If-Match -------------------------------------------------------------


def _race(srv: ServeProcess, key: str, w: str, step: int, if_match: str | None) -> list[Any]:
    barrier = threading.Barrier(10)
    results: list[Any] = [None] * 10

    def writer(i: int) -> None:
        client = srv.client(key)
        try:
            barrier.wait()
            results[i] = client.save(w, step, {"writer": i}, if_match=if_match)
        except Exception as exc:
            results[i] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("with_if_match", [False, True])
def test_ten_writers_exactly_one_wins(
    srv: ServeProcess, key_a: str, a: SnapStateClient, with_if_match: bool
) -> None:
    for _round in range(3):
        w = wid("race")
        head = a.save(w, 0, {"start": True})
        results = _race(srv, key_a, w, 1, head.etag if with_if_match else None)
        wins = [r for r in results if not isinstance(r, Exception)]
        losses = [r for r in results if isinstance(r, Exception)]
        assert len(wins) == 1, results
        assert len(losses) == 9 and all(isinstance(r, ConflictError) for r in losses), losses
        resumed = a.resume(w)
        assert resumed.total_checkpoints == 2
        assert resumed.latest_checkpoint.etag == wins[0].etag
        assert [c.step for c in a.replay(w).checkpoints] == [0, 1]


def test_if_match_existing_and_new_steps(srv: ServeProcess, key_a: str, a: SnapStateClient) -> None:
    w = wid("ifm")
    s0 = a.save(w, 0, {"v": 0})
    s1 = a.save(w, 1, {"v": 1}, if_match=s0.etag)  # fresh head: appended
    # Stale head on a new step: refused (the reference ignored If-Match here).
    with pytest.raises(ConflictError):
        a.save(w, 2, {"v": 2}, if_match=s0.etag)
    with pytest.raises(ConflictError):
        a.save(w, 2, {"v": 2}, if_match='"0000000000000000"')
    # If-Match on a brand-new workflow: there is no head to match.
    with pytest.raises(ConflictError):
        a.save(wid("fresh"), 0, {"v": 0}, if_match=s0.etag)
    # Existing step with its own etag: idempotent 201 returning the stored record.
    again = a.save(w, 1, {"v": "ignored"}, if_match=s1.etag)
    assert (again.checkpoint_id, again.etag, again.created_at) == (
        s1.checkpoint_id, s1.etag, s1.created_at
    )
    assert a.get(s1.checkpoint_id).state == {"v": 1}
    # Existing step with a stale etag: 409 without `existing`.
    r = srv.http("POST", "/checkpoints", key_a, json={"workflow_id": w, "step": 1, "state": {}},
                 headers={"If-Match": s0.etag})
    assert r.status_code == 409 and "existing" not in r.json()
    # Unquoted etag does not match.
    with pytest.raises(ConflictError):
        a.save(w, 1, {"v": 1}, if_match=s1.etag.strip('"'))
    # Etags are unique per checkpoint: the same state at another step or workflow differs.
    same_a = a.save(w, 5, {"same": 1})
    same_b = a.save(w, 6, {"same": 1})
    same_c = a.save(wid("other"), 5, {"same": 1})
    assert len({same_a.etag, same_b.etag, same_c.etag}) == 3
    # A lower step written last becomes the head ("latest" = most recently written).
    a.save(w, 3, {"v": 3})
    assert a.resume(w).latest_checkpoint.step == 3
    assert [c.step for c in a.replay(w).checkpoints] == [0, 1, 3, 5, 6]


# -- tenant isolation --------------------------------------------------------------------


def test_tenant_isolation(srv: ServeProcess, key_b: str, a: SnapStateClient,
                          b: SnapStateClient) -> None:
    w = wid("shared-name")
    sa = a.save(w, 0, {"owner": "a"})
    sb = b.save(w, 0, {"owner": "b"})  # same id, other account: no collision
    assert a.get(sa.checkpoint_id).state == {"owner": "a"}
    assert b.get(sb.checkpoint_id).state == {"owner": "b"}
    only_a = wid("private")
    a.save(only_a, 0, {"secret": 1})
    with pytest.raises(NotFoundError):
        b.resume(only_a)
    with pytest.raises(NotFoundError):
        b.get(f"cp_{only_a}_000")
    assert b.replay(only_a).checkpoints == []
    listed = srv.http("GET", "/workflows", key_b).json()["workflows"]
    assert only_a not in [x["workflow_id"] for x in listed]
    a.register_agent("a-only", "A")
    assert "a-only" not in [ag.agent_id for ag in b.list_agents()]
    assert srv.http("GET", "/agents/a-only", key_b).status_code == 404


# -- paging, workflows -------------------------------------------------------------------


def test_paging_250(srv: ServeProcess, key_a: str, a: SnapStateClient) -> None:
    w = wid("page")
    for step in range(250):
        a.save(w, step, {"i": step})
    seen: list[int] = []
    from_step = None
    pages = 0
    while True:
        page = a.replay(w, from_step=from_step, limit=100)
        pages += 1
        seen += [c.step for c in page.checkpoints]
        assert page.total == len(page.checkpoints)
        if not page.has_more:
            break
        from_step = page.checkpoints[-1].step + 1
    assert pages == 3 and seen == list(range(250))
    # The range applies before the limit (the reference returned [] here).
    page = a.replay(w, from_step=3, limit=3)
    assert [c.step for c in page.checkpoints] == [3, 4, 5] and page.has_more
    page = a.replay(w, from_step=240, to_step=244, limit=10)
    assert [c.step for c in page.checkpoints] == [240, 241, 242, 243, 244]
    assert page.has_more is False
    raw = srv.http("GET", f"/workflows/{w}/replay?from_step=100&limit=100", key_a).json()
    assert raw["total_matching"] == 150 and raw["next_from_step"] == 200
    assert a.resume(w).total_checkpoints == 250


def test_workflow_list_and_delete(srv: ServeProcess, key_a: str, a: SnapStateClient) -> None:
    w = wid("del")
    a.save(w, 0, {"x": 1})
    a.save(w, 1, {"x": 2})
    r = srv.http("GET", "/workflows?limit=1000", key_a)
    assert r.status_code == 200
    mine = [x for x in r.json()["workflows"] if x["workflow_id"] == w]
    assert mine and mine[0]["total_checkpoints"] == 2 and mine[0]["latest_step"] == 1
    assert srv.http("DELETE", f"/workflows/{w}", key_a).status_code == 204
    with pytest.raises(NotFoundError):
        a.resume(w)
    assert srv.http("DELETE", f"/workflows/{w}", key_a).status_code == 404
    a.save(w, 0, {"x": "again"})  # the id is free again
    assert a.resume(w).total_checkpoints == 1


def test_health_ready_openapi(srv: ServeProcess) -> None:
    h = srv.http("GET", "/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert srv.http("GET", "/ready").json() == {"status": "ready"}
    doc = srv.http("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    from core.service.routes import ROUTES

    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert str(route.status) in op["responses"]
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    served = {(r.path, r.method) for r in ROUTES} | {
        ("/health", "GET"), ("/ready", "GET"), ("/openapi.json", "GET")
    }
    assert documented == served
    save = doc["paths"]["/checkpoints"]["post"]["requestBody"]["content"]["application/json"]
    assert save["schema"]["required"] == ["workflow_id", "step", "state"]


# -- cpf runs as read-only workflows of account `local` -----------------------------------


def test_runs_are_readonly_workflows(srv: ServeProcess, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "schema_version: checkpointflow/v1\n"
        "workflow:\n"
        "  id: demo\n"
        "  version: '1'\n"
        "  inputs: {type: object}\n"
        "  steps:\n"
        "    - id: hello\n"
        "      kind: cli\n"
        "      command: echo hi\n"
        "    - id: done\n"
        "      kind: end\n"
        "      result: {ok: true}\n"
    )
    run = srv.cpf("run", "-f", str(flow))
    assert run["ok"] is True, run
    run_id = run["run_id"]
    local = srv.client(srv.key("local"))
    resumed = local.resume(run_id)
    assert resumed.total_checkpoints >= 1
    replay = local.replay(run_id)
    assert [c.step for c in replay.checkpoints] == sorted(c.step for c in replay.checkpoints)
    assert replay.checkpoints[0].checkpoint_id == f"cp_{run_id}_000"
    assert local.get(replay.checkpoints[0].checkpoint_id).etag == replay.checkpoints[0].etag
    with pytest.raises(ConflictError):
        local.save(run_id, 99, {"x": 1})
    r = srv.http("DELETE", f"/workflows/{run_id}", local._headers["Authorization"][7:])
    assert r.status_code == 409
    # Other accounts do not see local runs.
    other = srv.client(srv.key("not-local"))
    with pytest.raises(NotFoundError):
        other.resume(run_id)
    local.close()
    other.close()


def test_nul_characters_are_refused_alike_on_every_store(srv: ServeProcess, key_a: str) -> None:
    # PostgreSQL's text cannot hold U+0000: before, it surfaced there as a 503 "store
    # unavailable". Ids with a NUL cannot exist (404); free text with one is a 400.
    for path in ("/agents/a%00b", "/webhooks/wh_%00", "/webhooks/wh_%00/deliveries"):
        r = srv.http("GET", path, key_a)
        assert r.status_code == 404, (path, r.text)
    assert srv.http("DELETE", "/agents/%00", key_a).status_code == 404
    assert srv.http("PATCH", "/agents/%00", key_a, json={"name": "x"}).status_code == 404
    w = wid("nul")
    for field in ("label", "agent_id"):
        r = srv.http("POST", "/checkpoints", key_a,
                     json={"workflow_id": w, "step": 0, "state": {}, field: "a\x00b"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "VALIDATION_ERROR"
        assert field in r.json()["error"]["message"]
    r = srv.http("POST", "/agents", key_a, json={"agent_id": "nul", "name": "a\x00"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"
    # NUL inside state and metadata is JSON, kept exactly.
    r = srv.http("POST", "/checkpoints", key_a,
                 json={"workflow_id": w, "step": 0, "state": {"s": "a\x00b"},
                       "metadata": {"m": "\x00"}})
    assert r.status_code == 201, r.text
    r = srv.http("GET", f"/workflows/{w}/resume", key_a)
    assert r.status_code == 200 and r.json()["latest_checkpoint"]["state"] == {"s": "a\x00b"}
    assert srv.http("GET", "/agents/nul", key_a).status_code == 404
