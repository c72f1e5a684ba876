"""Bearer API keys: `Authorization: Bearer snp_...` (exactly `Bearer` and one space)."""

from __future__ import annotations

from core.service.api import CheckpointService
from core.service.common import ApiError
from core.service.keys import Principal


def bearer_key(header: str | None) -> str:
    """The key of an `Authorization: Bearer <key>` header; ApiError 401 otherwise."""
    if not header or not header.startswith("Bearer "):
        raise ApiError("UNAUTHORIZED", "Missing or malformed Authorization header")
    key = header[len("Bearer ") :].strip()
    if not key:
        raise ApiError("UNAUTHORIZED", "Missing or malformed Authorization header")
    return key


def principal(svc: CheckpointService, header: str | None) -> Principal:
    """The account behind the request's key; ApiError 401/403 otherwise."""
    return svc.authenticate(bearer_key(header))
