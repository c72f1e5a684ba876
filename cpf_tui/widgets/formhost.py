"""The schema form used by the start and approval screens.

`cpf_tui.forms.SchemaForm` (its own module, built and tested separately) renders a JSON
Schema as fields. Until it is importable, a raw-JSON editor with the same small API stands
in, so a run can always be started or resumed: `collect() -> (payload, errors)`,
`show_errors(errors)`, `dirty`.
"""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static, TextArea


def make_form(schema: dict[str, Any] | None, *, value: Any = None, id: str = "form") -> Widget:
    try:
        from cpf_tui.forms import SchemaForm
    except ImportError:
        return RawJsonForm(schema, value=value, id=id, classes="cpf-form")
    return SchemaForm(schema or {}, value=value, id=id, classes="cpf-form")


class RawJsonForm(Vertical):
    """A JSON editor for the whole payload (the fallback form)."""

    DEFAULT_CSS = """
    RawJsonForm { height: auto; }
    RawJsonForm > TextArea { height: 10; }
    RawJsonForm > .errors { color: $error; height: auto; }
    """

    def __init__(
        self,
        schema: dict[str, Any] | None,
        *,
        value: Any = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.schema = schema or {}
        self._initial = json.dumps(value if value is not None else {}, indent=2)

    def compose(self) -> ComposeResult:
        yield Static("Payload (JSON):")
        yield TextArea(self._initial, language=None, id="raw-json")
        yield Static("", classes="errors")

    @property
    def dirty(self) -> bool:
        return self.query_one(TextArea).text != self._initial

    def collect(self) -> tuple[Any, list[Any]]:
        from core.payload import FieldError

        text = self.query_one(TextArea).text.strip() or "{}"
        try:
            return json.loads(text), []
        except ValueError as exc:
            return None, [FieldError((), f"not valid JSON: {exc}")]

    def show_errors(self, errors: list[Any]) -> None:
        self.query_one(".errors", Static).update("\n".join(str(e) for e in errors))
