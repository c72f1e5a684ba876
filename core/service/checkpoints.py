"""Checkpoints and their workflows: save, get, resume, replay, list, delete, expire.

SnapState semantics done right (contract §10): everything is scoped to the account
that owns the API key; inserting a step is one write transaction (of concurrent
writers of a new step exactly one wins); `If-Match` on an existing step is an
idempotent re-save when it equals that step's etag, and on a new step it must equal
the workflow head's etag; etags are opaque and unique per checkpoint; replay is by
step with the range applied before the limit; expired checkpoints are gone on read
and purged by `sweep()`; webhook events go into a durable outbox in the same
transaction as the change they announce (webhooks.emit).

The checkpoints of `cpf` runs (written by the engine, core.store.store
`insert_run_checkpoint`, into the same `checkpoints` table) are read-only workflows
of the account `local`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from core.service import common
from core.service.common import (
    DEFAULT_TTL_SECONDS,
    LOCAL_ACCOUNT,
    MAX_STEP,
    MAX_TTL_SECONDS,
    NULLABLE_STR,
    REPLAY_DEFAULT_LIMIT,
    REPLAY_MAX_LIMIT,
    ApiError,
    Area,
    Context,
    api_time,
    check_body,
    invalid,
    iso,
    retried,
)
from core.service.keys import Principal, hash_key, key_principal
from core.service.webhooks import emit
from core.statediff import leaf_diff

MAX_STATE_BYTES = 1024 * 1024

_log = logging.getLogger("cpf.checkpoints")

# URL-safe ids (§10): whatever the SDK puts raw into a path works.
WORKFLOW_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# A step has at most 16 digits (MAX_STEP); a longer id cannot exist (404, never 500).
_CHECKPOINT_ID_RE = re.compile(r"cp_([A-Za-z0-9_.:-]{1,128})_([0-9]{3,16})")
CHECKPOINT_ID_PATTERN = "^cp_[A-Za-z0-9_.:-]{1,128}_[0-9]{3,16}$"
WORKFLOW_ID_PATTERN = "^[A-Za-z0-9_.:-]{1,128}$"

SAVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["workflow_id", "step", "state"],
    "additionalProperties": False,
    "properties": {
        "workflow_id": {
            "type": "string",
            "pattern": WORKFLOW_ID_PATTERN,
            "description": "1-128 characters of A-Z a-z 0-9 _ . : -",
        },
        "step": {"type": "integer", "minimum": 0, "maximum": MAX_STEP},
        "state": {"type": "object"},
        "label": {**NULLABLE_STR, "maxLength": 256},
        "agent_id": {**NULLABLE_STR, "maxLength": 255},
        "metadata": {"type": ["object", "null"]},
    },
}


def _plain_save_body(body: dict[str, Any]) -> bool:
    """A quick test that accepts only bodies SAVE_SCHEMA accepts (the common case), so
    a valid save skips the general validator; anything else goes through it."""
    if not body.keys() <= _SAVE_KEYS or not body.keys() >= _SAVE_REQUIRED:
        return False
    wf, step = body["workflow_id"], body["step"]
    if not (isinstance(wf, str) and WORKFLOW_ID_RE.fullmatch(wf)):
        return False
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        return False
    if type(body["state"]) is not dict:
        return False
    label, agent, meta = body.get("label"), body.get("agent_id"), body.get("metadata")
    return (
        (label is None or (type(label) is str and len(label) <= 256 and "\x00" not in label))
        and (agent is None or (type(agent) is str and len(agent) <= 255 and "\x00" not in agent))
        and (meta is None or type(meta) is dict)
    )


_SAVE_KEYS = frozenset(SAVE_SCHEMA["properties"])
_SAVE_REQUIRED = frozenset(SAVE_SCHEMA["required"])


def check_save_body(body: Any) -> None:
    """Validate a save body: the common case by a quick test, the rest by the one
    payload validator (same answers)."""
    if isinstance(body, dict) and _plain_save_body(body):
        return
    check_body(SAVE_SCHEMA, body)


def check_workflow_id(workflow_id: str) -> None:
    if not WORKFLOW_ID_RE.fullmatch(workflow_id):
        raise invalid(
            f"Invalid workflow_id {workflow_id[:140]!r}: use 1-128 characters of "
            "A-Z a-z 0-9 _ . : -"
        )


def parse_ttl(
    header: str | None, default: int = DEFAULT_TTL_SECONDS, maximum: int = MAX_TTL_SECONDS
) -> int:
    """`X-Checkpoint-TTL`: a positive integer of seconds, clamped to `maximum`; anything
    else (absent, junk, zero, negative) means `default`, as the reference does."""
    text = (header or "").strip()
    if not text.isascii() or not text.isdigit():
        return default
    text = text.lstrip("0")
    if not text:
        return default
    if len(text) > 18:  # more seconds than any maximum (and no int() of 5,000 digits)
        return maximum
    return min(int(text), maximum)


# -- ids and etags ---------------------------------------------------------------------


def checkpoint_id_for(workflow_id: str, step: int) -> str:
    return f"cp_{workflow_id}_{step:03d}"


def parse_checkpoint_id(checkpoint_id: str) -> tuple[str, int] | None:
    """(workflow_id, step) of a derived checkpoint id; None if it cannot be one."""
    m = _CHECKPOINT_ID_RE.fullmatch(checkpoint_id)
    if m is None:
        return None
    workflow_id, step = m.group(1), int(m.group(2))
    if step > MAX_STEP or checkpoint_id_for(workflow_id, step) != checkpoint_id:
        return None
    return workflow_id, step


def _new_etag(account: str, workflow_id: str, step: int, body: str) -> str:
    # Opaque and unique per stored checkpoint: a random salt means even the same state
    # saved again at the same step after a delete gets a new etag (no ABA).
    salt = secrets.token_hex(8)
    digest = hashlib.sha256(
        f"{account}\0{workflow_id}\0{step}\0{salt}\0".encode() + body.encode()
    ).hexdigest()
    return f'"{digest[:16]}"'


# -- diff ------------------------------------------------------------------------------

_compact = (
    __import__("json")
    .JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
    .encode
)


# Digits -> "1", e/E -> "2", anything else -> "0": finds a number in exponent form.
_EXPONENT_MAP = bytes(
    0x31 if 0x30 <= i <= 0x39 else 0x32 if i in (0x45, 0x65) else 0x30 for i in range(256)
)


def _state_text(state: Any) -> tuple[str, int]:
    """The compact JSON of a state (what is stored and hashed) and its UTF-8 size.

    The size is that of Python's compact JSON (§6.3's `size_bytes`). orjson writes the
    same bytes much faster, except that it spells exponents differently (1e16 vs
    1e+16): any digit followed by an e in its output sends the state to json.dumps."""
    try:
        import orjson

        data = orjson.dumps(state)
        if data.translate(_EXPONENT_MAP).find(b"12") < 0:
            return data.decode("utf-8"), len(data)
    except (ImportError, TypeError):  # no orjson, a >64-bit integer, a lone surrogate
        pass
    text = _compact(state)
    try:
        return text, len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise invalid("state contains a lone UTF-16 surrogate (not valid Unicode)") from exc


class RawJSON(str):
    """A JSON text passed through unparsed (a stored state, with `raw=True` reads)."""


@dataclass
class _HeadCache:
    """The head state of recently written workflows, so a save need not re-read and
    re-parse the previous state to diff against it. Valid only while the workflow's
    head is the one cached (checked inside the write transaction). A head is its row
    id and etag: another replica may delete the workflow and SQLite may then give a
    new checkpoint the same row id, but never the same (randomly salted) etag."""

    size: int = 256
    items: dict[tuple[str, str], tuple[tuple[int, str], Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str], head: tuple[int, str]) -> Any:
        with self.lock:
            hit = self.items.get(key)
        return hit[1] if hit is not None and hit[0] == head else None

    def latest(self, key: tuple[str, str]) -> tuple[tuple[int, str], Any] | None:
        """The cached head of a workflow, whichever it is (to be checked by the store)."""
        with self.lock:
            return self.items.get(key)

    def put(self, key: tuple[str, str], head: tuple[int, str], state: Any) -> None:
        with self.lock:
            self.items.pop(key, None)
            if len(self.items) >= self.size:
                self.items.pop(next(iter(self.items)))
            self.items[key] = (head, state)

    def drop(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.items.pop(key, None)


# A save that met a concurrent writer is retried this many times in all.
_SAVE_ATTEMPTS = 3


@dataclass(frozen=True)
class _SaveInput:
    """A save's validated body: the state and its compact JSON text, the TTL in s."""

    workflow_id: str
    step: int
    state: Any
    text: str
    size: int
    ttl: int
    label: str | None
    agent_id: str | None
    metadata: Any


@dataclass(frozen=True)
class KeyedSave:
    """What `save_keyed` did: "saved" (`record` is the 201's body); "auth" (the key does
    not pass: authenticate it for its 401/403); "rate" (429 after `retry_after` s);
    "general" (a case the one-round-trip save leaves to the general one: `save_general`
    with `principal`, whose key and rate limit were checked and counted)."""

    outcome: str
    principal: Principal | None = None
    record: dict[str, Any] | None = None
    retry_after: int = 0
    save: _SaveInput | None = None


class _Moved(Exception):
    """The workflow changed under a save transaction; it is retried."""


class CheckpointsService(Area):
    """Checkpoints and workflows of an account, and their expiry."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._heads = _HeadCache()
        # API key hash -> account, learned from saves: only a hint for the head cache
        # (a key's account never changes; the key itself is checked on every save).
        self._key_accounts: dict[str, str] = {}

    def one_trip_save(self) -> bool:
        """Whether `save_keyed` is available (PostgreSQL through psycopg)."""
        return bool(self.ss.one_trip_save)

    def async_save(self) -> bool:
        """Whether `save_keyed_async` is available (it has its own connections)."""
        return self.one_trip_save() and self.ss.async_size > 0

    async def close_async_saves(self) -> None:
        """Close the event loop's save connections (at the server's shutdown)."""
        pool = self.ss.async_saves() if self.async_save() else None
        if pool is not None:
            await pool.close()

    @retried
    def save(
        self,
        account: str,
        body: Any,
        *,
        ttl_header: str | None = None,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """Save one step. Returns the save record (201), or raises 400/409/413."""
        return self._save_general(account, self._checked(body, ttl_header), if_match)

    def _checked(self, body: Any, ttl_header: str | None) -> _SaveInput:
        """The save's body validated (400/413 otherwise) and prepared."""
        if isinstance(body, dict):
            step = body.get("step")
            # The reference coerces "3" to 3 (its schema validator does); so do we.
            # (At most 17 digits: longer is out of range anyway, and int() of thousands
            # of digits is refused by Python.)
            if isinstance(step, str) and len(step) <= 17 and step.isascii() and step.isdigit():
                body = {**body, "step": int(step)}
        check_save_body(body)
        workflow_id: str = body["workflow_id"]
        check_workflow_id(workflow_id)
        agent_id = body.get("agent_id")
        metadata = body.get("metadata")
        if agent_id is not None:
            metadata = {**(metadata or {}), "agent_id": agent_id}
        state = body["state"]
        text, size = _state_text(state)
        if size > MAX_STATE_BYTES:
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"state is {size} bytes; the limit is {MAX_STATE_BYTES}"
            )
        return _SaveInput(
            workflow_id=workflow_id,
            step=int(body["step"]),
            state=state,
            text=text,
            size=size,
            ttl=parse_ttl(ttl_header, self.options.default_ttl, self.options.max_ttl),
            label=body.get("label"),
            agent_id=agent_id,
            metadata=metadata,
        )

    def _save_general(self, account: str, s: _SaveInput, if_match: str | None) -> dict[str, Any]:
        # A concurrent first save of the workflow (or of the same step) by another
        # transaction makes our insert fail; the retry then sees it and decides as if
        # the two had been serial (a 409 for the same step, a normal save otherwise).
        for attempt in range(_SAVE_ATTEMPTS):
            try:
                record, enqueued, idempotent = self._save_tx(
                    account,
                    s.workflow_id,
                    s.step,
                    s.state,
                    s.text,
                    s.size,
                    s.ttl,
                    if_match,
                    label=s.label,
                    agent_id=s.agent_id,
                    metadata=s.metadata,
                )
                break
            except _Moved as exc:
                if attempt + 1 < _SAVE_ATTEMPTS:
                    continue
                raise ApiError(
                    "CONFLICT",
                    f"Checkpoint {checkpoint_id_for(s.workflow_id, s.step)} was written "
                    "concurrently",
                ) from exc
        if not idempotent:
            self._heads.put((account, s.workflow_id), (record["id"], record["etag"]), s.state)
        if enqueued:
            self._notify()
        return _save_record(record)

    def save_keyed(
        self,
        raw_key: str,
        body: Any,
        *,
        ttl_header: str | None = None,
        if_match: str | None = None,
        rate: tuple[int, float] | None = None,
    ) -> KeyedSave:
        """A save whose API key (and rate limit, `rate` = (limit, window s)) is not
        checked yet: on PostgreSQL in one round trip (`cpf_save_checkpoint`), with the
        same answers as `authenticate` + `rate_limit` + `save`. A body that is not a
        valid save raises its 400/413 before anything is read or counted (the caller
        then authenticates first: 401 before 400). Returns what the caller does next
        (see `KeyedSave`)."""
        steps = self._keyed_steps(raw_key, body, ttl_header, if_match, rate)
        args = next(steps)
        while True:
            try:
                args = steps.send(self._call_save(args))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def save_keyed_async(
        self,
        raw_key: str,
        body: Any,
        *,
        ttl_header: str | None = None,
        if_match: str | None = None,
        rate: tuple[int, float] | None = None,
    ) -> KeyedSave:
        """`save_keyed` on the event loop (the store call awaited, no thread)."""
        steps = self._keyed_steps(raw_key, body, ttl_header, if_match, rate)
        args = next(steps)
        while True:
            out = await self._call_save_async(args)
            try:
                args = steps.send(out)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _keyed_steps(
        self,
        raw_key: str,
        body: Any,
        ttl_header: str | None,
        if_match: str | None,
        rate: tuple[int, float] | None,
    ) -> Generator[tuple[Any, ...], dict[str, Any], KeyedSave]:
        """The logic of `save_keyed`: yields the arguments of each call of the store's
        function and is sent its answer (the callers differ only in how they wait)."""
        s = self._checked(body, ttl_header)
        key_hash = hash_key(raw_key)
        account = self._key_accounts.get(key_hash)  # a hint: the store checks the head
        cached = self._heads.latest((account, s.workflow_id)) if account is not None else None
        head, previous = cached if cached is not None else (None, None)
        # Fixed for every attempt: a retry after a lost answer finds its own commit.
        etag = _new_etag(key_hash, s.workflow_id, s.step, s.text)
        salt = secrets.token_hex(16)
        metadata = None if s.metadata is None else json.dumps(s.metadata)
        limit, window = rate if rate is not None and rate[0] > 0 else (0, 0.0)
        principal: Principal | None = None
        for _ in range(_SAVE_ATTEMPTS + 1):
            now_dt = common.utc_now()
            diff = leaf_diff(previous, s.state)
            out = yield (
                key_hash,
                iso(now_dt),
                iso(now_dt + timedelta(seconds=s.ttl)),
                float(s.ttl),
                limit,
                float(window),
                checkpoint_id_for(s.workflow_id, s.step),
                s.workflow_id,
                s.step,
                s.label,
                s.text,
                metadata,
                s.agent_id,
                etag,
                json.dumps(diff),
                s.size,
                if_match,
                head[0] if head is not None else None,
                head[1] if head is not None else None,
                salt,
            )
            status = out["o_status"]
            if status == "auth":
                return KeyedSave("auth")
            principal = Principal(account=out["o_account"], key_id=out["o_key_id"])
            self._remember_key(key_hash, principal.account)
            if status == "rate":
                return KeyedSave("rate", retry_after=max(1, math.ceil(out["o_retry_after"])))
            if status == "fallback":
                return KeyedSave("general", principal=principal, save=s)
            if status == "ok":
                break
            # "moved": the head is another one than we diffed against; nothing was
            # written (the rate limit counted this request once: not again).
            limit, window = 0, 0.0
            if out["o_head_id"] is None:
                head, previous = None, None
            else:
                head = (int(out["o_head_id"]), out["o_head_etag"])
                text = out["o_head_state"]
                previous = None if text is None else json.loads(text)
        else:
            return KeyedSave("general", principal=principal, save=s)
        record = {
            "id": int(out["o_id"]),
            "checkpoint_id": checkpoint_id_for(s.workflow_id, s.step),
            "workflow_id": s.workflow_id,
            "step": s.step,
            "label": s.label,
            "etag": etag,
            "created_at": out["o_created_at"],
            "expires_at": out["o_expires_at"],
            "diff_from_previous": diff,
            "size_bytes": s.size,
        }
        self._heads.put((principal.account, s.workflow_id), (record["id"], etag), s.state)
        if out["o_enqueued"]:
            self._notify()
        return KeyedSave("saved", principal=principal, record=_save_record(record))

    def save_general(
        self, principal: Principal, s: _SaveInput, if_match: str | None
    ) -> dict[str, Any]:
        """The general save of a request `save_keyed` handed back ("general")."""
        return retried(CheckpointsService._save_general)(self, principal.account, s, if_match)

    @retried
    def _call_save(self, args: tuple[Any, ...]) -> dict[str, Any]:
        return self.ss.save_in_one(args)

    async def _call_save_async(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """`_call_save` awaited: transient errors retried with backoff (as `retried`)."""
        from core.service.store.base import TransientStoreError

        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.02
        while True:
            try:
                return await self.ss.save_in_one_async(args)
            except TransientStoreError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                _log.warning("save: %s; retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    def _remember_key(self, key_hash: str, account: str) -> None:
        if self._key_accounts.get(key_hash) != account:
            if len(self._key_accounts) >= 1024:
                self._key_accounts.clear()
            self._key_accounts[key_hash] = account

    def _save_tx(
        self,
        account: str,
        workflow_id: str,
        step: int,
        state: Any,
        text: str,
        size: int,
        ttl: int,
        if_match: str | None,
        *,
        label: str | None,
        agent_id: str | None,
        metadata: Any,
    ) -> tuple[dict[str, Any], bool, bool]:
        """One save transaction: (checkpoint record, enqueued an event, idempotent).

        The workflow row is locked first (PostgreSQL; SQLite serializes all writers),
        so the If-Match check, the step insert and the move of head, total and etag
        see and change one consistent workflow, whichever replica serves the request."""
        key = (account, workflow_id)
        ss = self.ss
        enqueued = False
        with ss.write() as conn:
            if account == LOCAL_ACCOUNT and ss.run_exists(conn, workflow_id):
                raise ApiError(
                    "CONFLICT",
                    f"Workflow {workflow_id} is a cpf run: its checkpoints are read-only",
                )
            wf = ss.workflow(conn, account, workflow_id, lock="wait")
            # The time is read under the row lock, so saves of one workflow get their
            # created_at in the order they commit (the head is the newest checkpoint).
            now_dt = common.utc_now()
            now = iso(now_dt)
            if wf is not None and wf["expires_at"] is not None and wf["expires_at"] <= now:
                enqueued |= self._expire_workflow(conn, wf, now)
                wf = None
            existing = self._live_step(conn, wf, account, workflow_id, step, now)
            if existing is not None:
                _check_resave(existing, if_match)
                # Same step, same etag: an idempotent retry; nothing is written, but
                # like the reference it still announces checkpoint.saved (marked).
                enqueued |= self._emit(
                    conn,
                    account,
                    "checkpoint.saved",
                    {**_saved_event(existing), "idempotent": True},
                    now,
                )
                return existing, enqueued, True
            if if_match is not None:
                _check_head(wf, workflow_id, if_match)
            previous = None
            if wf is not None:
                previous = self._heads.get(key, (wf["head_id"], wf["head_etag"]))
                if previous is None:
                    previous = ss.state_by_pk(conn, wf["head_id"])
            expires_at = iso(now_dt + timedelta(seconds=ttl))
            record = {
                "checkpoint_id": checkpoint_id_for(workflow_id, step),
                "account": account,
                "workflow_id": workflow_id,
                "run_id": None,
                "step": step,
                "label": label,
                "state": state,
                "metadata": metadata,
                "etag": _new_etag(account, workflow_id, step, text),
                "diff_from_previous": leaf_diff(previous, state),
                "size_bytes": size,
                "created_at": now,
                "expires_at": expires_at,
            }
            self._insert_head(conn, wf, record, text, now)
            if agent_id is not None:
                ss.touch_agent(conn, account, agent_id, now)
            enqueued |= self._emit(conn, account, "checkpoint.saved", _saved_event(record), now)
        return record, enqueued, False

    def _live_step(
        self,
        conn: Any,
        wf: dict[str, Any] | None,
        account: str,
        workflow_id: str,
        step: int,
        now: str,
    ) -> dict[str, Any] | None:
        """The checkpoint at `step`, if live; an expired one is deleted first (and the
        workflow's count and earliest expiry follow)."""
        ss = self.ss
        existing = ss.checkpoint_at(conn, account, workflow_id, step)
        if existing is not None and _expired(existing, now):
            ss.delete_checkpoint(conn, existing["id"])
            existing = None
            if wf is not None:
                ss.update_workflow(
                    conn,
                    wf["id"],
                    total=ss.count_live(conn, account, workflow_id, now),
                    min_expires_at=ss.min_expiry(conn, account, workflow_id),
                )
        return existing

    def _insert_head(
        self, conn: Any, wf: dict[str, Any] | None, record: dict[str, Any], text: str, now: str
    ) -> None:
        """Insert the new checkpoint and make it the workflow's head (a new workflow
        row, or a compare-and-set on the head this transaction read)."""
        from core.service.store.base import INTEGRITY_ERRORS

        ss = self.ss
        try:
            record["id"] = ss.insert_checkpoint(conn, record, text)
            if wf is None:
                ss.insert_workflow(
                    conn,
                    {
                        "account": record["account"],
                        "workflow_id": record["workflow_id"],
                        "head_id": record["id"],
                        "head_step": record["step"],
                        "head_etag": record["etag"],
                        "total": 1,
                        "started_at": now,
                        "last_activity_at": now,
                        "expires_at": record["expires_at"],
                        "min_expires_at": record["expires_at"],
                    },
                )
            elif not ss.advance_head(conn, wf["id"], wf["head_id"], record, now):
                raise _Moved  # cannot happen under the row lock; retried if it does
        except INTEGRITY_ERRORS as exc:
            # Another transaction inserted this step, or this workflow's first
            # row, before us (PostgreSQL: there was no row to lock yet).
            raise _Moved from exc

    @retried
    def get(self, account: str, checkpoint_id: str, *, raw: bool = False) -> dict[str, Any]:
        parsed = parse_checkpoint_id(checkpoint_id)
        missing = ApiError("NOT_FOUND", f"Checkpoint {checkpoint_id} not found")
        if parsed is None:
            raise missing
        workflow_id, step = parsed
        now = iso(common.utc_now())
        with self.ss.read() as conn:
            cp = self.ss.checkpoint_at(conn, account, workflow_id, step, raw_state=raw)
            if cp is None or _expired(cp, now):
                raise missing
            wf = self.ss.workflow(conn, account, workflow_id)
        if wf is not None and wf["expires_at"] is not None and wf["expires_at"] <= now:
            raise missing
        return _full_record(cp, empty_metadata=None, raw=raw)

    @retried
    def resume(self, account: str, workflow_id: str, *, raw: bool = False) -> dict[str, Any]:
        """The workflow's head (its most recently written checkpoint) and summary.

        `raw=True` returns states as `RawJSON` texts (for a caller that re-serializes)."""
        check_workflow_id(workflow_id)
        now = iso(common.utc_now())
        ss = self.ss
        with ss.read() as conn:
            wf = self._live_workflow(conn, account, workflow_id, now)
            head = (
                ss.checkpoint_by_pk(conn, wf["head_id"], raw_state=raw) if wf is not None else None
            )
            if wf is None or head is None:
                raise ApiError("NOT_FOUND", f"No checkpoints found for workflow {workflow_id}")
            total = wf["total"]
            if wf["min_expires_at"] is not None and wf["min_expires_at"] <= now:
                total = ss.count_live(conn, account, workflow_id, now)
            hooks = ss.hooks_for(conn, account)
        out = _resume_record(workflow_id, wf, head, total, raw)
        if any("workflow.resumed" in events for _, events in hooks):
            with ss.write() as conn:
                self._emit(
                    conn,
                    account,
                    "workflow.resumed",
                    {
                        "workflow_id": workflow_id,
                        "checkpoint_id": head["checkpoint_id"],
                        "step": head["step"],
                        "etag": head["etag"],
                    },
                    iso(common.utc_now()),
                )
            self._notify()
        return out

    def resume_keyed(
        self, raw_key: str, workflow_id: str
    ) -> tuple[Principal, Callable[[], dict[str, Any]]] | None:
        """`authenticate` and `resume` (states raw) with the key and the reads in one
        round trip (PostgreSQL through psycopg): the principal, or the 401/403 that
        `authenticate` raises, and the answer to give once the rate limit let the request
        through. The rare cases (a run's workflow, checkpoints past their expiry, a
        `workflow.resumed` webhook) get `resume` itself. None leaves the request to the
        general path: an unknown key or an invalid workflow id (401 before 400)."""
        try:
            check_workflow_id(workflow_id)
        except ApiError:
            return None
        row = self._resume_row(hash_key(raw_key), workflow_id)
        if row is None:
            return None
        who = key_principal({**row, "expires_at": row["key_expires_at"]})
        now = iso(common.utc_now())

        def answer() -> dict[str, Any]:
            expired = row["w_expires_at"] is not None and row["w_expires_at"] <= now
            if row["w_id"] is None and who.account == LOCAL_ACCOUNT:
                return self.resume(who.account, workflow_id, raw=True)  # a cpf run's
            if row["w_id"] is None or expired or row["h_id"] is None:
                raise ApiError("NOT_FOUND", f"No checkpoints found for workflow {workflow_id}")
            if row["resumed_hook"] or (
                row["min_expires_at"] is not None and row["min_expires_at"] <= now
            ):
                return self.resume(who.account, workflow_id, raw=True)
            wf = {
                "started_at": row["started_at"],
                "last_activity_at": row["last_activity_at"],
                "expires_at": row["w_expires_at"],
            }
            head = {**row, "id": row["h_id"], "expires_at": row["h_expires_at"]}
            return _resume_record(workflow_id, wf, head, row["total"], True)

        return who, answer

    @retried
    def _resume_row(self, key_hash: str, workflow_id: str) -> dict[str, Any] | None:
        return self.ss.resume_in_one(key_hash, workflow_id)  # type: ignore[no-any-return]

    @retried
    def replay(
        self,
        account: str,
        workflow_id: str,
        *,
        from_step: int | None = None,
        to_step: int | None = None,
        limit: int | None = None,
        raw: bool = False,
    ) -> dict[str, Any]:
        """Checkpoints by step; the step range is applied before `limit`, and `has_more`
        says whether more match after this page (ask again with `next_from_step`)."""
        check_workflow_id(workflow_id)
        if limit is None:
            limit = REPLAY_DEFAULT_LIMIT
        if not 1 <= limit <= REPLAY_MAX_LIMIT:
            raise invalid(f"limit must be between 1 and {REPLAY_MAX_LIMIT}")
        for name, value in (("from_step", from_step), ("to_step", to_step)):
            if value is not None and value < 0:
                raise invalid(f"{name} must be >= 0")
        now = iso(common.utc_now())
        ss = self.ss
        with ss.read() as conn:
            wf = self._live_workflow(conn, account, workflow_id, now)
            rows: list[dict[str, Any]] = []
            matching = 0
            if wf is not None:
                rows = ss.replay(
                    conn, account, workflow_id, now, from_step, to_step, limit + 1, raw
                )
                if len(rows) > limit or from_step is not None or to_step is not None:
                    matching = ss.count_live(conn, account, workflow_id, now, from_step, to_step)
                else:
                    matching = len(rows)
        has_more = len(rows) > limit
        rows = rows[:limit]
        out: dict[str, Any] = {
            "workflow_id": workflow_id,
            "checkpoints": [_full_record(r, empty_metadata={}, raw=raw) for r in rows],
            "total": len(rows),
            "total_matching": matching,
            "has_more": has_more,
        }
        if has_more:
            out["next_from_step"] = rows[-1]["step"] + 1
        return out

    @retried
    def list_workflows(self, account: str, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        if not 1 <= limit <= REPLAY_MAX_LIMIT:
            raise invalid(f"limit must be between 1 and {REPLAY_MAX_LIMIT}")
        if offset < 0:
            raise invalid("offset must be >= 0")
        now = iso(common.utc_now())
        rows = self.ss.list_workflows(account, now, limit + 1, offset)
        items = []
        for r in rows[:limit]:
            item = {
                "workflow_id": r["workflow_id"],
                "latest_step": r["head_step"],
                "total_checkpoints": int(r["total"]),
                "workflow_started_at": api_time(r["started_at"]),
                "last_activity_at": api_time(r["last_activity_at"]),
                "expires_at": api_time(r["expires_at"]),
                "source": "run" if r["run_id"] else "api",
            }
            if r["run_id"]:
                item["run_id"] = r["run_id"]
            items.append(item)
        return {
            "workflows": items,
            "total": len(items),
            "has_more": len(rows) > limit,
            "offset": offset,
        }

    @retried
    def delete_workflow(self, account: str, workflow_id: str) -> None:
        check_workflow_id(workflow_id)
        now = iso(common.utc_now())
        with self.ss.write() as conn:
            if account == LOCAL_ACCOUNT and self.ss.run_exists(conn, workflow_id):
                raise ApiError(
                    "CONFLICT",
                    f"Workflow {workflow_id} is a cpf run: delete it with `cpf delete`",
                )
            wf = self._live_workflow(conn, account, workflow_id, now, lock=True)
            if wf is None:
                raise ApiError("NOT_FOUND", f"Workflow {workflow_id} not found")
            self.ss.delete_workflow(conn, account, workflow_id)
        self._heads.drop((account, workflow_id))

    # -- expiry -----------------------------------------------------------------------

    @retried
    def sweep(self, batch: int = 200) -> dict[str, int]:
        """Purge expired workflows (emitting workflow.expired) and expired checkpoints."""
        now = iso(common.utc_now())
        workflows = checkpoints = 0
        enqueued = False
        for wf in self.ss.expired_workflows(now, batch):
            with self.ss.write() as conn:
                # Locked, or skipped if another replica (or a save) holds it: one
                # replica expires a workflow and announces it once.
                fresh = self.ss.workflow(conn, wf["account"], wf["workflow_id"], lock="skip")
                if fresh is None or fresh["expires_at"] is None or fresh["expires_at"] > now:
                    continue  # saved again or expired by another replica since we looked
                enqueued |= self._expire_workflow(conn, fresh, now)
            self._heads.drop((wf["account"], wf["workflow_id"]))
            workflows += 1
        for wf in self.ss.workflows_with_expired_checkpoints(now, batch):
            with self.ss.write() as conn:
                account, workflow_id = wf["account"], wf["workflow_id"]
                fresh = self.ss.workflow(conn, account, workflow_id, lock="skip")
                if fresh is None:
                    continue
                checkpoints += self.ss.purge_expired_checkpoints(conn, account, workflow_id, now)
                self.ss.update_workflow(
                    conn,
                    fresh["id"],
                    total=self.ss.count_live(conn, account, workflow_id, now),
                    min_expires_at=self.ss.min_expiry(conn, account, workflow_id),
                )
        if enqueued:
            self._notify()
        return {"workflows": workflows, "checkpoints": checkpoints}

    # -- internals --------------------------------------------------------------------

    def _live_workflow(
        self, conn: Any, account: str, workflow_id: str, now: str, lock: bool = False
    ) -> dict[str, Any] | None:
        wf = self.ss.workflow(conn, account, workflow_id, lock="wait" if lock else None)
        if wf is not None:
            if wf["expires_at"] is not None and wf["expires_at"] <= now:
                return None
            wf["run_id"] = None
            return wf
        if account == LOCAL_ACCOUNT:
            return self.ss.derived_workflow(conn, account, workflow_id)
        return None

    def _expire_workflow(self, conn: Any, wf: dict[str, Any], now: str) -> bool:
        n = self.ss.delete_workflow(conn, wf["account"], wf["workflow_id"])
        return self._emit(
            conn,
            wf["account"],
            "workflow.expired",
            {
                "workflow_id": wf["workflow_id"],
                "expired_at": api_time(wf["expires_at"]),
                "last_step": wf["head_step"],
                "total_checkpoints": n,
            },
            now,
        )

    def _emit(self, conn: Any, account: str, event: str, data: dict[str, Any], now: str) -> bool:
        return emit(self.ss, conn, account, event, data, now)


def _check_resave(existing: dict[str, Any], if_match: str | None) -> None:
    """A save of a step that exists is only an idempotent retry: with If-Match equal to
    that checkpoint's etag. Anything else is a 409."""
    if if_match is None:
        raise ApiError(
            "CONFLICT",
            f"Checkpoint {existing['checkpoint_id']} already exists",
            extra={
                "existing": {
                    "checkpoint_id": existing["checkpoint_id"],
                    "etag": existing["etag"],
                }
            },
        )
    if if_match != existing["etag"]:
        raise ApiError(
            "CONFLICT",
            f"If-Match {if_match} does not match checkpoint "
            f"{existing['checkpoint_id']} (etag {existing['etag']})",
        )


def _check_head(wf: dict[str, Any] | None, workflow_id: str, if_match: str) -> None:
    """If-Match on a new step must be the etag of the workflow's head."""
    head_etag = wf["head_etag"] if wf is not None else None
    if if_match != head_etag:
        where = (
            f"its head is step {wf['head_step']} with etag {head_etag}"
            if wf is not None
            else "it has no checkpoints"
        )
        raise ApiError(
            "CONFLICT",
            f"If-Match {if_match} is not the head of workflow {workflow_id}: {where}",
        )


def _saved_event(cp: dict[str, Any]) -> dict[str, Any]:
    return {
        "workflow_id": cp["workflow_id"],
        "checkpoint_id": cp["checkpoint_id"],
        "step": cp["step"],
        "etag": cp["etag"],
        "label": cp["label"],
        "created_at": api_time(cp["created_at"]),
    }


def _expired(row: dict[str, Any], now: str) -> bool:
    return row["expires_at"] is not None and row["expires_at"] <= now


def _save_record(cp: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkpoint_id": cp["checkpoint_id"],
        "workflow_id": cp["workflow_id"],
        "step": cp["step"],
        "label": cp["label"],
        "etag": cp["etag"],
        "created_at": api_time(cp["created_at"]),
        "expires_at": api_time(cp["expires_at"]),
        "diff_from_previous": cp["diff_from_previous"]
        or {"added": [], "removed": [], "changed": []},
        "size_bytes": cp["size_bytes"],
    }


def _resume_record(
    workflow_id: str, wf: dict[str, Any], head: dict[str, Any], total: Any, raw: bool
) -> dict[str, Any]:
    out = {
        "workflow_id": workflow_id,
        "latest_checkpoint": _full_record(head, empty_metadata={}, raw=raw),
        "total_checkpoints": int(total),
        "workflow_started_at": api_time(wf["started_at"]),
        "last_activity_at": api_time(wf["last_activity_at"]),
        "expires_at": api_time(wf["expires_at"]),
    }
    if wf.get("run_id"):
        out["run_id"] = wf["run_id"]
    return out


def _full_record(cp: dict[str, Any], *, empty_metadata: Any, raw: bool = False) -> dict[str, Any]:
    out = {
        "checkpoint_id": cp["checkpoint_id"],
        "workflow_id": cp["workflow_id"],
        "step": cp["step"],
        "label": cp["label"],
        "state": RawJSON(cp["state"]) if raw else cp["state"],
        "metadata": cp["metadata"] if cp["metadata"] is not None else empty_metadata,
        "etag": cp["etag"],
        "created_at": api_time(cp["created_at"]),
        "expires_at": api_time(cp["expires_at"]),
        "diff_from_previous": cp["diff_from_previous"]
        or {"added": [], "removed": [], "changed": []},
        "size_bytes": cp["size_bytes"],
    }
    if cp.get("run_id"):
        out["run_id"] = cp["run_id"]
    return out
