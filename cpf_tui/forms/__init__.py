"""JSON Schema -> Textual form generator.

`SchemaForm` is the widget; `model` (no Textual) turns a schema into a field tree.
Payloads are checked by the engine's validator, `core.payload.check_payload`.
`SchemaForm` is imported lazily so `cpf_tui.forms.model` stays free of Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cpf_tui.forms.model import MISSING, Field, build, limitations, redact, supported

if TYPE_CHECKING:
    from cpf_tui.forms.form import SchemaForm

__all__ = ["MISSING", "Field", "SchemaForm", "build", "limitations", "redact", "supported"]


def __getattr__(name: str) -> Any:
    if name == "SchemaForm":
        from cpf_tui.forms.form import SchemaForm

        return SchemaForm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
