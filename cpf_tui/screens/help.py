"""F1 / ?: what the current screen does, and every key active where the focus is."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Markdown, Static

SETTINGS = (
    "Keys can be changed by id in the settings file (`$CPF_TUI_CONFIG`, default "
    "`~/.config/cpf/tui.yaml`) under `keymap:`, e.g. `run.cancel: ctrl+k`. "
    "`theme:` sets the theme (also: palette → Theme)."
)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96; max-width: 96%; height: 92%;
        border: thick $primary 60%; background: $surface; padding: 0 1;
    }
    HelpScreen Markdown { margin: 0; padding: 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,question_mark,q", "close", "Close", id="help.close"),
    ]

    def __init__(self, screen: Screen[Any], focused: Widget | None) -> None:
        super().__init__()
        self._about = getattr(screen, "HELP", "") or f"**{type(screen).__name__}**"
        self._keys = key_table(screen, focused)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(self._about)
            yield Static(self._keys)
            yield Markdown(SETTINGS)

    def action_close(self) -> None:
        self.dismiss(None)


def key_table(screen: Screen[Any], focused: Widget | None) -> Table:
    """The bindings active for the focused widget, its screen and the app."""
    app: Any = screen.app
    table = Table(box=None, expand=True, header_style="bold", pad_edge=False)
    table.add_column("Key", no_wrap=True, style="bold")
    table.add_column("Action")
    table.add_column("Id (keymap)", style="dim", no_wrap=True)
    rows: dict[str, list[str]] = {}
    order: list[str] = []

    def rank(active: Any) -> int:
        # This screen's own keys first, then the focused widget's, then the app's.
        return 0 if active.node is screen else 2 if active.node is app else 1

    for active in sorted(screen.active_bindings.values(), key=rank):
        binding = active.binding
        if binding.action == "app.command_palette" or not active.enabled:
            continue
        label = binding.description or binding.action
        if label not in rows:
            rows[label] = [app.get_key_display(binding), binding.id or ""]
            order.append(label)
        elif app.get_key_display(binding) not in rows[label][0]:
            rows[label][0] += f", {app.get_key_display(binding)}"
    for label in order:
        keys, binding_id = rows[label]
        table.add_row(keys, label, binding_id)
    table.add_row("ctrl+p", "Command palette: app commands, themes, keys", "")
    if focused is not None:
        where = type(focused).__name__ + (f" #{focused.id}" if focused.id else "")
        table.add_row("", Text(f"(focus: {where})", style="dim"), "")
    return table
