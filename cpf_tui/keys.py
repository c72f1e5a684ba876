"""Keys are delivered in the order they were typed, to the widget the previous key left
focused.

Textual forwards each key to the widget focused *when the app reads it*, and a key that
no widget handles (`tab`, `escape`, ...) climbs the DOM one message queue at a time before
the app runs its binding. Keys typed meanwhile (a paste, a quick typist: `Ada`, `tab`,
`77`) were forwarded to the old focus and landed in the previous field. `KeysInOrder`
holds each key (and paste) until the one before it has been handled: a marker message
follows the key into the same queue and climbs after it, so when the marker reaches the
app, the key and what it posted on the way have been handled and the focus is where that
key put it. Text typed into a field needs no marker (it cannot move the focus), so
typing stays as fast as before.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from textual import events
from textual.app import App
from textual.message import Message
from textual.message_pump import MessagePump
from textual.timer import Timer

ReturnT = TypeVar("ReturnT")

# Passes of the marker through the chain: the second one also waits for the messages the
# key's handler posted (e.g. a table's Selected that opens a screen).
PASSES = 2
# A marker can be lost (its widget removed on the way): never hold keys longer than this.
MAX_HOLD = 0.5


class KeyHandled(Message, bubble=True):
    """Climbs behind a forwarded key; reaching the app means that key was handled."""

    def __init__(self, token: int, passes_left: int, target: MessagePump) -> None:
        super().__init__()
        self.token = token
        self.passes_left = passes_left
        self.target = target  # where the key went (its handler's messages queue there)


class KeysInOrder(App[ReturnT], Generic[ReturnT]):
    """Mixin for apps: hold input until the previous key has been handled."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._held: deque[events.Event] = deque()
        self._in_flight = 0  # token of the key being handled; 0: none
        self._key_tokens = 0
        self._hold_timer: Timer | None = None

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.Paste) and not event.is_forwarded:
            if self._in_flight or self._held:
                self._held.append(event)
                return
            await self._deliver(event)
            return
        await super().on_event(event)

    async def _deliver(self, event: events.Event) -> None:
        if not self._screen_stack:
            return  # the app is closing
        focused = self.focused
        # Text typed into a field stays in that field's queue, in order, and moves no
        # focus: only the other keys (tab, enter, escape, shortcuts) need the wait.
        consumed = isinstance(event, events.Paste) or (
            isinstance(event, events.Key)
            and focused is not None
            and focused.check_consume_key(event.key, event.character)
        )
        await super().on_event(event)
        if consumed or not event.is_forwarded:
            return  # typed text, or an app binding handled it here and now
        self._key_tokens += 1
        self._in_flight = self._key_tokens
        self._send_marker(self._in_flight, PASSES)
        if self._hold_timer is not None:
            self._hold_timer.stop()
        self._hold_timer = self.set_timer(MAX_HOLD, self._release_all)

    def _send_marker(self, token: int, passes_left: int, target: MessagePump | None = None) -> None:
        if target is None or not target.is_attached:
            target = self.focused or self.screen
        target.post_message(KeyHandled(token, passes_left - 1, target))

    async def on_key_handled(self, message: KeyHandled) -> None:
        message.stop()
        if message.token != self._in_flight:
            return  # a late marker of a key already released
        if message.passes_left > 0:
            self._send_marker(message.token, message.passes_left, message.target)
            return
        await self._release_next()

    async def _release_next(self) -> None:
        self._in_flight = 0
        while self._held and not self._in_flight:
            await self._deliver(self._held.popleft())
        if not self._in_flight and self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None

    async def _release_all(self) -> None:
        self._hold_timer = None
        if self._in_flight:
            await self._release_next()
