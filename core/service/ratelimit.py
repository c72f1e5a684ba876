"""Per-key rate limit: at most N requests in any sliding window (60 s by default).

Only accepted requests count, so `Retry-After` (whole seconds until the oldest counted
request leaves the window) is true: a client that waits that long gets through.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class RateLimiter:
    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one request of `key`, or raise RateLimited (not counted)."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        edge = now - self.window
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
            while hits and hits[0] <= edge:
                hits.popleft()
            if len(hits) >= self.limit:
                wait = hits[0] + self.window - now
                raise RateLimited(max(1, math.ceil(wait)))
            hits.append(now)
