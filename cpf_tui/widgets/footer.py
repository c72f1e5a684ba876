"""A footer that shows only the keys that fit.

Textual's Footer lets its keys run under the command-palette key docked at the right, so a
narrow terminal showed overlapped text ("palettee"). This one keeps the keys in order
while they fit, always keeps `esc` (the way back) and help, and drops the rest (F1 lists
every key)."""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KEEP = ("back", "help", "app.help")  # actions whose key is shown whatever the width


def key_width(key: FooterKey) -> int:
    """Cells a compact key takes: `k Label` and one cell of margin."""
    label = f" {key.description}" if key.description else ""
    return cell_len(key.key_display) + cell_len(label) + 1


class KeyFooter(Footer):
    def __init__(self) -> None:
        super().__init__(compact=True)
        self._width = 0
        # It replaces a footer whose screen is already up: its keys are known now.
        self.set_reactive(Footer._bindings_ready, True)

    def compose(self) -> ComposeResult:
        children: list[Widget] = list(super().compose())
        palette = [w for w in children if w.has_class("-command-palette")]
        keys = [w for w in children if not w.has_class("-command-palette")]
        width = self.size.width or self.app.size.width
        self._width = width  # a resize to another width composes again
        room = width - sum(key_width(k) + 1 for k in palette if isinstance(k, FooterKey))
        if room < 24:  # too narrow to show the palette key and the screen's own keys
            room, palette = width, []
        needed = sum(key_width(k) if isinstance(k, FooterKey) else 99 for k in keys)
        if needed > room:
            kept = [k for k in keys if isinstance(k, FooterKey) and k.action in KEEP]
            room -= sum(key_width(k) for k in kept)
            chosen = []
            for key in keys:
                if key in kept:
                    chosen.append(key)
                elif isinstance(key, FooterKey) and key_width(key) <= room:
                    chosen.append(key)
                    room -= key_width(key)
                else:
                    room = -1  # keep the order: nothing after the first key that is cut
            keys = chosen
        yield from keys
        yield from palette

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            self.call_after_refresh(self.recompose)
