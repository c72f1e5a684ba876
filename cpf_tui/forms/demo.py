"""A tiny app around one `SchemaForm`: preview a schema's form, and the tests' host app.

    python -m cpf_tui.forms.demo [--compact] schema.json [value.json]

ctrl+s submits (the payload is printed on exit when valid), escape quits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, TextArea

from core.payload import FieldError
from cpf_tui.forms.form import SchemaForm
from cpf_tui.keys import KeysInOrder


class FormHost(KeysInOrder[Any]):
    """One form and a footer. `submitted` holds the last valid payload, `changes` counts
    `SchemaForm.Changed` messages. `blink=False` keeps cursors still (snapshot tests)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Submit", id="demo.submit", priority=True),
        Binding("escape", "quit", "Quit", id="demo.quit"),
    ]

    def __init__(
        self,
        schema: dict[str, Any],
        value: Any = None,
        *,
        blink: bool = True,
        compact: bool = False,
    ) -> None:
        super().__init__()
        self.schema = schema
        self.compact = compact
        self.initial = value
        self.blink = blink
        self.submitted: Any = None
        self.last_errors: list[FieldError] = []
        self.changes = 0

    def compose(self) -> ComposeResult:
        yield SchemaForm(self.schema, value=self.initial, id="form", compact=self.compact)
        yield Footer()

    def on_mount(self) -> None:
        self.theme = "textual-dark"

    @property
    def form(self) -> SchemaForm:
        return self.query_one(SchemaForm)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if not self.blink and isinstance(event.widget, Input | TextArea):
            event.widget.cursor_blink = False

    def on_schema_form_changed(self, event: SchemaForm.Changed) -> None:
        self.changes += 1

    def action_submit(self) -> None:
        payload, errors = self.form.check()
        self.last_errors = errors
        if not errors:
            self.submitted = payload
            if not self.is_headless:
                self.exit(payload)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    compact = "--compact" in args
    args = [a for a in args if a != "--compact"]
    if not args:
        usage = "usage: python -m cpf_tui.forms.demo [--compact] SCHEMA.json [VALUE.json]"
        print(usage, file=sys.stderr)
        return 2
    schema = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    value = json.loads(Path(args[1]).read_text(encoding="utf-8")) if len(args) > 1 else None
    result = FormHost(schema, value, compact=compact).run()
    if result is not None:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
