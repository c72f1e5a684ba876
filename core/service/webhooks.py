"""Webhooks: registration, the delivery log, and the outbox the delivery worker drains.

Events (`checkpoint.saved`, `workflow.resumed`, `workflow.expired`) are enqueued by
`emit()` in the same transaction as the change they announce; the worker in
core/service/delivery.py claims due deliveries (each attempt by exactly one replica),
POSTs them and records each attempt here. Which addresses a webhook may reach is
checked there and at registration (core/netguard.py); this module checks the syntax.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from core.service import common
from core.service.common import (
    REPLAY_MAX_LIMIT,
    ApiError,
    Area,
    api_time,
    check_body,
    invalid,
    iso,
    retried,
)

EVENTS = ("checkpoint.saved", "workflow.resumed", "workflow.expired")
WEBHOOK_ID_PATTERN = "^wh_[0-9a-f]{24}$"
_WEBHOOK_ID_RE = re.compile(WEBHOOK_ID_PATTERN[1:-1])

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

# RFC 3986 characters (unreserved, reserved and %): no space, control or non-ASCII.
_URI_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
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
        return invalid(f"Invalid webhook url '{shown}': {why}")

    if not set(url) <= _URI_CHARS:
        raise bad(
            "use an ASCII http(s) URI without spaces or control characters "
            "(percent-encode the rest, punycode for host names)"
        )
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


def emit(ss: Any, conn: Any, account: str, event: str, data: dict[str, Any], now: str) -> bool:
    """Enqueue `event` for every webhook of `account` subscribed to it, in the caller's
    transaction (the outbox: the event is durable exactly when the change is). True if
    any delivery was enqueued (then call `Context.notify()` after the commit)."""
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
        for webhook_id, events in ss.hooks_for(conn, account)
        if event in events
    ]
    ss.enqueue(conn, rows)
    return bool(rows)


class WebhooksService(Area):
    """The webhooks of an account, their delivery log, and the outbox."""

    @retried
    def register_webhook(self, account: str, body: Any) -> dict[str, Any]:
        check_body(WEBHOOK_SCHEMA, body)
        check_webhook_url(body["url"])
        events = list(dict.fromkeys(body["events"]))  # de-duplicated, order kept
        now = iso(common.utc_now())
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

    @retried
    def list_webhooks(self, account: str) -> dict[str, Any]:
        return {"webhooks": [_webhook_record(r) for r in self.ss.list_webhooks(account)]}

    @retried
    def get_webhook(self, account: str, webhook_id: str) -> dict[str, Any]:
        _known_shape(webhook_id)
        with self.ss.read() as conn:
            row = self.ss.webhook(conn, account, webhook_id)
        if row is None:
            raise ApiError("NOT_FOUND", f"Webhook {webhook_id} not found")
        return _webhook_record(row)

    @retried
    def delete_webhook(self, account: str, webhook_id: str) -> None:
        _known_shape(webhook_id)
        with self.ss.write() as conn:
            if not self.ss.delete_webhook(conn, account, webhook_id):
                raise ApiError("NOT_FOUND", f"Webhook {webhook_id} not found")

    @retried
    def webhook_deliveries(
        self, account: str, webhook_id: str, *, limit: int = 100
    ) -> dict[str, Any]:
        """The delivery log of one webhook, newest first."""
        if not 1 <= limit <= REPLAY_MAX_LIMIT:
            raise invalid(f"limit must be between 1 and {REPLAY_MAX_LIMIT}")
        _known_shape(webhook_id)
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

    # -- the outbox (drained by core/service/delivery.py) ------------------------------

    @retried
    def claim_deliveries(self, lease_seconds: float, limit: int = 50) -> list[dict[str, Any]]:
        """Lease due deliveries, each with its webhook's url and secret. Of several
        replicas claiming at once, each due delivery goes to exactly one."""
        now = common.utc_now()
        rows = self.ss.claim_due(iso(now), iso(now + timedelta(seconds=lease_seconds)), limit)
        out = []
        with self.ss.read() as conn:
            for r in rows:
                hook = self.ss.webhook_by_id(conn, r["webhook_id"])
                out.append(
                    {
                        **r,
                        "url": hook["url"] if hook else None,
                        "secret": hook["secret"] if hook else None,
                    }
                )
        return out

    @retried
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
        now = common.utc_now()
        values: dict[str, Any] = {
            "attempts": int(delivery["attempts"]) + 1,
            "last_status_code": status_code,
            "last_error": error,
            "lease_until": None,
            "updated_at": iso(now),
        }
        if ok:
            values.update(status="delivered", delivered_at=iso(now))
        elif retry_in is None:
            values.update(status="failed")
        else:
            values.update(status="pending", next_attempt_at=iso(now + timedelta(seconds=retry_in)))
        return self.ss.finish_delivery(delivery["id"], delivery["lease_until"], values)

    @retried
    def seconds_to_next_delivery(self) -> float | None:
        due = self.ss.next_due()
        if due is None:
            return None
        when = datetime.fromisoformat(due)
        return max(0.0, (when - common.utc_now()).total_seconds())


def _known_shape(webhook_id: str) -> None:
    """An id outside the pattern cannot exist: 404 before the store is asked (which
    PostgreSQL would refuse for a NUL, as a store error)."""
    if not _WEBHOOK_ID_RE.fullmatch(webhook_id):
        raise ApiError("NOT_FOUND", f"Webhook {webhook_id} not found")


def _webhook_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "webhook_id": row["webhook_id"],
        "url": row["url"],
        "events": row["events"],
        "has_secret": bool(row["secret"]),
        "created_at": api_time(row["created_at"]),
    }
