"""What every full screen of the app has: the top bar, a footer and contextual help."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from textual.screen import Screen
from textual.widgets import Footer

from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.topbar import TopBar

Command = tuple[str, str, Callable[[], Any]]


class CpfScreen(Screen[Any]):
    # -tiny: under 70 columns (panes stack or collapse); -narrow: under 120.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-tiny"),
        (70, "-narrow"),
        (120, "-wide"),
    ]
    AREA: ClassVar[str] = ""
    HELP: ClassVar[str] = ""  # markdown shown by F1 / ? above the key list

    def on_mount(self) -> None:
        # Screens yield Textual's Footer; the one that fits its keys to the width replaces it.
        # (Once: Textual also calls this handler for subclasses that call it themselves.)
        if not self.query(KeyFooter):
            for footer in self.query(Footer):
                footer.remove()
                self.mount(KeyFooter())
        self.watch(self.app, "waiting", self._waiting_changed)
        bar = self.query(TopBar)
        if bar:
            bar.first().area = self.AREA or getattr(self.app, "current_mode", "")

    def _waiting_changed(self, rows: list[dict[str, Any]]) -> None:
        for bar in self.query(TopBar):
            bar.waiting = len(rows)
        self.waiting_changed(rows)

    def waiting_changed(self, rows: list[dict[str, Any]]) -> None:
        """Override to react to the app's list of waiting runs."""

    def can_leave(self) -> bool:
        """False while a form on this screen holds unsent edits (area keys must not drop
        them). Screens without a form can always be left."""
        form: Any = self.query(".cpf-form")
        return not (bool(form) and getattr(form.first(), "dirty", False))

    def context_commands(self) -> Iterator[Command]:
        """Commands this screen adds to the palette."""
        return iter(())

    @property
    def now(self) -> Any:
        return self.app.clock()  # type: ignore[attr-defined]
