"""SQL of agents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from core.service.store.base import StoreBase
from core.service.store.tables import (
    AGENTS,
)

_TOUCH_AGENT = (
    update(AGENTS)
    .where(AGENTS.c.account == bindparam("w_account"), AGENTS.c.agent_id == bindparam("w_agent"))
    .values(last_seen_at=bindparam("seen"))
)
_INSERT_AGENT = insert(AGENTS)
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


class AgentsSql(StoreBase):
    """The agents of an account."""

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
