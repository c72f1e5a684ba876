"""What every full screen of the app has: the top bar, a footer, contextual help, and
`escape` leading back (to the screen below, or on an area's own screen to the widget it
starts on), shown in the footer wherever it leads somewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, ClassVar

from textual import events
from textual._context import NoActiveAppError
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget

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
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="screen.back"),
    ]

    def __init__(
        self, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        # Built now, this screen's widgets get their styles from the stylesheet as it is
        # now when they mount. Left at -1, Textual reparses every stylesheet (no cache)
        # and restyles the whole screen the first time it is shown.
        with suppress(NoActiveAppError):
            self._css_update_count = self.app._css_update_count
            self._set_breakpoints(self.app.size)

    def _set_breakpoints(self, size: Size) -> None:
        """The breakpoint classes for `size`, set before mounting: Textual sets them on
        the first resize, restyling every widget of the screen (~30 ms of the first
        showing) when they differ from the classes the widgets were styled with."""
        app = self.app
        across = self.HORIZONTAL_BREAKPOINTS
        down = self.VERTICAL_BREAKPOINTS
        across = (app.HORIZONTAL_BREAKPOINTS if across is None else across) or []
        down = (app.VERTICAL_BREAKPOINTS if down is None else down) or []
        shown = self._get_breakpoint_classes(size.width, across)
        shown |= self._get_breakpoint_classes(size.height, down)
        for _, name in (*across, *down):
            self.set_class(name in shown, name, update=False)

    async def _pre_process(self) -> bool:
        # A screen started as the app quits (an area being built hidden then) is not
        # composed: its widgets cannot mount any more, and its mount handlers would
        # fail looking for them.
        app = self.app
        if app._exit or not app.is_running or self._pruning or self._closing:
            self._mounted_event.set()  # nothing waits for it in vain
            return False
        return await super()._pre_process()

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Textual restyles every widget of a screen each time it is shown again (~25 ms
        # on an area switch); a change of theme or CSS already restyles it (`refresh_css`
        # on the switch), and these screens are opaque, so nothing else needs it.
        event.refresh_styles = False

    def on_mount(self) -> None:
        # Textual calls the `on_mount` of every class in the MRO, this one after the
        # screen's own: subclasses must not call it again with `super()` (that ran it
        # twice and watched `waiting` twice).
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

    # -- back ----------------------------------------------------------------------------

    @property
    def pushed(self) -> bool:
        """True when this screen was opened over another one (escape closes it)."""
        stack = self.app.screen_stack
        return len(stack) > 1 and stack[0] is not self

    def home(self) -> Widget | None:
        """The widget an area's own screen starts on (escape comes back to it)."""
        return None

    def action_back(self) -> None:
        if self.pushed:
            self.app.pop_screen()
            return
        home = self.home()
        if home is not None:
            home.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back" and not self.pushed:
            home = self.home()
            return home is not None and self.focused is not home
        return True

    # -- keys that do not apply now ---------------------------------------------------------

    def refusal(self, action: str) -> str | None:
        """Why this screen's `action` does not apply now (said when its key is pressed:
        the footer hides it, but a key must never do nothing in silence)."""
        return None

    def on_key(self, event: events.Key) -> None:
        refused: str | None = None
        app: Any = self.app
        for namespace, bindings in self._modal_binding_chain:
            for binding in bindings.key_to_bindings.get(event.key, ()):
                if app._check_action_state(binding.action, namespace):
                    return  # an enabled binding takes this key
                if namespace is self and refused is None:
                    refused = self.refusal(binding.action.partition("(")[0])
        if refused:
            event.stop()
            self.notify(refused, severity="warning")

    def shows_waiting(self, run_id: str) -> bool:
        """True when this screen already shows that `run_id` waits (no toast needed)."""
        return False

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
