"""Keys are delivered in the order they were typed, to the widget the previous key left
focused.

Textual forwards each key to the widget focused *when the app reads it*; a key that the
widget does not take itself (`tab`, `escape`, shortcuts) climbs the DOM one message queue
at a time, and only when it is back at the app do the bindings run (and move the focus).
Keys typed meanwhile (a paste, a quick typist: `Ada`, `tab`, `77`) were forwarded to the
old focus and landed in the previous field. `KeysInOrder` holds the keys that follow
such a key until its bindings have run. Text typed into a field is not held (it cannot
move the focus), so typing stays as fast as before.

A key can also be stopped on its way up (a widget's own key handler); a marker message
follows it into the same queue and climbs behind it, so reaching the app it releases
the held keys in that case too. A marker may be lost (its widget removed on the way):
keys are never held longer than `MAX_HOLD`.

The bindings a key runs may post messages that change the screen: `enter` on the Runs
list posts `Selected`, the screen answers with `OpenRun`, and the app pushes the run
view. So when the key is back at the app, a second marker climbs the same way behind
those messages, and the held keys go out only when it arrives: `enter, esc, enter`
typed fast opens the run view, closes it and opens it again (the `esc` used to be read
on the list and then run on the view, and the second `enter` went to the view it closed).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Generic, TypeVar

from textual import events
from textual.app import App
from textual.message import Message
from textual.timer import Timer

ReturnT = TypeVar("ReturnT")

MAX_HOLD = 0.5


class KeyHandled(Message, bubble=True):
    """Climbs behind a forwarded key; reaching the app means that key was handled."""

    def __init__(self, token: int) -> None:
        super().__init__()
        self.token = token


class KeysInOrder(App[ReturnT], Generic[ReturnT]):
    """Mixin for apps: hold input until the previous key has been handled."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._held: deque[events.Event] = deque()
        self._in_flight: events.Key | None = None
        self._in_flight_token = 0
        self._hold_timer: Timer | None = None
        self._settling = False  # back at the app; waiting for the second marker
        self.last_input = 0.0  # time.monotonic() of the last key or paste read

    def input_quiet_for(self, seconds: float) -> bool:
        """True when no key is held or in flight and none was read for `seconds`."""
        return not (self._busy or self._held) and time.monotonic() - self.last_input >= seconds

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.Paste) and not event.is_forwarded:
            self.last_input = time.monotonic()
            if self._busy or self._held:
                self._held.append(event)
                return
            await self._deliver(event)
            return
        await super().on_event(event)
        if event is self._in_flight:  # back at the app: its bindings have run
            await self._settle()

    async def _settle(self) -> None:
        """Release the held keys once what the bindings posted has been handled."""
        self._in_flight = None  # back at the app: a second return must not settle again
        self._settling = True
        self._in_flight_token += 1
        # To the focus as the bindings left it: where the key went if they did not change
        # the screen (the widget that posted `Selected`), else the screen now shown (the
        # old one may be closing, and a marker sent there would be lost).
        target = self.focused or (self.screen if self._screen_stack else None)
        if target is None or not target.post_message(KeyHandled(self._in_flight_token)):
            await self._release()

    async def _deliver(self, event: events.Event) -> None:
        if not self._screen_stack:
            return  # the app is closing
        focused = self.focused
        consumed = isinstance(event, events.Paste) or (
            isinstance(event, events.Key)
            and focused is not None
            and focused.check_consume_key(event.key, event.character)
        )
        await super().on_event(event)
        if consumed or not event.is_forwarded or not isinstance(event, events.Key):
            return  # typed text, or an app binding handled it here and now
        self._in_flight = event
        self._in_flight_token += 1
        (self.focused or self.screen).post_message(KeyHandled(self._in_flight_token))
        if self._hold_timer is not None:
            self._hold_timer.stop()
        self._hold_timer = self.set_timer(MAX_HOLD, self._release)

    async def on_key_handled(self, message: KeyHandled) -> None:
        message.stop()
        if self._busy and message.token == self._in_flight_token:
            # The key was stopped on its way up, or (second marker) what its bindings
            # posted has been handled.
            await self._release()

    @property
    def _busy(self) -> bool:
        return self._in_flight is not None or self._settling

    async def _release(self) -> None:
        self._in_flight = None
        self._settling = False
        if self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None
        while self._held and not self._busy:
            await self._deliver(self._held.popleft())
