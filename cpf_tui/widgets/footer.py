"""A footer that shows only the keys that fit.

Textual's Footer lets its keys run under the command-palette key docked at the right, so a
narrow terminal showed overlapped text ("palettee"). This one keeps the keys in order
while they fit, always keeps `esc` (the way back) and help, and drops the rest (F1 lists
every key).

Textual's Footer also rebuilds all its keys whenever the screen's bindings are updated
(each focus change, each screen switch, every `refresh_bindings`): a dozen widgets
mounted and styled each time, most of an area switch's cost. This one updates its key
widgets in place, and only when what it shows changes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KEEP = ("back", "help", "app.help")  # actions whose key is shown whatever the width


class Shown(NamedTuple):
    """One key as the footer shows it."""

    key: str
    display: str
    description: str
    action: str
    enabled: bool
    tooltip: str
    palette: bool  # the command-palette key, docked at the right


def key_width(key: FooterKey | Shown) -> int:
    """Cells a compact key takes: `k Label` and one cell of margin."""
    display = key.display if isinstance(key, Shown) else key.key_display
    label = f" {key.description}" if key.description else ""
    return cell_len(display) + cell_len(label) + 1


def fitting(keys: list[Shown], width: int) -> list[Shown]:
    """The keys that fit `width`, in order; the palette key last (dropped first)."""
    palette = [k for k in keys if k.palette]
    own = [k for k in keys if not k.palette]
    room = width - sum(key_width(k) + 1 for k in palette)
    if room < 24:  # too narrow to show the palette key and the screen's own keys
        room, palette = width, []
    if sum(key_width(k) for k in own) > room:
        kept = [k for k in own if k.action in KEEP]
        room -= sum(key_width(k) for k in kept)
        chosen = []
        for key in own:
            if key in kept:
                chosen.append(key)
            elif key_width(key) <= room:
                chosen.append(key)
                room -= key_width(key)
            else:
                room = -1  # keep the order: nothing after the first key that is cut
        own = chosen
    return own + palette


class KeyFooter(Footer):
    def __init__(self) -> None:
        super().__init__(compact=True)
        self._width = 0
        self._shown: tuple[Any, ...] | None = None  # what the last compose showed

    def shown(self) -> tuple[tuple[Shown, ...], int]:
        """What a compose would show now: the keys (with their state) and the width."""
        app = self.app
        palette_key = app.COMMAND_PALETTE_BINDING
        with_palette = self.show_command_palette and app.ENABLE_COMMAND_PALETTE
        keys: list[Shown] = []
        seen: set[str] = set()
        active = self.screen.active_bindings
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in seen:  # one key per action
                seen.add(binding.action)
                keys.append(
                    Shown(
                        binding.key,
                        app.get_key_display(binding),
                        binding.description,
                        binding.action,
                        enabled,
                        tooltip or "",
                        False,
                    )
                )
        if with_palette and palette_key in active:
            _, binding, enabled, tooltip = active[palette_key]
            keys.append(
                Shown(
                    binding.key,
                    app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    enabled,
                    binding.tooltip or binding.description,
                    True,
                )
            )
        return tuple(keys), self.size.width or app.size.width

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            # After the next frame: what the key did shows first, its keys right after.
            self.call_after_refresh(self._refresh_keys)

    def _refresh_keys(self) -> None:
        """Show the keys that apply now, reusing the key widgets in place: no widget is
        mounted or removed unless the number of keys changes, so a change costs one
        layout pass at most (a recompose cost two, and a dozen widgets styled anew)."""
        if not self.is_attached:
            return
        shown = self.shown()
        if shown == self._shown:
            return
        self._shown = shown
        keys, width = shown
        self._width = width
        wanted = fitting(list(keys), width)
        have = list(self.query_children(FooterKey))
        extra: list[FooterKey] = []
        for palette in (False, True):
            want = [k for k in wanted if k.palette == palette]
            widgets = [w for w in have if w.has_class("-command-palette") == palette]
            for widget, key in zip(widgets, want, strict=False):
                self._set_key(widget, key)
            extra += widgets[len(want) :]
            new = [self._key_widget(k) for k in want[len(widgets) :]]
            if new:
                self.mount_all(new)
        if extra:
            self.remove_children(extra)

    @staticmethod
    def _set_key(widget: FooterKey, key: Shown) -> None:
        if (widget.key_display, widget.description) != (key.display, key.description):
            widget.key_display = key.display
            widget.description = key.description
            widget.refresh(layout=True)  # its width follows its text
        widget.key = key.key
        widget.action = key.action
        widget._disabled = not key.enabled
        widget.set_class(not key.enabled, "-disabled")
        widget.tooltip = key.tooltip or None

    @staticmethod
    def _key_widget(key: Shown) -> FooterKey:
        return FooterKey(
            key.key,
            key.display,
            key.description,
            key.action,
            disabled=not key.enabled,
            tooltip=key.tooltip,
            # Built compact (Textual's Footer binds `compact` afterwards: one more
            # restyle of every key).
            classes="-compact -command-palette" if key.palette else "-compact",
        )

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        shown = self.shown()
        self._shown = shown
        keys, width = shown
        self._width = width  # a resize to another width composes again
        for key in fitting(list(keys), width):
            yield self._key_widget(key)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:
            self.call_after_refresh(self._refresh_keys)
