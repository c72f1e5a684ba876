"""A LogView with its status line (follow state, "N new lines", wrap, matches, how much
of the log is held) and a search field opened with `/`."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input

from cpf_tui.widgets.line import Line
from cpf_tui.widgets.logview import LogView


class LogPane(Vertical):
    DEFAULT_CSS = """
    LogPane { height: 1fr; }
    LogPane > LogView { height: 1fr; }
    LogPane > #log-status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    LogPane > #log-search { display: none; height: 1; border: none; padding: 0 1; }
    LogPane > #log-search.-open { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "open_search", "Search", id="log.search"),
        # Only while the search is open: otherwise escape belongs to the screen (back).
        Binding("escape", "close_search", "Close search", id="log.close_search"),
    ]

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        empty_text: str = "No output yet.",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        # Held, not queried: owners may use it before this pane is composed.
        self.log_view = LogView(max_lines=max_lines, empty_text=empty_text)
        self.hint = ""  # e.g. where the full log is: "cpf logs --run-id ..."
        # Held, not queried: a screen closed while it opens unmounts this pane before
        # its children mount.
        self.status = Line(id="log-status")

    def compose(self) -> ComposeResult:
        yield self.log_view
        yield Input(placeholder="search (enter: find, n/N: next/previous)", id="log-search")
        yield self.status

    def on_mount(self) -> None:
        view = self.log_view
        self.watch(view, "revision", self._update_status)
        self.watch(view, "new_lines", self._update_status)
        self.watch(view, "follow", self._update_status)

    def _update_status(self, _value: object = None) -> None:
        view = self.log_view
        text = Text(no_wrap=True, overflow="ellipsis")
        if view.follow:
            text.append("● following", style="bold")
        else:
            text.append("‖ paused", style="bold")
            if view.new_lines:
                text.append(f"  ↓ {view.new_lines:,} new lines", style="reverse bold")
            text.append("  G: follow")
        if view.wrap:
            text.append("  · wrap")
        if view.query_text:
            where = view.match_index + 1 if view.match_index >= 0 else 0
            text.append(f"  · “{view.query_text}” {where}/{view.match_count}")
        if view.dropped:
            text.append(f"  · last {view.line_count:,} of {view.dropped + view.line_count:,} lines")
            if self.hint:
                text.append(f" (all: {self.hint})")
        self.status.update(text)

    def action_open_search(self) -> None:
        field = self.query_one("#log-search", Input)
        field.add_class("-open")
        self.refresh_bindings()
        field.value = self.log_view.query_text
        field.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_search":
            return self.is_mounted and self.query_one("#log-search", Input).has_class("-open")
        return True

    def action_close_search(self) -> None:
        field = self.query_one("#log-search", Input)
        if field.has_class("-open"):
            field.remove_class("-open")
            self.log_view.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        event.stop()
        found = self.log_view.search(event.value.strip())
        event.input.remove_class("-open")
        self.log_view.focus()
        if event.value.strip() and not found:
            self.app.notify(f"No line contains “{event.value.strip()}”.", severity="warning")
        self._update_status()
