"""Agents: the registry of an account's agents (upsert, get, patch, delete, list).

A save with an `agent_id` marks that agent seen (checkpoints.py). An account may
register at most `Options.max_agents` agents; the count holds across replicas.
"""

from __future__ import annotations

import re
from typing import Any

from core.service import common
from core.service.common import (
    NULLABLE_STR,
    ApiError,
    Area,
    api_time,
    check_body,
    invalid,
    iso,
    retried,
)

AGENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
AGENT_ID_PATTERN = "^[A-Za-z0-9_-]{1,255}$"

_AGENT_FIELDS: dict[str, Any] = {
    "name": {**NULLABLE_STR, "maxLength": 255},
    "description": {**NULLABLE_STR, "maxLength": 4096},
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


def _agent_not_found(agent_id: str) -> ApiError:
    return ApiError("AGENT_NOT_FOUND", f"Agent {agent_id} not found")


def _known_shape(agent_id: str) -> None:
    """An id outside the pattern cannot exist: 404 before the store is asked (which
    PostgreSQL would refuse for a NUL, as a store error)."""
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise _agent_not_found(agent_id)


def check_agent_id(agent_id: str) -> None:
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise invalid(
            f"Invalid agent_id {agent_id[:260]!r}: use 1-255 characters of A-Z a-z 0-9 _ -"
        )


class AgentsService(Area):
    """The agents of an account."""

    @retried
    def register_agent(self, account: str, body: Any) -> dict[str, Any]:
        """Upsert: a new agent, or an update of the fields sent (others are kept)."""
        check_body(AGENT_SCHEMA, body)
        check_agent_id(body["agent_id"])
        now = iso(common.utc_now())
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

    @retried
    def get_agent(self, account: str, agent_id: str) -> dict[str, Any]:
        _known_shape(agent_id)
        with self.ss.read() as conn:
            row = self.ss.agent(conn, account, agent_id)
        if row is None:
            raise _agent_not_found(agent_id)
        return _agent_record(row)

    @retried
    def patch_agent(self, account: str, agent_id: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and not body:
            raise invalid("Nothing to update: send at least one field")
        _known_shape(agent_id)
        check_body(AGENT_PATCH_SCHEMA, body)
        now = iso(common.utc_now())
        with self.ss.write() as conn:
            row = self.ss.agent(conn, account, agent_id)
            if row is None:
                raise _agent_not_found(agent_id)
            self.ss.update_agent(conn, row["id"], {**_agent_fields(body), "updated_at": now})
            row = self.ss.agent(conn, account, agent_id)
        assert row is not None
        return _agent_record(row)

    @retried
    def delete_agent(self, account: str, agent_id: str) -> None:
        _known_shape(agent_id)
        with self.ss.write() as conn:
            if not self.ss.delete_agent(conn, account, agent_id):
                raise _agent_not_found(agent_id)

    @retried
    def list_agents(self, account: str) -> dict[str, Any]:
        return {"agents": [_agent_record(r) for r in self.ss.list_agents(account)]}


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
