"""A fixed-size text widget whose updates repaint it without a layout pass.

`Static.update` asks for a layout of the whole screen (its size may change); the status
lines here change several times a second with the same size, so they only repaint.
Give it a fixed height in CSS.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
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

    @staticmethod
    def fit(parts: list[tuple[str | Text, int]], width: int) -> Text:
        return fit(parts, width)


def fit(parts: list[tuple[str | Text, int]], width: int) -> Text:
    """One line from `parts` that fits `width` cells: parts with the highest rank (0: keep)
    are left out first, then the line is cut with an ellipsis."""
    pieces = [(Text(p) if isinstance(p, str) else p, rank) for p, rank in parts]
    ranks = sorted({rank for _, rank in pieces if rank}, reverse=True)
    while ranks and sum(t.cell_len for t, _ in pieces) > width:
        drop = ranks.pop(0)
        pieces = [(t, rank) for t, rank in pieces if rank != drop]
    line = Text(no_wrap=True, overflow="ellipsis")
    for text, _ in pieces:
        line.append_text(text)
    if line.cell_len > width:
        line.truncate(max(0, width), overflow="ellipsis")
    return line
