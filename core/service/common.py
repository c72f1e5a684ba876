"""What the areas of the checkpoint service share: errors, options, time, retries.

The service is split by what it serves (keys.py, checkpoints.py, agents.py,
webhooks.py, ratelimit.py); each area is a small class over one `Context` (the store,
the options, the hook called after webhook events were enqueued), and api.py composes
them into the one `CheckpointService` its callers hold. Functions return plain
JSON-ready dicts and raise `ApiError` (a `CpfError` whose code is the wire code:
NOT_FOUND, CONFLICT, ...). No HTTP here, no SQL: the SQL is in core/service/store/.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.envelope import CpfError, ExitCode, PersistenceError

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_AGENTS = 50
MAX_WEBHOOKS = 25
MAX_STEP = 2**53 - 1  # what a JavaScript client can represent exactly
MAX_OFFSET = MAX_STEP  # of GET /workflows (SQL OFFSET is a signed 64-bit integer)
REPLAY_DEFAULT_LIMIT = 100
REPLAY_MAX_LIMIT = 1000
LOCAL_ACCOUNT = "local"

# Request schemas are validated by the project's one payload validator (core.payload);
# the same schemas make the OpenAPI document.
# Free text is stored as text, and PostgreSQL's text cannot hold U+0000: refused on
# every store alike, so a request means the same whatever the store.
NULLABLE_STR = {"type": ["string", "null"], "pattern": "^[^\\u0000]*$"}


class ApiError(CpfError):
    """A refusal of the checkpoint API; `code` is the wire code (VALIDATION_ERROR, ...)."""

    exit_code = ExitCode.VALIDATION_ERROR

    def __init__(self, code: str, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(code, message)
        # Sibling members of "error" in the response body (the 409's `existing`).
        self.extra = extra


def invalid(message: str) -> ApiError:
    return ApiError("VALIDATION_ERROR", message)


def check_body(schema: dict[str, Any], body: Any) -> None:
    """Validate a request body with the project's one payload validator."""
    from core.payload import check_payload

    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    errors = check_payload(schema, body)
    if errors:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise invalid(f"Invalid request body: {shown}{more}")


# -- time ------------------------------------------------------------------------------


def utc_now() -> datetime:
    """The service's one clock. The areas call it as `common.utc_now()`, so a test can
    replace it in one place."""
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    # The store's format (core.store.store.now_iso): sorts as text.
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def api_time(stored: str | None) -> str | None:
    """Stored timestamps (microseconds, +00:00) as the wire's `...T10:11:48.404Z`."""
    if stored is None:
        return None
    return stored[:23] + "Z" if len(stored) >= 23 and stored[19] == "." else stored


# -- what every area holds -------------------------------------------------------------


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


@dataclass
class Context:
    """What the areas share: the service's store, the options, and the hook called
    (without arguments) after a commit that enqueued webhook deliveries."""

    ss: Any  # a core.service.store.service_store.ServiceStore
    options: Options
    on_enqueue: Callable[[], None] | None = None

    def notify(self) -> None:
        if self.on_enqueue is not None:
            self.on_enqueue()


class Area:
    """One area of the service (keys, checkpoints, ...) over the shared `Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def ss(self) -> Any:
        return self.ctx.ss

    @property
    def options(self) -> Options:
        return self.ctx.options

    def _notify(self) -> None:
        self.ctx.notify()


_log = logging.getLogger("cpf.checkpoints")


def retried(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a service call again after a transient store error (a dropped connection,
    too many clients, a deadlock: nothing was written), with jittered exponential
    backoff, until `options.retry_deadline` has passed; then the error stands (503)."""

    @functools.wraps(method)
    def call(self: Area, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.options.retry_deadline
        delay = 0.02
        while True:
            try:
                return method(self, *args, **kwargs)
            except PersistenceError as exc:
                from core.service.store.base import TransientStoreError

                if not isinstance(exc, TransientStoreError):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                _log.warning("%s: %s; retrying in %.2f s", method.__name__, exc, delay)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    return call
