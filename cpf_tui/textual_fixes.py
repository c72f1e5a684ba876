"""Guards around Textual (8.2) behaviour that can crash the app.

- `Tabs._on_resize` looks up its underline bar with `query_one`: a Resize still queued
  while the app prunes a screen (at exit, just after a layout changed the tabs' width)
  finds the bar gone, and the NoMatches ends the app with a traceback. Seen once in CI
  on the run view; a Resize without its bar has nothing to highlight.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from textual.css.query import NoMatches
    from textual.widgets import Tabs

    resize = Tabs._on_resize

    def _on_resize(self: Any) -> None:
        with suppress(NoMatches):  # its children are gone (being pruned): nothing to move
            resize(self)

    Tabs._on_resize = _on_resize  # type: ignore[method-assign]
    _applied = True
