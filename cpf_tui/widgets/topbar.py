"""The one-line bar at the top: the three areas with their keys, and the waiting count."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cpf_tui.look import palette


class TopBar(Widget):
    DEFAULT_CSS = """
    TopBar { height: 1; background: $panel; color: $text; }
    """

    waiting: reactive[int] = reactive(0)
    area: reactive[str] = reactive("")
    where: reactive[str] = reactive("")  # what this screen shows (e.g. a run)

    def render(self) -> Text:
        text = self._bar(short=False)
        if text.cell_len > self.size.width:  # narrow: other areas show only their key
            text = self._bar(short=True)
        return text

    def _bar(self, *, short: bool) -> Text:
        theme = palette(self.app)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" cpf ", style=f"bold {theme.background} on {theme.primary}")
        areas = getattr(self.app, "AREAS", ())
        for key, number, label in ((a.name, a.key, a.label) for a in areas):
            current = key == self.area
            text.append(" " if short else "  ")
            text.append(number, style=f"bold {theme.accent}")
            if current or not short:
                text.append(f" {label}", style=f"bold reverse {theme.accent}" if current else "")
            if key == "waiting" and self.waiting:
                badge = f"bold {theme.background} on {theme.warning}"
                text.append(f" {self.waiting} ", style=badge)
        if self.where:
            text.append("  │ ", style="dim")
            text.append(self.where)
        return text
