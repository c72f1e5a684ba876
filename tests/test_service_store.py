"""The checkpoint API in-process, on both store paths: the sqlite3 fast path and plain
SQLAlchemy (what any other database gets). Same scenario, same answers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from core.service.api import CheckpointService
from core.service.checkpoints import MAX_STEP, checkpoint_id_for
from core.service.common import ApiError
from core.service.store.service_store import ServiceStore
from core.statediff import leaf_diff
from core.store.store import Store


def _scenario(svc: CheckpointService) -> list[Any]:
    """Exercise every store method; return what the API answered (times stripped)."""
    out: list[Any] = []
    key = svc.create_key("acct")
    out.append(svc.authenticate(key["api_key"]).account)
    out.append([k["account"] for k in svc.list_keys("acct")])
    s0 = svc.save("acct", {"workflow_id": "w", "step": 0, "state": {"a": 1, "l": [1]}})
    s1 = svc.save(
        "acct",
        {"workflow_id": "w", "step": 1, "state": {"a": 2, "n": "ü"}, "label": "x",
         "metadata": {"m": [1, {"k": None}]}, "agent_id": "bot"},
        if_match=s0["etag"],
    )
    out.append((s1["diff_from_previous"], s1["size_bytes"], s1["label"]))
    with pytest.raises(ApiError) as e:
        svc.save("acct", {"workflow_id": "w", "step": 1, "state": {}})
    out.append((e.value.code, sorted(e.value.extra["existing"])))
    out.append(svc.save("acct", {"workflow_id": "w", "step": 1, "state": {}},
                        if_match=s1["etag"])["etag"] == s1["etag"])
    for raw in (False, True):
        got = svc.get("acct", "cp_w_001", raw=raw)
        state = json.loads(got["state"]) if raw else got["state"]
        out.append((state, got["metadata"], got["diff_from_previous"]))
        res = svc.resume("acct", "w", raw=raw)
        out.append((res["total_checkpoints"], res["latest_checkpoint"]["step"]))
        rep = svc.replay("acct", "w", from_step=0, to_step=5, limit=1, raw=raw)
        out.append((rep["total"], rep["has_more"], rep["total_matching"]))
    out.append([w["workflow_id"] for w in svc.list_workflows("acct")["workflows"]])
    agent = svc.register_agent("acct", {"agent_id": "bot", "name": "B", "capabilities": ["c"]})
    out.append((agent["capabilities"], agent["metadata"]))
    out.append(svc.patch_agent("acct", "bot", {"metadata": {"z": 1}})["metadata"])
    out.append([a["agent_id"] for a in svc.list_agents("acct")["agents"]])
    hook = svc.register_webhook(
        "acct", {"url": "http://127.0.0.1:9/x", "events": ["checkpoint.saved"], "secret": "s"}
    )
    svc.save("acct", {"workflow_id": "w", "step": 2, "state": {"a": 3}})
    claimed = svc.claim_deliveries(30)
    out.append([(d["event"], d["data"]["step"], d["secret"]) for d in claimed])
    svc.finish_delivery(claimed[0], ok=False, status_code=500, error="HTTP 500", retry_in=0)
    log = svc.webhook_deliveries("acct", hook["webhook_id"])["deliveries"]
    out.append([(d["status"], d["attempts"], d["last_status_code"]) for d in log])
    out.append(svc.seconds_to_next_delivery() is not None)
    out.append([h["events"] for h in svc.list_webhooks("acct")["webhooks"]])
    svc.delete_webhook("acct", hook["webhook_id"])
    svc.save("acct", {"workflow_id": "t", "step": 0, "state": {}}, ttl_header="1")
    out.append(svc.sweep())
    svc.delete_agent("acct", "bot")
    svc.delete_workflow("acct", "w")
    with pytest.raises(ApiError):
        svc.resume("acct", "w")
    out.append(svc.revoke_key(key["key_id"])["key_id"] == key["key_id"])
    with pytest.raises(ApiError) as e:
        svc.authenticate(key["api_key"])
    out.append(e.value.code)
    return out


def test_fast_and_plain_paths_agree(tmp_path: Path, store_url: str | None) -> None:
    """Under the PostgreSQL switch the plain path runs on PostgreSQL: same answers."""
    answers = []
    for fast in (True, False):
        plain_url = None if fast else store_url
        store = Store(plain_url or f"sqlite:///{tmp_path / f'{fast}.db'}")
        svc = CheckpointService(store)
        svc.ss = ServiceStore(store, fast=fast)
        assert svc.ss.fast is fast
        answers.append(_scenario(svc))
        store.close()
    assert answers[0] == answers[1]


def _reference_diff(previous: Any, current: Any) -> dict[str, list[str]]:
    """The §6.3 diff written the obvious way (no skipping): the oracle for `leaf_diff`."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    empty = object()

    def leaves(v: Any, path: str, out: list[str]) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                leaves(x, f"{path}.{k}" if path else str(k), out)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                leaves(x, f"{path}[{i}]", out)
        else:
            out.append(path)

    def walk(a: Any, b: Any, path: str) -> None:
        if a is empty:
            leaves(b, path, added)
        elif b is empty:
            leaves(a, path, removed)
        elif isinstance(a, dict) and isinstance(b, dict):
            for k, v in b.items():
                walk(a.get(k, empty), v, f"{path}.{k}" if path else str(k))
            for k, v in a.items():
                if k not in b:
                    walk(v, empty, f"{path}.{k}" if path else str(k))
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                old = a[i] if i < len(a) else empty
                walk(old, b[i] if i < len(b) else empty, f"{path}[{i}]")
        elif (
            isinstance(a, dict | list)
            or isinstance(b, dict | list)
            or type(a) is not type(b)
            or a != b
        ):
            changed.append(path)

    walk(empty if previous is None else previous, current, "")
    return {"added": added, "removed": removed, "changed": changed}


def test_state_diff_matches_leaf_diff() -> None:
    rnd = random.Random(7)

    def value(depth: int) -> Any:
        r = rnd.random()
        if depth > 3 or r < 0.4:
            return rnd.choice([0, 1, 1.0, True, False, None, "x", 2, [], {}, 1.5])
        if r < 0.7:
            return {rnd.choice("abcde"): value(depth + 1) for _ in range(rnd.randint(0, 4))}
        return [value(depth + 1) for _ in range(rnd.randint(0, 4))]

    def mutate(v: Any) -> Any:
        if isinstance(v, dict):
            v = {k: mutate(x) if rnd.random() < 0.3 else x for k, x in v.items()
                 if rnd.random() > 0.1}
            if rnd.random() < 0.2:
                v[rnd.choice("abcdef")] = value(2)
            return v
        if isinstance(v, list):
            v = [mutate(x) if rnd.random() < 0.3 else x for x in v]
            if rnd.random() < 0.2:
                v.append(value(2))
            return v
        return value(2) if rnd.random() < 0.5 else v

    for _ in range(5000):
        a = {k: value(1) for k in "abc"}
        b = mutate(a)
        assert leaf_diff(a, b) == _reference_diff(a, b), (a, b)
        assert leaf_diff(None, b) == _reference_diff(None, b)
    # Equal under == but not the same JSON: reported as changed.
    assert leaf_diff({"x": 1}, {"x": True})["changed"] == ["x"]
    assert leaf_diff({"x": [1]}, {"x": [1.0]})["changed"] == ["x[0]"]


def test_size_bytes_is_python_compact_json() -> None:
    from core.service.checkpoints import _state_text

    rnd = random.Random(3)
    for _ in range(3000):
        state = {
            "f": rnd.choice([rnd.random() * 10 ** rnd.randint(-12, 25), 1e16, 1e-7, -0.0]),
            "i": rnd.randint(-(2**70), 2**70),
            "s": rnd.choice(["plain", "é☃\n\t\u0001\u2028", "item1e5", ""]),
        }
        text, size = _state_text(state)
        expected = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
        assert size == len(expected.encode("utf-8")), (state, text, expected)
        assert json.loads(text) == state


def test_the_largest_step_round_trips_on_either_database(
    tmp_path: Path, store_url: str | None
) -> None:
    """Steps go up to MAX_STEP (2**53 - 1): saved, read, replayed and the head on SQLite and,
    under the PostgreSQL switch, on PostgreSQL (whose INTEGER is 32 bits: it answered 503)."""
    store = Store(store_url or f"sqlite:///{tmp_path / 'cpf.db'}")
    try:
        svc = CheckpointService(store)
        first = svc.save("acct", {"workflow_id": "w", "step": 1, "state": {"a": 0}})
        saved = svc.save(
            "acct", {"workflow_id": "w", "step": MAX_STEP, "state": {"a": 1}},
            if_match=first["etag"],
        )  # fmt: skip
        assert saved["step"] == MAX_STEP
        assert svc.get("acct", saved["checkpoint_id"])["state"] == {"a": 1}
        assert svc.resume("acct", "w")["latest_checkpoint"]["step"] == MAX_STEP
        replay = svc.replay("acct", "w", from_step=2, to_step=MAX_STEP)
        assert [c["step"] for c in replay["checkpoints"]] == [MAX_STEP]
        with pytest.raises(ApiError) as missing:
            svc.get("acct", checkpoint_id_for("w", MAX_STEP - 1))
        assert missing.value.code == "NOT_FOUND"
    finally:
        store.close()
