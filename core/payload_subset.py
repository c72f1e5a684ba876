"""A jsonschema-free "valid" verdict for the common subset of JSON Schema Draft 2020-12.

Importing jsonschema costs a `cpf resume` more than the rest of its imports together, and
almost every event or input schema is a small object of typed, enumerated, bounded fields.
`accepts(schema, data)` answers True only when it is sure that jsonschema would find both
the schema valid (its meta-schema, formats asserted, as `check_schema` does) and `data`
valid against it. Anything it does not fully understand (a keyword outside the subset,
`format`, `$ref`, `$schema`, a value of an unexpected type) or any error it finds answers
False, and `core.payload.check_payload` asks jsonschema, so every message and path a user
sees is still jsonschema's. Each check mirrors the code of jsonschema's own keyword
(jsonschema/_keywords.py, _types.py, _utils.equal), and tests/test_payload_subset.py
holds it to jsonschema as the oracle on generated schemas and payloads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_COUNTS = frozenset(
    {"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"}
)
_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_TEXTS = frozenset({"title", "description", "$comment"})
_FLAGS = frozenset({"deprecated", "readOnly", "writeOnly", "uniqueItems"})


class _Unsure(Exception):
    """The subset cannot decide: let jsonschema answer."""


def accepts(schema: Any, data: Any) -> bool:
    """True when `schema` is a valid Draft 2020-12 schema within the subset and `data`
    is valid against it; False when unsure or invalid (then ask jsonschema)."""
    try:
        return _schema_ok(schema) and _valid(schema, data)
    except Exception:  # _Unsure, a RecursionError, an odd value's comparison: ask jsonschema
        return False


# --- the schema (what the 2020-12 meta-schema asks of each keyword) ------------------------


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    # jsonschema: any numbers.Number but bool; only int and float are decided here.
    if type(value) in (int, float):
        return True
    if value is None or isinstance(value, (bool, str, list, dict)):
        return False
    raise _Unsure


def _schema_ok(schema: Any) -> bool:
    if isinstance(schema, bool):
        return True
    if type(schema) is not dict:
        return False
    for key, value in schema.items():
        if key in _COUNTS:
            if not (_is_integer(value) and value >= 0):
                return False
        elif key in _BOUNDS:
            if not _is_number(value):
                return False
        elif key == "type":
            if isinstance(value, str):
                if value not in _SIMPLE_TYPES:
                    return False
            elif not (
                type(value) is list
                and value
                and all(isinstance(t, str) and t in _SIMPLE_TYPES for t in value)
                and len(set(value)) == len(value)
            ):
                return False
        elif key == "properties":
            if type(value) is not dict or not all(
                type(name) is str and _schema_ok(sub) for name, sub in value.items()
            ):
                return False
        elif key in ("additionalProperties", "items"):
            if not _schema_ok(value):
                return False
        elif key == "required":
            if not (
                type(value) is list
                and all(isinstance(name, str) for name in value)
                and len(set(value)) == len(value)
            ):
                return False
        elif key == "pattern":
            if not isinstance(value, str):
                return False
            try:
                re.compile(value)  # the meta-schema's `format: regex`, as jsonschema checks it
            except Exception:
                return False
        elif key in _TEXTS:
            if not isinstance(value, str):
                return False
        elif key in _FLAGS:
            if not isinstance(value, bool):
                return False
        elif key == "enum":
            if type(value) is not list or not _json_data(value):
                return False
        elif key == "const":
            if not _json_data(value):
                return False
        elif key == "examples":
            if type(value) is not list:
                return False
        elif key != "default":
            return False  # outside the subset (format, $ref, anyOf, ...)
    return True


def _json_data(value: Any) -> bool:
    """Plain JSON (str keys, finite numbers): what jsonschema sees of it after the JSON
    round trip of `core.payload` is exactly `value`."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if t is float:
        return value - value == 0  # not NaN nor infinite
    if t is list:
        return all(_json_data(each) for each in value)
    if t is dict:
        return all(type(k) is str and _json_data(v) for k, v in value.items())
    return False


# --- the data ---------------------------------------------------------------------------------


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return _is_number(value)
    if name == "integer":
        return _is_integer(value) if _is_number(value) else False
    raise _Unsure


def _valid(schema: Any, value: Any) -> bool:
    if schema is True:
        return True
    if schema is False:
        return False
    get = schema.get
    types = get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is_type(value, name) for name in names):
            return False
    if "enum" in schema and not any(_equal(each, value) for each in schema["enum"]):
        return False
    if "const" in schema and not _equal(value, schema["const"]):
        return False
    if isinstance(value, str):
        if len(value) < get("minLength", 0) or len(value) > get("maxLength", len(value)):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
    elif isinstance(value, dict):
        return _valid_object(schema, value)
    elif isinstance(value, list):
        return _valid_array(schema, value)
    elif _is_number(value):
        return _valid_number(schema, value)
    return True


def _valid_number(schema: dict[str, Any], value: Any) -> bool:
    get = schema.get
    if "minimum" in schema and value < get("minimum"):
        return False
    if "maximum" in schema and value > get("maximum"):
        return False
    if "exclusiveMinimum" in schema and value <= get("exclusiveMinimum"):
        return False
    return not ("exclusiveMaximum" in schema and value >= get("exclusiveMaximum"))


def _valid_object(schema: dict[str, Any], value: dict[Any, Any]) -> bool:
    get = schema.get
    if len(value) < get("minProperties", 0) or len(value) > get("maxProperties", len(value)):
        return False
    if not all(name in value for name in get("required", ())):
        return False
    props = get("properties", {})
    for name, sub in props.items():
        if name in value and not _valid(sub, value[name]):
            return False
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return all(_valid(extra, v) for k, v in value.items() if k not in props)
    return True


def _valid_array(schema: dict[str, Any], value: list[Any]) -> bool:
    get = schema.get
    if len(value) < get("minItems", 0) or len(value) > get("maxItems", len(value)):
        return False
    if "items" in schema:
        items = schema["items"]
        if not all(_valid(items, each) for each in value):
            return False
    return get("uniqueItems") is not True or _unique(value)


def _unique(items: list[Any]) -> bool:
    # Only lists of strings or of numbers (where 1 == 1.0, as in jsonschema's `uniq`).
    if all(isinstance(each, str) for each in items) or all(
        type(each) in (int, float) for each in items
    ):
        return len(set(items)) == len(items)
    raise _Unsure


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's `_utils.equal`: bools are not 1 and 0, 1 equals 1.0, containers compare
    element-wise with the same rule."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(
            key in two and _equal(item, two[key]) for key, item in one.items()
        )
    if isinstance(one, bool) or isinstance(two, bool):
        return False  # `one is two` was not true: True vs 1, False vs 0.0, True vs False
    return bool(one == two)
