"""Per-key rate limit: at most N requests per window (60 s by default), for all replicas.

The count lives in the store (`svc_rate_windows`, one row per API key, one atomic
upsert per request on the database's clock), so two `cpf serve` replicas over one
database share one limit instead of granting N each. A key's window starts at its
first request after the previous window ended; requests beyond N in a window are
refused and do not count, and `Retry-After` is the whole seconds until the window ends:
a client that waits that long gets through.
"""

from __future__ import annotations

import math
from typing import Any

from core.service.common import Area, retried


class RateLimits(Area):
    """The count itself, in the store (the checkpoint service's `rate_limit`)."""

    @retried
    def rate_limit(self, bucket: str, limit: int, window: float) -> int | None:
        """Count one request of `bucket` (an API key id) against `limit` per `window`
        seconds, for all replicas sharing the store. None if it is allowed, else the
        whole seconds until its window ends (when a request will get through)."""
        hits, left = self.ss.rate_hit(bucket, limit, window)
        if hits <= limit:
            return None
        return max(1, math.ceil(left))


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, svc: Any, limit: int, window: float = 60.0) -> None:
        # svc: a core.service.api.CheckpointService (which keeps the count in its store).
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
