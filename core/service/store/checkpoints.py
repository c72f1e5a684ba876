"""SQL of checkpoints and their workflows: the API's `svc_workflows` rows (head, count,
expiry) and the engine's `checkpoints` table, shared with cpf runs (one definition:
core.store.models.Checkpoint; runs write it through core.store.store)."""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from core.service.store.base import StoreBase
from core.service.store.save_function import CALL_SAVE_FUNCTION
from core.service.store.tables import (
    WORKFLOWS,
)
from core.store.statements import CHECKPOINTS as CP
from core.store.statements import RUNS


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
# A resume's key and reads in one statement (PostgreSQL, autocommit): the key row as
# `KeysSql.key_by_hash` reads it, the workflow row, its head (the state as its JSON text)
# and whether a webhook of the account wants `workflow.resumed` (the save function's test).
# No row: the key is unknown. The workflow and head columns are NULL when there are none.
KEYED_RESUME = """
SELECT a.key_id, a.account, a.revoked_at, a.expires_at AS key_expires_at, c.status,
       w.id AS w_id, w.head_id, w.total, w.min_expires_at, w.started_at, w.last_activity_at,
       w.expires_at AS w_expires_at,
       h.id AS h_id, h.checkpoint_id, h.workflow_id, h.run_id, h.step, h.label,
       h.state::text AS state, h.metadata, h.etag, h.diff_from_previous, h.size_bytes,
       h.created_at, h.expires_at AS h_expires_at,
       EXISTS (SELECT 1 FROM svc_webhooks k
                WHERE k.account = a.account AND k.events IS NOT NULL
                  AND k.events::jsonb @> '["workflow.resumed"]'::jsonb) AS resumed_hook
  FROM svc_api_keys a
  LEFT JOIN svc_accounts c ON c.name = a.account
  LEFT JOIN svc_workflows w ON w.account = a.account AND w.workflow_id = %s
  LEFT JOIN checkpoints h ON h.id = w.head_id
 WHERE a.key_hash = %s
"""
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


class CheckpointsSql(StoreBase):
    """Checkpoints, API workflows, and the read-only workflows of cpf runs."""

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

    @property
    def one_trip_save(self) -> bool:
        """Whether saves can go through `cpf_save_checkpoint` (psycopg and a pool)."""
        return bool(self.pg) and not self.is_sqlite

    def _in_one(self, what: str, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        """A driver statement as its own transaction (psycopg, autocommit): its first row
        by column name, None without one."""
        with self.pg_statement(what) as conn:
            cur = conn.execute(sql, args)
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([d[0] for d in cur.description], row, strict=True))

    def save_in_one(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """Call `cpf_save_checkpoint` (save_function.py) as its own transaction."""
        row = self._in_one("save", CALL_SAVE_FUNCTION, args)
        assert row is not None
        return row

    async def save_in_one_async(self, args: tuple[Any, ...]) -> dict[str, Any]:
        """`save_in_one` awaited on the event loop's own connections."""
        return await self.async_saves().save(args)

    def resume_in_one(self, key_hash: str, workflow_id: str) -> dict[str, Any] | None:
        """`KEYED_RESUME` as its own statement: None when the key is unknown."""
        return self._in_one("read", KEYED_RESUME, (workflow_id, key_hash))

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
