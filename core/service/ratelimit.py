"""Per-key rate limit: at most N requests per window (60 s by default), for all replicas.

The count lives in the store (`svc_rate_windows`, one row per API key, one atomic
upsert per request on the database's clock), so two `cpf serve` replicas over one
database share one limit instead of granting N each. A key's window starts at its
first request after the previous window ended; requests beyond N in a window are
refused and do not count, and `Retry-After` is the whole seconds until the window ends:
a client that waits that long gets through.
"""

from __future__ import annotations

from typing import Any


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, svc: Any, limit: int, window: float = 60.0) -> None:
        # svc: a core.service.checkpoints.CheckpointService (which keeps the count in its store).
        self.svc = svc
        self.limit = limit
        self.window = window

    def check(self, key: str) -> None:
        """Count one request of `key`, or raise RateLimited (not counted)."""
        if self.limit <= 0:
            return
        wait = self.svc.rate_limit(key, self.limit, self.window)
        if wait is not None:
            raise RateLimited(wait)
