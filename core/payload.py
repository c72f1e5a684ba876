"""The one payload validator (JSON Schema Draft 2020-12).

`cpf run` inputs, `cpf resume` events, step `outputs` schemas, the TUI forms and the
HTTP API all call `check_payload` and get the same paths and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class FieldError:
    path: tuple[str | int, ...]  # where in the payload; () is the payload itself
    message: str

    @property
    def location(self) -> str:
        out = "$"
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import json

    from jsonschema import Draft202012Validator

    schema = json.loads(schema_json)
    Draft202012Validator.check_schema(schema)
    # `format` is asserted (dates, emails, ...) so every surface refuses what the TUI form does.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_payload(schema: dict[str, Any] | None, data: Any) -> list[FieldError]:
    """Errors of `data` against `schema`, shallowest first; [] when valid.

    An invalid schema is reported as one error at the root rather than raised.
    """
    if not schema:
        return []
    from core.payload_subset import accepts

    if accepts(schema, data):
        return []  # sure to be valid: no need to load jsonschema (tens of milliseconds)
    return _jsonschema_errors(schema, data)


def _jsonschema_errors(schema: Any, data: Any) -> list[FieldError]:
    """`check_payload` by jsonschema itself: the errors, their paths and messages."""
    import json

    from jsonschema.exceptions import SchemaError
    from referencing.exceptions import Unresolvable

    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        return [FieldError((), f"the schema itself is invalid: {exc.message}")]
    try:
        found = list(validator.iter_errors(data))
    except RecursionError:
        # A schema whose $ref leads back to itself without consuming the value.
        return [FieldError((), "the schema refers to itself without end (a $ref loop)")]
    except Unresolvable as exc:  # a $ref to nowhere: the schema's fault, said as such
        ref = str(getattr(exc, "ref", "") or "")[:200]
        return [FieldError((), f"the schema refers to {ref!r}, which does not resolve")]
    errors = sorted(found, key=lambda e: (len(e.absolute_path), e.message))
    return [FieldError(_path(e), _message(e)) for e in errors]


def _path(err: Any) -> tuple[str | int, ...]:
    path = tuple(err.absolute_path)
    # A missing property belongs to that property's field, not to its parent object.
    if err.validator == "required" and err.message.endswith(" is a required property"):
        import ast

        try:
            name = ast.literal_eval(err.message[: -len(" is a required property")])
        except (ValueError, SyntaxError):
            return path
        if isinstance(name, str):
            return (*path, name)
    return path


def _message(err: Any) -> str:
    # jsonschema's message embeds the whole instance for some validators; keep it one line.
    msg = err.message.replace("\n", " ")
    return msg if len(msg) <= 300 else msg[:297] + "..."


def apply_defaults(schema: dict[str, Any] | None, data: Any) -> Any:
    """Fill top-level `properties.*.default` values missing from an object payload."""
    if not schema or not isinstance(data, dict):
        return data
    props = schema.get("properties")
    if not isinstance(props, dict):
        return data
    out = dict(data)
    for key, sub in props.items():
        if key not in out and isinstance(sub, dict) and "default" in sub:
            out[key] = sub["default"]
    return out
