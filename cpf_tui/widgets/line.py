"""A fixed-size text widget whose updates repaint it without a layout pass.

`Static.update` asks for a layout of the whole screen (its size may change); the status
lines here change several times a second with the same size, so they only repaint.
Give it a fixed height in CSS.
"""

from __future__ import annotations

from rich.console import RenderableType
from textual.widget import Widget


class Line(Widget):
    DEFAULT_CSS = """
    Line { height: 1; }
    """

    def __init__(
        self, content: RenderableType = "", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._content = content

    def update(self, content: RenderableType) -> None:
        self._content = content
        self.refresh()

    def render(self) -> RenderableType:
        return self._content
