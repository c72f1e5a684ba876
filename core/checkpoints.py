"""The checkpoint API of the engine: what `cpf serve` (and `cpf keys`) call.

SnapState semantics done right (contract §10): everything is scoped to the account
that owns the API key; inserting a step is one write transaction (of concurrent
writers of a new step exactly one wins); `If-Match` on an existing step is an
idempotent re-save when it equals that step's etag, and on a new step it must equal
the workflow head's etag; etags are opaque and unique per checkpoint; replay is by
step with the range applied before the limit; expired checkpoints are gone on read
and purged by `sweep()`; webhook events go into a durable outbox in the same
transaction as the change they announce.

Functions return plain JSON-ready dicts and raise `ApiError` (a `CpfError` whose code
is the wire code: NOT_FOUND, CONFLICT, ...). No HTTP here, no SQL: the SQL is in
`core.store.service_store`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.envelope import CpfError, ExitCode, PersistenceError
from core.statediff import leaf_diff

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_STATE_BYTES = 1024 * 1024
MAX_AGENTS = 50
MAX_WEBHOOKS = 25
MAX_STEP = 2**53 - 1  # what a JavaScript client can represent exactly
MAX_OFFSET = MAX_STEP  # of GET /workflows (SQL OFFSET is a signed 64-bit integer)
REPLAY_DEFAULT_LIMIT = 100
REPLAY_MAX_LIMIT = 1000
KEY_PREFIX = "snp_"
LOCAL_ACCOUNT = "local"

EVENTS = ("checkpoint.saved", "workflow.resumed", "workflow.expired")

# URL-safe ids (§10): whatever the SDK puts raw into a path works.
WORKFLOW_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
AGENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
ACCOUNT_RE = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")
# A step has at most 16 digits (MAX_STEP); a longer id cannot exist (404, never 500).
_CHECKPOINT_ID_RE = re.compile(r"cp_([A-Za-z0-9_.:-]{1,128})_([0-9]{3,16})")
CHECKPOINT_ID_PATTERN = "^cp_[A-Za-z0-9_.:-]{1,128}_[0-9]{3,16}$"
WORKFLOW_ID_PATTERN = "^[A-Za-z0-9_.:-]{1,128}$"
AGENT_ID_PATTERN = "^[A-Za-z0-9_-]{1,255}$"
WEBHOOK_ID_PATTERN = "^wh_[0-9a-f]{24}$"

# -- request schemas (one validator: core.payload; also the OpenAPI document) ----------

_NULLABLE_STR = {"type": ["string", "null"]}

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
        "label": {**_NULLABLE_STR, "maxLength": 256},
        "agent_id": {**_NULLABLE_STR, "maxLength": 255},
        "metadata": {"type": ["object", "null"]},
    },
}

_AGENT_FIELDS: dict[str, Any] = {
    "name": {**_NULLABLE_STR, "maxLength": 255},
    "description": {**_NULLABLE_STR, "maxLength": 4096},
    "capabilities": {
        "type": ["array", "null"],
        "items": {"type": "string", "maxLength": 255},
        "maxItems": 100,
    },
    "metadata": {"type": ["object", "null"]},
}

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["agent_id"],
    "additionalProperties": False,
    "properties": {
        "agent_id": {"type": "string", "pattern": AGENT_ID_PATTERN},
        **_AGENT_FIELDS,
    },
}

AGENT_PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": dict(_AGENT_FIELDS),
}

WEBHOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url", "events"],
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "format": "uri",
            "pattern": "^https?://[^\\s/?#]+",
            "maxLength": 2048,
            "description": "An absolute http(s) URI in ASCII (RFC 3986): a host (name or "
            "IP literal), an optional port 1-65535; no spaces or control characters",
        },
        "events": {
            "type": "array",
            "minItems": 1,
            "items": {"enum": list(EVENTS)},
        },
        "secret": {"type": ["string", "null"], "maxLength": 256},
    },
}


class ApiError(CpfError):
    """A refusal of the checkpoint API; `code` is the wire code (VALIDATION_ERROR, ...)."""

    exit_code = ExitCode.VALIDATION_ERROR

    def __init__(self, code: str, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(code, message)
        # Sibling members of "error" in the response body (the 409's `existing`).
        self.extra = extra


def _invalid(message: str) -> ApiError:
    return ApiError("VALIDATION_ERROR", message)


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
        (label is None or (type(label) is str and len(label) <= 256))
        and (agent is None or (type(agent) is str and len(agent) <= 255))
        and (meta is None or type(meta) is dict)
    )


_SAVE_KEYS = frozenset(SAVE_SCHEMA["properties"])
_SAVE_REQUIRED = frozenset(SAVE_SCHEMA["required"])


def check_body(schema: dict[str, Any], body: Any) -> None:
    """Validate a request body with the project's one payload validator."""
    from core.payload import check_payload

    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object")
    if schema is SAVE_SCHEMA and _plain_save_body(body):
        return
    errors = check_payload(schema, body)
    if errors:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise _invalid(f"Invalid request body: {shown}{more}")


def check_workflow_id(workflow_id: str) -> None:
    if not WORKFLOW_ID_RE.fullmatch(workflow_id):
        raise _invalid(
            f"Invalid workflow_id {workflow_id[:140]!r}: use 1-128 characters of "
            "A-Z a-z 0-9 _ . : -"
        )


# RFC 3986 characters (unreserved, reserved and %): no space, control or non-ASCII.
_URI_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "-._~:/?#[]@!$&'()*+,;=%"
)
_PCT_BAD = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 3986 reg-name: unreserved, sub-delims and %XX; whether DNS can resolve it (label
# lengths, empty labels) is for delivery to find out, as for any unknown host.
_HOST_RE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+")


def check_webhook_url(url: str) -> None:
    """The syntax of a webhook target: an absolute http(s) URI (RFC 3986, ASCII) with a
    host name or IP literal and, if given, a port of 1-65535. Which addresses it may
    reach is decided elsewhere; this only refuses what no HTTP client could use."""
    from ipaddress import IPv6Address
    from urllib.parse import urlsplit

    shown = url[:80].encode("unicode_escape").decode("ascii")

    def bad(why: str) -> ApiError:
        return _invalid(f"Invalid webhook url '{shown}': {why}")

    if not set(url) <= _URI_CHARS:
        raise bad("use an ASCII http(s) URI without spaces or control characters "
                  "(percent-encode the rest, punycode for host names)")
    if _PCT_BAD.search(url):
        raise bad("a % must start a %XX escape")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise bad("the scheme must be http or https")
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        literal, _, after = host[1:].partition("]")
        try:
            IPv6Address(literal)
        except ValueError as exc:
            raise bad("the host is not a valid IPv6 literal") from exc
        port_text = after[1:] if after.startswith(":") else after
        if after and not after.startswith(":"):
            raise bad("only a :port may follow the IPv6 literal")
    else:
        port_text = host.partition(":")[2]
        if not _HOST_RE.fullmatch(parts.hostname or ""):
            raise bad("the host is missing or not a valid host name")
    if not (port_text.isdigit() or port_text == "") or port == 0:
        raise bad("the port must be 1-65535")


def check_agent_id(agent_id: str) -> None:
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise _invalid(
            f"Invalid agent_id {agent_id[:260]!r}: use 1-255 characters of A-Z a-z 0-9 _ -"
        )


# -- time ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    # The store's format (core.store.store.now_iso): sorts as text.
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def api_time(stored: str | None) -> str | None:
    """Stored timestamps (microseconds, +00:00) as the wire's `...T10:11:48.404Z`."""
    if stored is None:
        return None
    return stored[:23] + "Z" if len(stored) >= 23 and stored[19] == "." else stored


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


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


# -- diff ------------------------------------------------------------------------------

_compact = __import__("json").JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False
).encode


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
        raise _invalid("state contains a lone UTF-16 surrogate (not valid Unicode)") from exc


class RawJSON(str):
    """A JSON text passed through unparsed (a stored state, with `raw=True` reads)."""


# -- the API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    account: str
    key_id: str


@dataclass
class Options:
    default_ttl: int = DEFAULT_TTL_SECONDS
    max_ttl: int = MAX_TTL_SECONDS
    max_agents: int = MAX_AGENTS
    max_webhooks: int = MAX_WEBHOOKS
    # Connections to a database server (not SQLite): at most `pool_size` per process,
    # waiting up to `pool_timeout` s for a free one.
    pool_size: int = 10
    pool_timeout: float = 30.0
    # Transient store errors (nothing written) are retried for up to this many seconds.
    retry_deadline: float = 10.0


_log = logging.getLogger("cpf.checkpoints")


def _retried(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a service call again after a transient store error (a dropped connection,
    too many clients, a deadlock: nothing was written), with jittered exponential
    backoff, until `options.retry_deadline` has passed; then the error stands (503)."""

    @functools.wraps(method)
    def call(self: CheckpointService, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.02
        while True:
            try:
                return method(self, *args, **kwargs)
            except PersistenceError as exc:
                from core.store.service_store import TransientStoreError

                if not isinstance(exc, TransientStoreError):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                _log.warning("%s: %s; retrying in %.2f s", method.__name__, exc, delay)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    return call


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


class _Moved(Exception):
    """The workflow changed under a save transaction; it is retried."""


class CheckpointService:
    """The checkpoint API over one store."""

    def __init__(self, store: Any = None, options: Options | None = None) -> None:
        from core.store.service_store import PoolConfig, ServiceStore
        from core.store.store import open_store

        self.options = options or Options()
        pool = PoolConfig(size=self.options.pool_size, timeout=self.options.pool_timeout)
        self.ss = ServiceStore(store or open_store(), pool=pool)
        self._heads = _HeadCache()
        # Called (without arguments) after a commit that enqueued webhook deliveries.
        self.on_enqueue: Callable[[], None] | None = None

    # -- keys -------------------------------------------------------------------------

    @_retried
    def create_key(self, account: str, label: str | None = None) -> dict[str, Any]:
        if not ACCOUNT_RE.fullmatch(account):
            raise _invalid(
                f"Invalid account name {account[:140]!r}: use 1-128 characters of "
                "A-Z a-z 0-9 _ . @ : -"
            )
        raw = KEY_PREFIX + secrets.token_hex(16)
        now = _iso(_now())
        key_id = "key_" + secrets.token_hex(8)
        with self.ss.write() as conn:
            self.ss.ensure_account(conn, account, now)
            self.ss.insert_key(
                conn,
                {
                    "key_id": key_id,
                    "account": account,
                    "key_hash": hash_key(raw),
                    "prefix": raw[:12],
                    "label": label,
                    "created_at": now,
                },
            )
        return {
            "api_key": raw,
            "key_id": key_id,
            "account": account,
            "prefix": raw[:12],
            "created_at": api_time(now),
        }

    @_retried
    def list_keys(self, account: str | None = None) -> list[dict[str, Any]]:
        out = []
        for k in self.ss.list_keys(account):
            out.append(
                {
                    **k,
                    "created_at": api_time(k["created_at"]),
                    "expires_at": api_time(k["expires_at"]),
                    "revoked_at": api_time(k["revoked_at"]),
                    "active": k["revoked_at"] is None,
                }
            )
        return out

    @_retried
    def revoke_key(self, key_id: str) -> dict[str, Any]:
        now = _iso(_now())
        with self.ss.write() as conn:
            key = self.ss.get_key(conn, key_id)
            if key is None:
                raise ApiError("NOT_FOUND", f"API key {key_id} not found")
            if key["revoked_at"] is None:
                self.ss.revoke_key(conn, key_id, now)
                key["revoked_at"] = now
        return {
            "key_id": key_id,
            "account": key["account"],
            "prefix": key["prefix"],
            "revoked_at": api_time(key["revoked_at"]),
        }

    @_retried
    def authenticate(self, raw_key: str) -> Principal:
        """The account of an API key, or 401 (unknown, revoked, expired) / 403."""
        row = self.ss.key_by_hash(hash_key(raw_key)) if raw_key else None
        if row is None:
            raise ApiError("UNAUTHORIZED", "Invalid API key")
        if row["revoked_at"] is not None:
            raise ApiError("UNAUTHORIZED", "API key has been revoked")
        if row["expires_at"] is not None and row["expires_at"] <= _iso(_now()):
            raise ApiError("UNAUTHORIZED", "API key has expired")
        if (row["status"] or "active") != "active":
            raise ApiError("FORBIDDEN", f"Account {row['account']} is not active")
        return Principal(account=row["account"], key_id=row["key_id"])

    # -- checkpoints ------------------------------------------------------------------

    @_retried
    def save(
        self,
        account: str,
        body: Any,
        *,
        ttl_header: str | None = None,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """Save one step. Returns the save record (201), or raises 400/409/413."""
        if isinstance(body, dict):
            step = body.get("step")
            # The reference coerces "3" to 3 (its schema validator does); so do we.
            # (At most 17 digits: longer is out of range anyway, and int() of thousands
            # of digits is refused by Python.)
            if isinstance(step, str) and len(step) <= 17 and step.isascii() and step.isdigit():
                body = {**body, "step": int(step)}
        check_body(SAVE_SCHEMA, body)
        workflow_id: str = body["workflow_id"]
        check_workflow_id(workflow_id)
        step = int(body["step"])
        state = body["state"]
        label = body.get("label")
        agent_id = body.get("agent_id")
        metadata = body.get("metadata")
        if agent_id is not None:
            metadata = {**(metadata or {}), "agent_id": agent_id}

        text, size = _state_text(state)
        if size > MAX_STATE_BYTES:
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"state is {size} bytes; the limit is {MAX_STATE_BYTES}"
            )
        ttl = parse_ttl(ttl_header, self.options.default_ttl, self.options.max_ttl)
        # A concurrent first save of the workflow (or of the same step) by another
        # transaction makes our insert fail; the retry then sees it and decides as if
        # the two had been serial (a 409 for the same step, a normal save otherwise).
        for attempt in range(_SAVE_ATTEMPTS):
            try:
                record, enqueued, idempotent = self._save_tx(
                    account, workflow_id, step, state, text, size, ttl, if_match,
                    label=label, agent_id=agent_id, metadata=metadata,
                )
                break
            except _Moved as exc:
                if attempt + 1 < _SAVE_ATTEMPTS:
                    continue
                raise ApiError(
                    "CONFLICT",
                    f"Checkpoint {checkpoint_id_for(workflow_id, step)} was written "
                    "concurrently",
                ) from exc
        if not idempotent:
            self._heads.put((account, workflow_id), (record["id"], record["etag"]), state)
        if enqueued:
            self._notify()
        return _save_record(record)

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
            now_dt = _now()
            now = _iso(now_dt)
            if wf is not None and wf["expires_at"] is not None and wf["expires_at"] <= now:
                enqueued |= self._expire_workflow(conn, wf, now)
                wf = None
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
            if existing is not None:
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
                head_etag = wf["head_etag"] if wf is not None else None
                if if_match != head_etag:
                    where = (
                        f"its head is step {wf['head_step']} with etag {head_etag}"
                        if wf is not None
                        else "it has no checkpoints"
                    )
                    raise ApiError(
                        "CONFLICT",
                        f"If-Match {if_match} is not the head of workflow {workflow_id}: "
                        f"{where}",
                    )
            previous = None
            if wf is not None:
                previous = self._heads.get(key, (wf["head_id"], wf["head_etag"]))
                if previous is None:
                    previous = ss.state_by_pk(conn, wf["head_id"])
            expires_at = _iso(now_dt + timedelta(seconds=ttl))
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
            from core.store.service_store import INTEGRITY_ERRORS

            try:
                record["id"] = ss.insert_checkpoint(conn, record, text)
                if wf is None:
                    ss.insert_workflow(
                        conn,
                        {
                            "account": account,
                            "workflow_id": workflow_id,
                            "head_id": record["id"],
                            "head_step": step,
                            "head_etag": record["etag"],
                            "total": 1,
                            "started_at": now,
                            "last_activity_at": now,
                            "expires_at": expires_at,
                            "min_expires_at": expires_at,
                        },
                    )
                elif not ss.advance_head(conn, wf["id"], wf["head_id"], record, now):
                    raise _Moved  # cannot happen under the row lock; retried if it does
            except INTEGRITY_ERRORS as exc:
                # Another transaction inserted this step, or this workflow's first
                # row, before us (PostgreSQL: there was no row to lock yet).
                raise _Moved from exc
            if agent_id is not None:
                ss.touch_agent(conn, account, agent_id, now)
            enqueued |= self._emit(conn, account, "checkpoint.saved", _saved_event(record), now)
        return record, enqueued, False

    @_retried
    def get(self, account: str, checkpoint_id: str, *, raw: bool = False) -> dict[str, Any]:
        parsed = parse_checkpoint_id(checkpoint_id)
        missing = ApiError("NOT_FOUND", f"Checkpoint {checkpoint_id} not found")
        if parsed is None:
            raise missing
        workflow_id, step = parsed
        now = _iso(_now())
        with self.ss.read() as conn:
            cp = self.ss.checkpoint_at(conn, account, workflow_id, step, raw_state=raw)
            if cp is None or _expired(cp, now):
                raise missing
            wf = self.ss.workflow(conn, account, workflow_id)
        if wf is not None and wf["expires_at"] is not None and wf["expires_at"] <= now:
            raise missing
        return _full_record(cp, empty_metadata=None, raw=raw)

    @_retried
    def resume(self, account: str, workflow_id: str, *, raw: bool = False) -> dict[str, Any]:
        """The workflow's head (its most recently written checkpoint) and summary.

        `raw=True` returns states as `RawJSON` texts (for a caller that re-serializes)."""
        check_workflow_id(workflow_id)
        now = _iso(_now())
        ss = self.ss
        with ss.read() as conn:
            wf = self._live_workflow(conn, account, workflow_id, now)
            head = (
                ss.checkpoint_by_pk(conn, wf["head_id"], raw_state=raw)
                if wf is not None
                else None
            )
            if wf is None or head is None:
                raise ApiError("NOT_FOUND", f"No checkpoints found for workflow {workflow_id}")
            total = wf["total"]
            if wf["min_expires_at"] is not None and wf["min_expires_at"] <= now:
                total = ss.count_live(conn, account, workflow_id, now)
            hooks = ss.hooks_for(conn, account)
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
                    _iso(_now()),
                )
            self._notify()
        return out

    @_retried
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
            raise _invalid(f"limit must be between 1 and {REPLAY_MAX_LIMIT}")
        for name, value in (("from_step", from_step), ("to_step", to_step)):
            if value is not None and value < 0:
                raise _invalid(f"{name} must be >= 0")
        now = _iso(_now())
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

    @_retried
    def list_workflows(
        self, account: str, *, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        if not 1 <= limit <= REPLAY_MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {REPLAY_MAX_LIMIT}")
        if offset < 0:
            raise _invalid("offset must be >= 0")
        now = _iso(_now())
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

    @_retried
    def delete_workflow(self, account: str, workflow_id: str) -> None:
        check_workflow_id(workflow_id)
        now = _iso(_now())
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

    # -- agents -----------------------------------------------------------------------

    @_retried
    def register_agent(self, account: str, body: Any) -> dict[str, Any]:
        """Upsert: a new agent, or an update of the fields sent (others are kept)."""
        check_body(AGENT_SCHEMA, body)
        check_agent_id(body["agent_id"])
        now = _iso(_now())
        fields = _agent_fields(body)
        with self.ss.write() as conn:
            # Replicas registering agents of one account queue here, so the count
            # below holds and an agent registered twice at once is one insert.
            self.ss.lock_account(conn, account)
            row = self.ss.agent(conn, account, body["agent_id"])
            if row is None:
                if self.ss.count_agents(conn, account) >= self.options.max_agents:
                    raise ApiError(
                        "MAX_AGENTS_REACHED",
                        f"An account may register at most {self.options.max_agents} agents",
                    )
                self.ss.insert_agent(
                    conn,
                    {
                        "account": account,
                        "agent_id": body["agent_id"],
                        "name": None,
                        "description": None,
                        "capabilities": [],
                        "metadata": {},
                        **fields,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            elif fields:
                self.ss.update_agent(conn, row["id"], {**fields, "updated_at": now})
            row = self.ss.agent(conn, account, body["agent_id"])
        assert row is not None
        return _agent_record(row)

    @_retried
    def get_agent(self, account: str, agent_id: str) -> dict[str, Any]:
        with self.ss.read() as conn:
            row = self.ss.agent(conn, account, agent_id)
        if row is None:
            raise ApiError("AGENT_NOT_FOUND", f"Agent {agent_id} not found")
        return _agent_record(row)

    @_retried
    def patch_agent(self, account: str, agent_id: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and not body:
            raise _invalid("Nothing to update: send at least one field")
        check_body(AGENT_PATCH_SCHEMA, body)
        now = _iso(_now())
        with self.ss.write() as conn:
            row = self.ss.agent(conn, account, agent_id)
            if row is None:
                raise ApiError("AGENT_NOT_FOUND", f"Agent {agent_id} not found")
            self.ss.update_agent(conn, row["id"], {**_agent_fields(body), "updated_at": now})
            row = self.ss.agent(conn, account, agent_id)
        assert row is not None
        return _agent_record(row)

    @_retried
    def delete_agent(self, account: str, agent_id: str) -> None:
        with self.ss.write() as conn:
            if not self.ss.delete_agent(conn, account, agent_id):
                raise ApiError("AGENT_NOT_FOUND", f"Agent {agent_id} not found")

    @_retried
    def list_agents(self, account: str) -> dict[str, Any]:
        return {"agents": [_agent_record(r) for r in self.ss.list_agents(account)]}

    # -- webhooks ---------------------------------------------------------------------

    @_retried
    def register_webhook(self, account: str, body: Any) -> dict[str, Any]:
        check_body(WEBHOOK_SCHEMA, body)
        check_webhook_url(body["url"])
        events = list(dict.fromkeys(body["events"]))  # de-duplicated, order kept
        now = _iso(_now())
        row = {
            "webhook_id": "wh_" + secrets.token_hex(12),
            "account": account,
            "url": body["url"],
            "events": events,
            "secret": body.get("secret") or None,
            "created_at": now,
        }
        with self.ss.write() as conn:
            self.ss.lock_account(conn, account)  # the count holds across replicas
            if self.ss.count_webhooks(conn, account) >= self.options.max_webhooks:
                raise ApiError(
                    "MAX_WEBHOOKS_REACHED",
                    f"An account may register at most {self.options.max_webhooks} webhooks",
                )
            self.ss.insert_webhook(conn, row)
        return _webhook_record(row)

    @_retried
    def list_webhooks(self, account: str) -> dict[str, Any]:
        return {"webhooks": [_webhook_record(r) for r in self.ss.list_webhooks(account)]}

    @_retried
    def get_webhook(self, account: str, webhook_id: str) -> dict[str, Any]:
        with self.ss.read() as conn:
            row = self.ss.webhook(conn, account, webhook_id)
        if row is None:
            raise ApiError("NOT_FOUND", f"Webhook {webhook_id} not found")
        return _webhook_record(row)

    @_retried
    def delete_webhook(self, account: str, webhook_id: str) -> None:
        with self.ss.write() as conn:
            if not self.ss.delete_webhook(conn, account, webhook_id):
                raise ApiError("NOT_FOUND", f"Webhook {webhook_id} not found")

    @_retried
    def webhook_deliveries(
        self, account: str, webhook_id: str, *, limit: int = 100
    ) -> dict[str, Any]:
        """The delivery log of one webhook, newest first."""
        if not 1 <= limit <= REPLAY_MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {REPLAY_MAX_LIMIT}")
        with self.ss.read() as conn:
            if self.ss.webhook(conn, account, webhook_id) is None:
                raise ApiError("NOT_FOUND", f"Webhook {webhook_id} not found")
            rows = self.ss.list_deliveries(conn, webhook_id, limit)
        return {
            "webhook_id": webhook_id,
            "deliveries": [
                {
                    "delivery_id": r["delivery_id"],
                    "event": r["event"],
                    "status": r["status"],
                    "attempts": r["attempts"],
                    "last_status_code": r["last_status_code"],
                    "last_error": r["last_error"],
                    "created_at": api_time(r["created_at"]),
                    "next_attempt_at": api_time(r["next_attempt_at"])
                    if r["status"] == "pending"
                    else None,
                    "delivered_at": api_time(r["delivered_at"]),
                    "data": r["data"],
                }
                for r in rows
            ],
        }

    # -- the outbox (used by the delivery worker) ---------------------------------------

    @_retried
    def claim_deliveries(self, lease_seconds: float, limit: int = 50) -> list[dict[str, Any]]:
        """Lease due deliveries, each with its webhook's url and secret. Of several
        replicas claiming at once, each due delivery goes to exactly one."""
        now = _now()
        rows = self.ss.claim_due(
            _iso(now), _iso(now + timedelta(seconds=lease_seconds)), limit
        )
        out = []
        with self.ss.read() as conn:
            for r in rows:
                hook = self.ss.webhook_by_id(conn, r["webhook_id"])
                out.append({**r, "url": hook["url"] if hook else None,
                            "secret": hook["secret"] if hook else None})
        return out

    @_retried
    def finish_delivery(
        self,
        delivery: dict[str, Any],
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        retry_in: float | None,
    ) -> bool:
        """Record one attempt: delivered, due again in `retry_in` s, or given up (None).
        False if the lease had lapsed (the attempt was claimed again): not recorded."""
        now = _now()
        values: dict[str, Any] = {
            "attempts": int(delivery["attempts"]) + 1,
            "last_status_code": status_code,
            "last_error": error,
            "lease_until": None,
            "updated_at": _iso(now),
        }
        if ok:
            values.update(status="delivered", delivered_at=_iso(now))
        elif retry_in is None:
            values.update(status="failed")
        else:
            values.update(
                status="pending", next_attempt_at=_iso(now + timedelta(seconds=retry_in))
            )
        return self.ss.finish_delivery(delivery["id"], delivery["lease_until"], values)

    @_retried
    def seconds_to_next_delivery(self) -> float | None:
        due = self.ss.next_due()
        if due is None:
            return None
        when = datetime.fromisoformat(due)
        return max(0.0, (when - _now()).total_seconds())

    # -- the rate limit ---------------------------------------------------------------

    @_retried
    def rate_limit(self, bucket: str, limit: int, window: float) -> int | None:
        """Count one request of `bucket` (an API key id) against `limit` per `window`
        seconds, for all replicas sharing the store. None if it is allowed, else the
        whole seconds until its window ends (when a request will get through)."""
        hits, left = self.ss.rate_hit(bucket, limit, window)
        if hits <= limit:
            return None
        return max(1, math.ceil(left))

    # -- expiry -----------------------------------------------------------------------

    @_retried
    def sweep(self, batch: int = 200) -> dict[str, int]:
        """Purge expired workflows (emitting workflow.expired) and expired checkpoints."""
        now = _iso(_now())
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
        rows = [
            {
                "delivery_id": "dlv_" + secrets.token_hex(12),
                "webhook_id": webhook_id,
                "account": account,
                "event": event,
                "data": data,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for webhook_id, events in self.ss.hooks_for(conn, account)
            if event in events
        ]
        self.ss.enqueue(conn, rows)
        return bool(rows)

    def _notify(self) -> None:
        if self.on_enqueue is not None:
            self.on_enqueue()


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


def _agent_fields(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("name", "description", "capabilities", "metadata"):
        if name in body:
            value = body[name]
            if name == "capabilities" and value is None:
                value = []
            if name == "metadata" and value is None:
                value = {}
            out[name] = value
    return out


def _agent_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "agent_id": row["agent_id"],
        "name": row["name"],
        "description": row["description"],
        "capabilities": row["capabilities"] or [],
        "metadata": row["metadata"] or {},
        "last_seen_at": api_time(row["last_seen_at"]),
        "created_at": api_time(row["created_at"]),
        "updated_at": api_time(row["updated_at"]),
    }


def _webhook_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "webhook_id": row["webhook_id"],
        "url": row["url"],
        "events": row["events"],
        "has_secret": bool(row["secret"]),
        "created_at": api_time(row["created_at"]),
    }


_SERVICE: CheckpointService | None = None


def service(options: Options | None = None) -> CheckpointService:
    """The process-wide checkpoint service over `core.store.store.open_store()`."""
    global _SERVICE
    from core.store.store import open_store

    store = open_store()
    if _SERVICE is None or _SERVICE.ss.store is not store:
        _SERVICE = CheckpointService(store, options)
    elif options is not None:
        _SERVICE.options = options
    return _SERVICE
