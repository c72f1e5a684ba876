"""Work helpers for screens and widgets: blocking engine calls off the UI thread, and
handing spawned `cpf` processes to the app to watch.

Screens import from here (never from `cpf_tui.app`), so the imports point one way:
app -> screens -> work / nav -> textual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from textual.message import Message
from textual.message_pump import MessagePump

T = TypeVar("T")


async def off_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking engine call in a worker thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class Track(Message):
    """Asks the app to watch a spawned `cpf` process until it exits (and reap it)."""

    def __init__(
        self,
        spawned: Any,  # core.spawn.Spawned
        what: str,  # "run", "resume", "retry"
        on_done: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        super().__init__()
        self.spawned = spawned
        self.what = what
        self.on_done = on_done


def track(
    node: MessagePump,
    spawned: Any,
    what: str,
    on_done: Callable[[dict[str, Any] | None], None] | None = None,
) -> None:
    """Hand `spawned` to the app (posted to the app itself: the screen may close now)."""
    node.app.post_message(Track(spawned, what, on_done))
