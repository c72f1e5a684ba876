"""Time as the screens show it: relative to an injectable "now".

The app takes a `clock` (a callable returning an aware datetime); tests and
screenshots pass a frozen one so every "5m ago" and duration is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def frozen(at: datetime | str) -> Clock:
    """A clock that always answers `at` (ISO text or an aware datetime)."""
    moment = parse(at) if isinstance(at, str) else at
    assert moment is not None
    return lambda: moment


def parse(ts: str | None) -> datetime | None:
    """The store's ISO-8601 text as an aware datetime (None for None or junk)."""
    if not ts:
        return None
    try:
        value = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def span(seconds: float) -> str:
    """A compact duration: `0.4s`, `12s`, `3m 05s`, `2h 10m`, `4d 3h`."""
    if seconds < 0:
        seconds = 0
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def ago(ts: str | None, now: datetime) -> str:
    """How long before `now`: `now`, `12s`, `5m`, `3h`, `2d` (an empty string for None)."""
    when = parse(ts)
    if when is None:
        return ""
    s = (now - when).total_seconds()
    if s < 1:
        return "now"
    if s < 60:
        return f"{int(s)}s ago"
    if s < 3600:
        return f"{int(s // 60)}m ago"
    if s < 86400:
        return f"{int(s // 3600)}h ago"
    return f"{int(s // 86400)}d ago"


def duration(start: str | None, end: str | None, now: datetime) -> str:
    """From `start` to `end`, or to `now` while there is no end."""
    a = parse(start)
    if a is None:
        return ""
    b = parse(end) or now
    return span((b - a).total_seconds())


def stamp(ts: str | None) -> str:
    """An absolute time for detail views, in UTC so it reads the same everywhere."""
    when = parse(ts)
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
