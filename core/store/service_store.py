"""SQL of `cpf serve`: keys, API workflows and their checkpoints, agents, webhooks, outbox.

Only SQL lives here; the decisions (If-Match, expiry, what an error is) are made in
`core.checkpoints`, which calls these methods inside one `ServiceStore.write()` (or
`read()`) transaction per request.

Every statement is SQLAlchemy Core on the SQLModel tables, written once. How it runs
depends on the store:

- any database: through the engine's `Store` connections (SQLAlchemy executes it);
- SQLite (the default store): compiled once to SQLite SQL and run on a per-thread
  `sqlite3` connection to the same file. A request then costs a handful of C calls
  instead of SQLAlchemy's per-statement machinery, which was most of the server's CPU
  per save. Both paths are tested (tests/test_service_store.py).

Writes of one process also take a process-wide lock before `BEGIN IMMEDIATE`: the
server's worker threads queue on a cheap mutex instead of SQLite's busy handler, which
sleeps in growing steps and wrecks tail latency. Other processes (cpf runs, another
server) still meet at SQLite's write lock (busy timeout 30 s).

Several `cpf serve` replicas may share one database. What keeps them correct is in the
database, never in a process:

- a save locks its workflow row (`SELECT ... FOR UPDATE`; on SQLite `BEGIN IMMEDIATE`
  already serializes every writer of the file) and moves the head with a compare-and-set
  on the head it read, `total = total + 1` computed in SQL;
- webhook deliveries are claimed with `FOR UPDATE SKIP LOCKED` (a conditional lease
  on SQLite), so one replica POSTs each attempt;
- the expiry sweeper takes each expired workflow with `FOR UPDATE SKIP LOCKED` and
  re-checks it, so one replica expires it and announces it once;
- the rate limit is one counter row per key, updated by one atomic upsert on the
  database's clock.

On PostgreSQL the process-wide write lock is not taken: row locks do that job, and
requests of one replica then run concurrently.

Connections (PostgreSQL and other servers): the service has its own bounded pool
(`pool_size` connections, no overflow; a request waits up to `pool_timeout` s for a
free one), so a replica never holds more than that. Errors that leave nothing written
(cannot connect, too many clients, connection reset before COMMIT, serialization
failure, deadlock) are raised as `TransientStoreError`, which the checkpoint service
retries with backoff within a deadline; an error during COMMIT is never retried (the
commit may have happened).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Float,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from core.envelope import PersistenceError
from core.store.service_models import (
    Account,
    Agent,
    ApiKey,
    ApiWorkflow,
    RateWindow,
    Webhook,
    WebhookDelivery,
)
from core.store.sqlexec import INTEGRITY_ERRORS, SqlExecutor, TransientStoreError
from core.store.statements import CHECKPOINTS as CP
from core.store.statements import RUNS
from core.store.store import _pg_args

ACCOUNTS = Account.__table__
KEYS = ApiKey.__table__
AGENTS = Agent.__table__
WORKFLOWS = ApiWorkflow.__table__
WEBHOOKS = Webhook.__table__
DELIVERIES = WebhookDelivery.__table__
RATES = RateWindow.__table__

__all__ = ["INTEGRITY_ERRORS", "PoolConfig", "ServiceStore", "TransientStoreError"]


@dataclass(frozen=True)
class PoolConfig:
    """The service's connections to a database server (not used on SQLite)."""

    size: int = 10
    timeout: float = 30.0


# SQLSTATEs after which a transaction may simply be run again: serialization failure,
# deadlock, too many connections, server shutting down or starting, connection errors.
_TRANSIENT_STATES = frozenset({"40001", "40P01", "53300", "57P01", "57P02", "57P03"})


def _is_transient(exc: BaseException, phase: str) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if phase == "commit" or not isinstance(exc, DBAPIError):
        return False  # a failed COMMIT may have committed; pool timeouts already waited
    state = getattr(exc.orig, "sqlstate", None) or ""
    if state in _TRANSIENT_STATES or state.startswith("08"):
        return True
    if exc.connection_invalidated:
        return True  # the connection broke: the server rolled the transaction back
    # Failing to connect (refused, "too many clients", starting up) changed nothing.
    return phase == "connect" and isinstance(exc, OperationalError)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _cp_cols(raw_state: bool) -> list[Any]:
    # raw_state: the state as its stored JSON text, for callers that pass it through to
    # a response unparsed (a replay page of large states then costs no parse at all).
    state = cast(CP.c.state, Text).label("state") if raw_state else CP.c.state
    return [
        CP.c.id,
        CP.c.checkpoint_id,
        CP.c.workflow_id,
        CP.c.run_id,
        CP.c.step,
        CP.c.label,
        state,
        CP.c.metadata,
        CP.c.etag,
        CP.c.diff_from_previous,
        CP.c.size_bytes,
        CP.c.created_at,
        CP.c.expires_at,
    ]


_live_cp = or_(CP.c.expires_at.is_(None), CP.c.expires_at > bindparam("now"))
_cp_of_wf = and_(CP.c.account == bindparam("account"), CP.c.workflow_id == bindparam("workflow_id"))
_wf_is = and_(
    WORKFLOWS.c.account == bindparam("account"),
    WORKFLOWS.c.workflow_id == bindparam("workflow_id"),
)

_SEL_WORKFLOW = select(WORKFLOWS).where(_wf_is)
# FOR UPDATE [SKIP LOCKED] compiles to nothing on SQLite, whose writers are serialized.
_SEL_WORKFLOW_LOCKED = {
    "wait": _SEL_WORKFLOW.with_for_update(),
    "skip": _SEL_WORKFLOW.with_for_update(skip_locked=True),
}
_SEL_CP_AT = {
    raw: select(*_cp_cols(raw)).where(_cp_of_wf, CP.c.step == bindparam("step"))
    for raw in (False, True)
}
_SEL_CP_BY_ID = {
    raw: select(*_cp_cols(raw)).where(CP.c.id == bindparam("id")) for raw in (False, True)
}
_SEL_STATE_BY_ID = select(CP.c.state).where(CP.c.id == bindparam("id"))
_SEL_RUN = select(RUNS.c.run_id).where(RUNS.c.run_id == bindparam("run_id"))
_SEL_DERIVED = select(func.count(), func.min(CP.c.created_at), func.max(CP.c.id)).where(_cp_of_wf)
_INSERT_CP = insert(CP)
_INSERT_WORKFLOW = insert(WORKFLOWS)
_UPDATE_WORKFLOW = update(WORKFLOWS).where(WORKFLOWS.c.id == bindparam("w_id"))
# The head moves only from the head this transaction read (a compare-and-set on top of
# the row lock); the count and the earliest expiry are computed from the row itself.
_ADVANCE_HEAD = (
    update(WORKFLOWS)
    .where(WORKFLOWS.c.id == bindparam("w_id"), WORKFLOWS.c.head_id == bindparam("w_seen"))
    .values(
        head_id=bindparam("head_id"),
        head_step=bindparam("head_step"),
        head_etag=bindparam("head_etag"),
        total=WORKFLOWS.c.total + 1,
        last_activity_at=bindparam("now"),
        expires_at=bindparam("expires"),
        min_expires_at=case(
            (
                or_(
                    WORKFLOWS.c.min_expires_at.is_(None),
                    WORKFLOWS.c.min_expires_at > bindparam("expires"),
                ),
                bindparam("expires"),
            ),
            else_=WORKFLOWS.c.min_expires_at,
        ),
    )
)
_DELETE_CP = delete(CP).where(CP.c.id == bindparam("id"))
_DELETE_CPS_OF_WF = delete(CP).where(_cp_of_wf)
_DELETE_WORKFLOW = delete(WORKFLOWS).where(_wf_is)
_MIN_EXPIRY = select(func.min(CP.c.expires_at)).where(_cp_of_wf)
_PURGE_EXPIRED = delete(CP).where(
    _cp_of_wf, CP.c.expires_at.is_not(None), CP.c.expires_at <= bindparam("now")
)
_SEL_KEY = (
    select(KEYS.c.key_id, KEYS.c.account, KEYS.c.revoked_at, KEYS.c.expires_at, ACCOUNTS.c.status)
    .select_from(KEYS.outerjoin(ACCOUNTS, ACCOUNTS.c.name == KEYS.c.account))
    .where(KEYS.c.key_hash == bindparam("key_hash"))
)
_TOUCH_AGENT = (
    update(AGENTS)
    .where(AGENTS.c.account == bindparam("w_account"), AGENTS.c.agent_id == bindparam("w_agent"))
    .values(last_seen_at=bindparam("seen"))
)
_SEL_HOOKS = select(WEBHOOKS.c.webhook_id, WEBHOOKS.c.events).where(
    WEBHOOKS.c.account == bindparam("account")
)
_INSERT_DELIVERY = insert(DELIVERIES)


def _replay_stmt(raw_state: bool, lower: bool, upper: bool, count: bool) -> Any:
    where = [_cp_of_wf, _live_cp]
    if lower:
        where.append(CP.c.step >= bindparam("from_step"))
    if upper:
        where.append(CP.c.step <= bindparam("to_step"))
    if count:
        return select(func.count()).select_from(CP).where(*where)
    return (
        select(*_cp_cols(raw_state))
        .where(*where)
        .order_by(CP.c.step)
        .limit(bindparam("limit", type_=None))
    )


_REPLAY = {
    (raw, lo, up, count): _replay_stmt(raw, lo, up, count)
    for raw in (False, True)
    for lo in (False, True)
    for up in (False, True)
    for count in (False, True)
}


class ServiceStore(SqlExecutor):
    """The service's persistence over the engine's `Store` (same database)."""

    def __init__(self, store: Any, *, fast: bool | None = None, pool: PoolConfig | None = None):
        super().__init__(store, fast=fast)
        self.pool = pool or PoolConfig()
        self._engine: Any = None
        if not self.is_sqlite:
            self._server_engine()  # closes the store's idle connections now

    def _server_engine(self) -> Any:
        """The service's own bounded pool over the store's database (created once)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine(
                self.store.url,
                pool_size=self.pool.size,
                max_overflow=0,
                pool_timeout=self.pool.timeout,
                # No ping per checkout (a round trip per request): a connection the
                # server dropped fails its first statement, which is retried on a new one.
                pool_pre_ping=False,
                connect_args=_pg_args(self.store.url),
            )
            # The store's own connection (its schema check) is not needed any more: the
            # process then holds at most `pool.size` connections.
            self.store.engine.dispose()
        return self._engine

    def _pg_pool(self) -> Any:
        return self._server_engine()  # the psycopg fast path takes this pool's connections

    @contextmanager
    def _server_tx(self, what: str) -> Iterator[Any]:
        from sqlalchemy.exc import SQLAlchemyError

        phase = "connect"
        try:
            with self._server_engine().connect() as conn:
                phase = "statement"
                with conn.begin():
                    yield conn
                    phase = "commit"
        except SQLAlchemyError as exc:
            error = TransientStoreError if _is_transient(exc, phase) else PersistenceError
            raise error(f"Store {what} failed: {_one_line(exc)}") from exc

    # -- accounts and keys ----------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction. On SQLite, serialized in-process and by the file's
        write lock; elsewhere concurrent, the row locks taken below keep it correct."""
        if self.fast or self.is_sqlite:
            with super().write() as conn:
                yield conn
            return
        with self._server_tx("write") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        if self.fast or self.is_sqlite:
            with super().read() as conn:
                yield conn
            return
        with self._server_tx("read") as conn:
            yield conn

    def close(self) -> None:
        if self._engine is not None:
            with suppress(Exception):
                self._engine.dispose()
            self._engine = None

    def ensure_account(self, conn: Any, name: str, now: str) -> None:
        # Concurrent first keys of one account: the second insert does nothing.
        values = {"name": name, "status": "active", "created_at": now}
        self.count(conn, self._dialect_stmt(_INSERT_ACCOUNT_NEW), values, tuple(sorted(values)))

    def lock_account(self, conn: Any, name: str) -> None:
        """Serialize count-limited writes of one account (agents, webhooks) across
        replicas (the account row always exists: every key made it)."""
        self.first(conn, _LOCK_ACCOUNT, {"name": name})

    def _dialect_stmt(self, stmts: dict[str, Any]) -> Any:
        return stmts["sqlite" if self.is_sqlite else "postgresql"]

    def insert_key(self, conn: Any, values: dict[str, Any]) -> None:
        self.insert_row(conn, _INSERT_KEY, values)

    def list_keys(self, account: str | None) -> list[dict[str, Any]]:
        with self.read() as conn:
            if account is None:
                return self.rows(conn, _LIST_KEYS)
            return self.rows(conn, _LIST_KEYS_OF, {"account": account})

    def get_key(self, conn: Any, key_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_KEY_BY_ID, {"k": key_id})

    def revoke_key(self, conn: Any, key_id: str, now: str) -> None:
        self.count(conn, _REVOKE_KEY, {"k": key_id, "now": now})

    def key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        with self.read() as conn:
            return self.first(conn, _SEL_KEY, {"key_hash": key_hash})

    # -- runs (read-only workflows of account `local`) ------------------------------------

    def run_exists(self, conn: Any, run_id: str) -> bool:
        return self.first(conn, _SEL_RUN, {"run_id": run_id}) is not None

    def derived_workflow(self, conn: Any, account: str, workflow_id: str) -> dict[str, Any] | None:
        """Head and counts of a workflow with no svc_workflows row (a cpf run)."""
        params = {"account": account, "workflow_id": workflow_id}
        rows = self.tuples(conn, _SEL_DERIVED, params)
        row = rows[0] if rows else ()
        if not row or not row[0]:
            return None
        head = self.checkpoint_by_pk(conn, int(row[2]))
        assert head is not None
        return {
            "account": account,
            "workflow_id": workflow_id,
            "head_id": head["id"],
            "head_step": head["step"],
            "head_etag": head["etag"],
            "total": int(row[0]),
            "started_at": row[1],
            "last_activity_at": head["created_at"],
            "expires_at": None,
            "min_expires_at": None,
            "run_id": head["run_id"],
        }

    # -- API workflows --------------------------------------------------------------------

    def workflow(
        self,
        conn: Any,
        account: str,
        workflow_id: str,
        lock: Literal["wait", "skip"] | None = None,
    ) -> dict[str, Any] | None:
        """The workflow row; `lock` takes its row lock until the transaction ends
        ("wait" for it, or "skip": None if another transaction holds it)."""
        stmt = _SEL_WORKFLOW if lock is None else _SEL_WORKFLOW_LOCKED[lock]
        return self.first(conn, stmt, {"account": account, "workflow_id": workflow_id})

    def advance_head(
        self, conn: Any, row_id: int, seen_head_id: int, head: dict[str, Any], now: str
    ) -> bool:
        """Make `head` (a checkpoint row just inserted) the workflow's head, if its head
        is still `seen_head_id`; count it and slide the expiry. False if it moved."""
        params = {
            "w_id": row_id,
            "w_seen": seen_head_id,
            "head_id": head["id"],
            "head_step": head["step"],
            "head_etag": head["etag"],
            "now": now,
            "expires": head["expires_at"],
        }
        return self.count(conn, _ADVANCE_HEAD, params) == 1

    def insert_workflow(self, conn: Any, values: dict[str, Any]) -> None:
        self.insert_row(conn, _INSERT_WORKFLOW, values)

    def update_workflow(self, conn: Any, row_id: int, **values: Any) -> None:
        self.count(conn, _UPDATE_WORKFLOW, {"w_id": row_id, **values}, tuple(sorted(values)))

    def delete_workflow(self, conn: Any, account: str, workflow_id: str) -> int:
        """Delete a workflow's checkpoints and row; return how many checkpoints went."""
        params = {"account": account, "workflow_id": workflow_id}
        n = self.count(conn, _DELETE_CPS_OF_WF, params)
        self.count(conn, _DELETE_WORKFLOW, params)
        return n

    def list_workflows(self, account: str, now: str, limit: int, offset: int) -> list[dict]:
        """API workflows and (for account `local`) run workflows, most recent activity first."""
        with self.read() as conn:
            return self.rows(
                conn,
                _LIST_WORKFLOWS,
                {"account": account, "now": now, "limit": limit, "offset": offset},
            )

    # -- checkpoints ----------------------------------------------------------------------

    def checkpoint_at(
        self, conn: Any, account: str, workflow_id: str, step: int, raw_state: bool = False
    ) -> dict[str, Any] | None:
        return self.first(
            conn,
            _SEL_CP_AT[raw_state],
            {"account": account, "workflow_id": workflow_id, "step": step},
        )

    def checkpoint_by_pk(self, conn: Any, pk: int, raw_state: bool = False) -> dict | None:
        return self.first(conn, _SEL_CP_BY_ID[raw_state], {"id": pk})

    def state_by_pk(self, conn: Any, pk: int) -> Any:
        row = self.first(conn, _SEL_STATE_BY_ID, {"id": pk})
        return None if row is None else row["state"]

    def insert_checkpoint(
        self, conn: Any, values: dict[str, Any], state_text: str | None = None
    ) -> int:
        """Insert a checkpoint row; `state_text` is the compact JSON of values["state"]
        (SQLite keeps JSON as text, so the state is not serialized a second time)."""
        if state_text is not None and isinstance(conn, sqlite3.Connection):
            row = {k: v for k, v in values.items() if k != "state"}
            sql, json_in, defaults, _ = self._compile(_INSERT_CP, tuple(sorted(values)))
            params = self._bind(defaults, row, json_in - {"state"})
            params["state"] = state_text
            return int(conn.execute(sql, params).lastrowid)
        return int(self.insert_row(conn, _INSERT_CP, values))

    def delete_checkpoint(self, conn: Any, pk: int) -> None:
        self.count(conn, _DELETE_CP, {"id": pk})

    def replay(
        self,
        conn: Any,
        account: str,
        workflow_id: str,
        now: str,
        from_step: int | None,
        to_step: int | None,
        limit: int,
        raw_state: bool = False,
    ) -> list[dict[str, Any]]:
        """Live checkpoints by step, the step range applied before the limit."""
        stmt = _REPLAY[(raw_state, from_step is not None, to_step is not None, False)]
        params = {"account": account, "workflow_id": workflow_id, "now": now, "limit": limit}
        if from_step is not None:
            params["from_step"] = from_step
        if to_step is not None:
            params["to_step"] = to_step
        return self.rows(conn, stmt, params)

    def count_live(
        self,
        conn: Any,
        account: str,
        workflow_id: str,
        now: str,
        from_step: int | None = None,
        to_step: int | None = None,
    ) -> int:
        stmt = _REPLAY[(False, from_step is not None, to_step is not None, True)]
        params: dict[str, Any] = {"account": account, "workflow_id": workflow_id, "now": now}
        if from_step is not None:
            params["from_step"] = from_step
        if to_step is not None:
            params["to_step"] = to_step
        return int(self.scalar(conn, stmt, params) or 0)

    def min_expiry(self, conn: Any, account: str, workflow_id: str) -> str | None:
        return self.scalar(conn, _MIN_EXPIRY, {"account": account, "workflow_id": workflow_id})

    def purge_expired_checkpoints(self, conn: Any, account: str, workflow_id: str, now: str) -> int:
        return self.count(
            conn, _PURGE_EXPIRED, {"account": account, "workflow_id": workflow_id, "now": now}
        )

    def expired_workflows(self, now: str, limit: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return self.rows(conn, _EXPIRED_WORKFLOWS, {"now": now, "limit": limit})

    def workflows_with_expired_checkpoints(self, now: str, limit: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            return self.rows(conn, _DUE_CHECKPOINT_EXPIRY, {"now": now, "limit": limit})

    # -- agents ---------------------------------------------------------------------------

    def touch_agent(self, conn: Any, account: str, agent_id: str, now: str) -> None:
        self.count(conn, _TOUCH_AGENT, {"w_account": account, "w_agent": agent_id, "seen": now})

    def agent(self, conn: Any, account: str, agent_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_AGENT, {"account": account, "agent_id": agent_id})

    def count_agents(self, conn: Any, account: str) -> int:
        return int(self.scalar(conn, _COUNT_AGENTS, {"account": account}) or 0)

    def insert_agent(self, conn: Any, values: dict[str, Any]) -> None:
        self.insert_row(conn, _INSERT_AGENT, values)

    def update_agent(self, conn: Any, row_id: int, values: dict[str, Any]) -> None:
        self.count(conn, _UPDATE_AGENT, {"w_id": row_id, **values}, tuple(sorted(values)))

    def delete_agent(self, conn: Any, account: str, agent_id: str) -> bool:
        return bool(self.count(conn, _DELETE_AGENT, {"account": account, "agent_id": agent_id}))

    def list_agents(self, account: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            return self.rows(conn, _LIST_AGENTS, {"account": account})

    # -- webhooks and the outbox ----------------------------------------------------------

    def insert_webhook(self, conn: Any, values: dict[str, Any]) -> None:
        self.insert_row(conn, _INSERT_WEBHOOK, values)

    def count_webhooks(self, conn: Any, account: str) -> int:
        return int(self.scalar(conn, _COUNT_WEBHOOKS, {"account": account}) or 0)

    def webhook(self, conn: Any, account: str, webhook_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_WEBHOOK, {"account": account, "webhook_id": webhook_id})

    def webhook_by_id(self, conn: Any, webhook_id: str) -> dict[str, Any] | None:
        return self.first(conn, _SEL_WEBHOOK_BY_ID, {"webhook_id": webhook_id})

    def list_webhooks(self, account: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            return self.rows(conn, _LIST_WEBHOOKS, {"account": account})

    def delete_webhook(self, conn: Any, account: str, webhook_id: str) -> bool:
        n = self.count(conn, _DELETE_WEBHOOK, {"account": account, "webhook_id": webhook_id})
        if n:
            # Undelivered events of a removed webhook have nowhere to go.
            self.count(conn, _CANCEL_DELIVERIES, {"w_webhook": webhook_id})
        return bool(n)

    def hooks_for(self, conn: Any, account: str) -> list[tuple[str, list[str]]]:
        return [
            (r["webhook_id"], r["events"] or [])
            for r in self.rows(conn, _SEL_HOOKS, {"account": account})
        ]

    def enqueue(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.insert_row(conn, _INSERT_DELIVERY, row)

    def claim_due(self, now: str, lease_until: str, limit: int) -> list[dict[str, Any]]:
        """Lease due deliveries (pending and due, or a lapsed lease of a dead worker).

        Each due row is leased by exactly one caller, whatever the number of replicas:
        on PostgreSQL one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`
        (rows another replica is claiming are skipped, not waited for); on SQLite the
        write lock serializes claims and each lease is conditional on the row still
        being due (its row count says whether we got it)."""
        params = {"now": now, "lease": lease_until, "limit": limit}
        with self.write() as conn:
            if not isinstance(conn, sqlite3.Connection) and not self.is_sqlite:
                return self.rows(conn, _CLAIM_DUE_PG, params)
            claimed = []
            for r in self.rows(conn, _DUE_DELIVERIES, params):
                if self.count(conn, _LEASE_DELIVERY, {**params, "w_id": r["id"]}) == 1:
                    claimed.append({**r, "status": "delivering", "lease_until": lease_until})
            return claimed

    def next_due(self) -> str | None:
        with self.read() as conn:
            return self.scalar(conn, _NEXT_DUE)

    def finish_delivery(self, delivery_pk: int, lease: str, values: dict[str, Any]) -> bool:
        """Record an attempt, if the lease is still ours (False: it lapsed and the
        delivery was claimed again, or it was cancelled; nothing is written)."""
        with self.write() as conn:
            params = {"w_id": delivery_pk, "w_lease": lease, **values}
            return self.count(conn, _FINISH_DELIVERY, params, tuple(sorted(values))) == 1

    def list_deliveries(self, conn: Any, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        return self.rows(conn, _LIST_DELIVERIES, {"webhook_id": webhook_id, "limit": limit})

    # -- the rate limit --------------------------------------------------------------------

    def rate_hit(self, bucket: str, limit: int, window: float) -> tuple[int, float]:
        """Count one request of `bucket` in its window: (hits, seconds until the window
        ends). A window starts at the first request after the previous one ended; hits
        above `limit` are refused and stop counting at limit + 1. One atomic upsert, on
        the database's clock, so all replicas share one count."""
        params = {"bucket": bucket, "limit": limit, "window": float(window)}
        with self.write() as conn:
            if not isinstance(conn, sqlite3.Connection) and not self.is_sqlite:
                # A count lost in a server crash is harmless: do not wait for the WAL
                # flush (it was half of each request's rate-limit cost).
                self.exec_sql(conn, "SET LOCAL synchronous_commit TO off")
            row = self.first(conn, self._dialect_stmt(_RATE_HIT), params)
        assert row is not None
        left = float(row["window_start"]) + float(window) - float(row["now"])
        return int(row["hits"]), left

    def health(self) -> None:
        with self.read() as conn:
            self.scalar(conn, _PING)


# -- the remaining statements ------------------------------------------------------------

_LOCK_ACCOUNT = (
    select(ACCOUNTS.c.name).where(ACCOUNTS.c.name == bindparam("name")).with_for_update()
)
_INSERT_ACCOUNT_NEW = {
    "sqlite": sqlite_dialect.insert(ACCOUNTS).on_conflict_do_nothing(),
    "postgresql": pg_dialect.insert(ACCOUNTS).on_conflict_do_nothing(),
}
_INSERT_KEY = insert(KEYS)
_key_cols = (
    KEYS.c.key_id,
    KEYS.c.account,
    KEYS.c.prefix,
    KEYS.c.label,
    KEYS.c.created_at,
    KEYS.c.expires_at,
    KEYS.c.revoked_at,
)
_LIST_KEYS = select(*_key_cols).order_by(KEYS.c.created_at, KEYS.c.key_id)
_LIST_KEYS_OF = (
    select(*_key_cols)
    .where(KEYS.c.account == bindparam("account"))
    .order_by(KEYS.c.created_at, KEYS.c.key_id)
)
_SEL_KEY_BY_ID = select(KEYS).where(KEYS.c.key_id == bindparam("k"))
_REVOKE_KEY = (
    update(KEYS).where(KEYS.c.key_id == bindparam("k")).values(revoked_at=bindparam("now"))
)
_INSERT_AGENT = insert(AGENTS)
_INSERT_WEBHOOK = insert(WEBHOOKS)
_PING = select(literal(1))

_api_list = (
    select(
        WORKFLOWS.c.workflow_id,
        WORKFLOWS.c.head_step,
        WORKFLOWS.c.total,
        WORKFLOWS.c.started_at,
        WORKFLOWS.c.last_activity_at,
        WORKFLOWS.c.expires_at,
        cast(literal(None), Text).label("run_id"),
    )
    .where(WORKFLOWS.c.account == bindparam("account"))
    .where(or_(WORKFLOWS.c.expires_at.is_(None), WORKFLOWS.c.expires_at > bindparam("now")))
)
_run_list = (
    select(
        CP.c.workflow_id,
        func.max(CP.c.step).label("head_step"),
        func.count().label("total"),
        func.min(CP.c.created_at).label("started_at"),
        func.max(CP.c.created_at).label("last_activity_at"),
        cast(literal(None), Text).label("expires_at"),
        func.max(CP.c.run_id).label("run_id"),
    )
    .where(CP.c.account == bindparam("account"), CP.c.run_id.is_not(None))
    .group_by(CP.c.workflow_id)
)
_both = _api_list.union_all(_run_list).subquery()
_LIST_WORKFLOWS = (
    select(_both)
    .order_by(_both.c.last_activity_at.desc(), _both.c.workflow_id)
    .limit(bindparam("limit", type_=None))
    .offset(bindparam("offset", type_=None))
)
_EXPIRED_WORKFLOWS = (
    select(WORKFLOWS)
    .where(WORKFLOWS.c.expires_at.is_not(None), WORKFLOWS.c.expires_at <= bindparam("now"))
    .order_by(WORKFLOWS.c.expires_at)
    .limit(bindparam("limit", type_=None))
)
_DUE_CHECKPOINT_EXPIRY = (
    select(WORKFLOWS)
    .where(
        WORKFLOWS.c.min_expires_at.is_not(None),
        WORKFLOWS.c.min_expires_at <= bindparam("now"),
    )
    .order_by(WORKFLOWS.c.min_expires_at)
    .limit(bindparam("limit", type_=None))
)
_agent_is = and_(
    AGENTS.c.account == bindparam("account"), AGENTS.c.agent_id == bindparam("agent_id")
)
_SEL_AGENT = select(AGENTS).where(_agent_is)
_COUNT_AGENTS = (
    select(func.count()).select_from(AGENTS).where(AGENTS.c.account == bindparam("account"))
)
_UPDATE_AGENT = update(AGENTS).where(AGENTS.c.id == bindparam("w_id"))
_DELETE_AGENT = delete(AGENTS).where(_agent_is)
# last_seen_at descending with never-seen agents last, then newest first.
_LIST_AGENTS = (
    select(AGENTS)
    .where(AGENTS.c.account == bindparam("account"))
    .order_by(
        AGENTS.c.last_seen_at.is_(None),
        AGENTS.c.last_seen_at.desc(),
        AGENTS.c.created_at.desc(),
        AGENTS.c.id.desc(),
    )
)
_hook_is = and_(
    WEBHOOKS.c.account == bindparam("account"), WEBHOOKS.c.webhook_id == bindparam("webhook_id")
)
_COUNT_WEBHOOKS = (
    select(func.count()).select_from(WEBHOOKS).where(WEBHOOKS.c.account == bindparam("account"))
)
_SEL_WEBHOOK = select(WEBHOOKS).where(_hook_is)
_SEL_WEBHOOK_BY_ID = select(WEBHOOKS).where(WEBHOOKS.c.webhook_id == bindparam("webhook_id"))
_LIST_WEBHOOKS = (
    select(WEBHOOKS)
    .where(WEBHOOKS.c.account == bindparam("account"))
    .order_by(WEBHOOKS.c.created_at, WEBHOOKS.c.webhook_id)
)
_DELETE_WEBHOOK = delete(WEBHOOKS).where(_hook_is)
_CANCEL_DELIVERIES = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.webhook_id == bindparam("w_webhook"),
        # Not IN (...): an expanding parameter would not compile to plain SQL once.
        or_(DELIVERIES.c.status == "pending", DELIVERIES.c.status == "delivering"),
    )
    .values(status="cancelled", lease_until=None)
)
_is_due = or_(
    and_(DELIVERIES.c.status == "pending", DELIVERIES.c.next_attempt_at <= bindparam("now")),
    and_(DELIVERIES.c.status == "delivering", DELIVERIES.c.lease_until <= bindparam("now")),
)
_DUE_DELIVERIES = (
    select(DELIVERIES)
    .where(_is_due)
    .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
    .limit(bindparam("limit", type_=None))
)
_LEASE_DELIVERY = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id == bindparam("w_id"), _is_due)
    .values(status="delivering", lease_until=bindparam("lease"), updated_at=bindparam("now"))
)
_CLAIM_DUE_PG = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id.in_(
            select(DELIVERIES.c.id)
            .where(_is_due)
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
            .limit(bindparam("limit", type_=None))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(status="delivering", lease_until=bindparam("lease"), updated_at=bindparam("now"))
    .returning(*DELIVERIES.c)
)
_NEXT_DUE = select(func.min(DELIVERIES.c.next_attempt_at)).where(DELIVERIES.c.status == "pending")
_FINISH_DELIVERY = update(DELIVERIES).where(
    DELIVERIES.c.id == bindparam("w_id"),
    DELIVERIES.c.status == "delivering",
    DELIVERIES.c.lease_until == bindparam("w_lease"),
)


def _rate_hit(dialect: Any, db_now: Any) -> Any:
    """INSERT the key's window, or count one more hit in it (a new window if it ended)."""
    stmt = dialect.insert(RATES).values(bucket=bindparam("bucket"), window_start=db_now, hits=1)
    row, ended = RATES.c, RATES.c.window_start <= db_now - bindparam("window")
    limit = bindparam("limit", type_=None)
    return stmt.on_conflict_do_update(
        index_elements=[RATES.c.bucket],
        set_={
            "hits": case((ended, 1), (row.hits <= limit, row.hits + 1), else_=row.hits),
            "window_start": case((ended, db_now), else_=row.window_start),
        },
    ).returning(RATES.c.hits, RATES.c.window_start, db_now.label("now"))


_RATE_HIT = {
    # Unix seconds by the database's clock (SQLite's 'now' is fixed within a statement).
    "sqlite": _rate_hit(
        sqlite_dialect, literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)
    ),
    "postgresql": _rate_hit(pg_dialect, cast(extract("epoch", func.statement_timestamp()), Float)),
}
_LIST_DELIVERIES = (
    select(DELIVERIES)
    .where(DELIVERIES.c.webhook_id == bindparam("webhook_id"))
    .order_by(DELIVERIES.c.id.desc())
    .limit(bindparam("limit", type_=None))
)
