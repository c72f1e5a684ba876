"""API keys: create, list, revoke (`cpf keys`), and authenticate a request's key.

A key is `snp_` and 32 hex digits, shown once; the store keeps only its SHA-256. Keys
are checked on every request, so a revocation takes effect at once, on every replica.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from core.service import common
from core.service.common import ApiError, Area, api_time, invalid, iso, retried

KEY_PREFIX = "snp_"
ACCOUNT_RE = re.compile(r"[A-Za-z0-9_.@:-]{1,128}")


@dataclass(frozen=True)
class Principal:
    account: str
    key_id: str


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class KeysService(Area):
    """The keys of every account (the service's own accounts are made by their first key)."""

    @retried
    def create_key(self, account: str, label: str | None = None) -> dict[str, Any]:
        if not ACCOUNT_RE.fullmatch(account):
            raise invalid(
                f"Invalid account name {account[:140]!r}: use 1-128 characters of "
                "A-Z a-z 0-9 _ . @ : -"
            )
        raw = KEY_PREFIX + secrets.token_hex(16)
        now = iso(common.utc_now())
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

    @retried
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

    @retried
    def revoke_key(self, key_id: str) -> dict[str, Any]:
        now = iso(common.utc_now())
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

    @retried
    def authenticate(self, raw_key: str) -> Principal:
        """The account of an API key, or 401 (unknown, revoked, expired) / 403."""
        return key_principal(self.ss.key_by_hash(hash_key(raw_key)) if raw_key else None)


def key_principal(row: dict[str, Any] | None) -> Principal:
    """The principal of a key's row (key_id, account, revoked_at, expires_at and its
    account's status), or the 401/403 of a key that does not pass."""
    if row is None:
        raise ApiError("UNAUTHORIZED", "Invalid API key")
    if row["revoked_at"] is not None:
        raise ApiError("UNAUTHORIZED", "API key has been revoked")
    if row["expires_at"] is not None and row["expires_at"] <= iso(common.utc_now()):
        raise ApiError("UNAUTHORIZED", "API key has expired")
    if (row["status"] or "active") != "active":
        raise ApiError("FORBIDDEN", f"Account {row['account']} is not active")
    return Principal(account=row["account"], key_id=row["key_id"])
