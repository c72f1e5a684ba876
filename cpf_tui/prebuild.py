"""Building the areas' screens while they are hidden, so the first switch to an area
costs what every later one does.

Textual builds a mode's screen on the first switch to it: compose, mount, styles, then
a layout of every widget, 100-250 ms while the user waits. These helpers do that work
while the app is idle, one step at a time with the UI free in between. They use Textual
internals (8.2): the first half of `App.switch_mode` (`_init_mode`), and a screen's own
layout pass, which Textual runs only for the screen on display.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.screen import Screen


def is_built(app: App[Any], mode: str) -> bool:
    """True when the screen of `mode` exists (shown, or built hidden)."""
    return mode in app._screen_stacks


def hidden_screen(app: App[Any], mode: str) -> Screen[Any] | None:
    """The base screen of `mode` while it is built and not shown."""
    stack = app._screen_stacks.get(mode)
    if not stack or app.current_mode == mode or app._exit or not app.is_running:
        return None
    return stack[0] if stack[0].is_attached else None


Quiet = Callable[[], bool]  # True while the user is not typing


async def wait_quiet(quiet: Quiet, idle: float) -> None:
    """Sleep `idle` seconds, then on in such slices until `quiet()`."""
    await asyncio.sleep(idle)
    while not quiet():
        await asyncio.sleep(idle)


async def build_hidden(
    app: App[Any], mode: str, *, idle: float, data_within: float, quiet: Quiet
) -> None:
    """Compose and mount the screen of `mode` without showing it, give it up to
    `data_within` seconds to read its data (screens with a `loaded` flag), then lay it
    out at the app's size. Each step waits `idle` seconds and until `quiet()`."""
    await wait_quiet(quiet, idle)
    if app._exit or not app.is_running or is_built(app, mode):
        return
    await app._init_mode(mode)
    await settle_hidden(app, mode, idle=idle, data_within=data_within, quiet=quiet, force=True)


async def settle_hidden(
    app: App[Any],
    mode: str,
    *,
    idle: float,
    data_within: float,
    quiet: Quiet,
    force: bool = False,
) -> None:
    """Once the hidden screen of `mode` has its data (or `data_within` seconds passed),
    lay it out again if something on it asked for a layout since (or if `force`)."""
    deadline = time.monotonic() + data_within
    while (screen := hidden_screen(app, mode)) is not None:
        if getattr(screen, "loaded", True) or time.monotonic() > deadline:
            break
        await asyncio.sleep(idle)
    # Two passes at most: the first sizes what was mounted or filled since (the
    # footer's keys, rows), whose resize handlers may ask for another.
    for _ in range(2):
        await wait_quiet(quiet, idle)
        screen = hidden_screen(app, mode)
        if screen is None or not (force or screen._layout_required):
            return
        force = False
        screen._refresh_layout(app.size)
        # As Textual's own pass does: else the first showing lays it out once more.
        screen._layout_required = False
        # A first render, discarded: the widgets keep their rendered lines, so the first
        # showing only composes them (a first render of a Checkpoints screen with its
        # state pane takes ~60 ms).
        await wait_quiet(quiet, idle)
        if hidden_screen(app, mode) is screen:
            screen._compositor.render_update(full=True)
