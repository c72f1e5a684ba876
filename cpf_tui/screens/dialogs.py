"""Modal dialogs: confirm, cancel with a reason, type-to-confirm, retry from a step."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class _Dialog(ModalScreen[Any]):
    DEFAULT_CSS = """
    _Dialog { align: center middle; }
    _Dialog > Vertical {
        width: 64; max-width: 95%; height: auto; max-height: 90%;
        border: thick $primary 60%; background: $surface; padding: 1 2;
    }
    _Dialog .title { text-style: bold; margin-bottom: 1; }
    _Dialog .message { margin-bottom: 1; }
    _Dialog .buttons { height: auto; margin-top: 1; align-horizontal: right; }
    _Dialog .buttons Button { margin-left: 2; }
    _Dialog.-danger > Vertical { border: thick $error 70%; }
    _Dialog OptionList { height: auto; max-height: 12; }
    _Dialog .refusal { color: $text-error; height: auto; display: none; }
    _Dialog .refusal.-shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel", id="dialog.cancel"),
    ]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def refuse(self, message: str) -> None:
        """Say under the field why the dialog did not close (never refuse in silence)."""
        line = self.query_one(".refusal", Static)
        line.update(Content(f"✗ {message}"))  # typed text is not markup
        line.add_class("-shown")

    def clear_refusal(self) -> None:
        self.query_one(".refusal", Static).remove_class("-shown")


class ConfirmDialog(_Dialog):
    """Yes/no; dismisses with True or False."""

    def __init__(
        self, title: str, message: str, *, confirm: str = "OK", danger: bool = False
    ) -> None:
        super().__init__(classes="-danger" if danger else None)
        self._title, self._message, self._confirm = title, message, confirm
        self._danger = danger

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Static(self._message, classes="message")
            with Horizontal(classes="buttons"):
                yield Button("Back", id="no")
                yield Button(
                    self._confirm, id="yes", variant="error" if self._danger else "primary"
                )

    def on_mount(self) -> None:
        self.query_one("#no" if self._danger else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_dismiss_none(self) -> None:
        self.dismiss(False)


class ReasonDialog(_Dialog):
    """Ask for a reason (cancel); dismisses with the text or None."""

    def __init__(self, title: str, message: str, *, confirm: str = "Cancel run") -> None:
        super().__init__(classes="-danger")
        self._title, self._message, self._confirm = title, message, confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Static(self._message, classes="message")
            yield Input(placeholder="reason (required)", id="reason")
            yield Static("", classes="refusal")
            with Horizontal(classes="buttons"):
                yield Button("Back", id="no")
                yield Button(self._confirm, id="yes", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = not event.value.strip()
        if event.value.strip():
            self.clear_refusal()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())
        else:
            self.refuse("A reason is required: it is recorded with the cancel.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self.dismiss(self.query_one("#reason", Input).value.strip() or None)
        else:
            self.dismiss(None)


class TypeToConfirmDialog(_Dialog):
    """GitHub-style: type `expected` to confirm; dismisses with True or None."""

    def __init__(self, title: str, message: str, expected: str, *, confirm: str) -> None:
        super().__init__(classes="-danger")
        self._title, self._message, self._expected = title, message, expected
        self._confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Static(self._message, classes="message")
            yield Input(placeholder=self._expected, id="typed")
            yield Static("", classes="refusal")
            with Horizontal(classes="buttons"):
                yield Button("Back", id="no")
                yield Button(self._confirm, id="yes", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#typed", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        matches = event.value.strip() == self._expected
        self.query_one("#yes", Button).disabled = not matches
        if matches or not event.value.strip():
            self.clear_refusal()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if typed == self._expected:
            self.dismiss(True)
        elif not typed:
            self.refuse(f"Type {self._expected} to confirm (escape goes back).")
        else:
            self.refuse(f"'{typed}' is not {self._expected}: type it exactly to confirm.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(True if event.button.id == "yes" else None)


class RetryDialog(_Dialog):
    """Pick the step to continue from; dismisses with the step id or None."""

    def __init__(self, run_label: str, steps: list[str], default: str | None) -> None:
        super().__init__()
        self._label, self._steps, self._default = run_label, steps, default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Retry {self._label}", classes="title")
            yield Static(
                "Continue the run from a step (earlier outputs are kept). "
                "Enter picks the highlighted step.",
                classes="message",
            )
            options = [
                Option(f"{s}  (failed here)" if s == self._default else s, id=s)
                for s in self._steps
            ]
            yield OptionList(*options, id="steps")
            with Horizontal(classes="buttons"):
                yield Button("Back", id="no")
                yield Button("Retry", id="yes", variant="primary")

    def on_mount(self) -> None:
        steps = self.query_one(OptionList)
        if self._default in self._steps:
            steps.highlighted = self._steps.index(self._default)
        elif self._steps:
            steps.highlighted = 0
        steps.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            steps = self.query_one(OptionList)
            index = steps.highlighted
            self.dismiss(self._steps[index] if index is not None else None)
        else:
            self.dismiss(None)
