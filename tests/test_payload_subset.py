"""The jsonschema-free fast path of `check_payload` (core/payload_subset.py), held to
jsonschema itself as the oracle.

Properties, on generated schemas (the subset, hostile variants of it, keywords outside it)
and generated payloads (drawn to fit the schema, or any JSON):
- `check_payload` returns exactly jsonschema's errors (paths and messages), always;
- the fast path says "valid" only when jsonschema finds the schema and the payload valid;
- within the subset it decides every valid payload itself (no jsonschema import).

`pytest --hypothesis-profile=deep tests/test_payload_subset.py` runs many more examples.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

from hostile import examples
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.payload import _jsonschema_errors, check_payload
from core.payload_subset import accepts


def budget(ci: int) -> settings:
    return settings(
        max_examples=examples(ci),
        deadline=None,  # the first example imports jsonschema
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- values ---------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "", "é", "1", "$ref"])
# Values where jsonschema's equality differs from Python's: True/1/1.0, False/0/0.0/-0.0.
TRICKY = st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, 1.5, True, False, None, "", "1", "a"])
SCALARS = st.one_of(
    TRICKY,
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),  # code points, non-BMP included: lengths count code points
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(NAMES, inner, max_size=4)),
    max_leaves=12,
)
COUNTS = st.one_of(st.integers(min_value=0, max_value=6), st.sampled_from([0.0, 2.0, 3.0]))
BOUNDS = st.one_of(
    st.integers(min_value=-10, max_value=10),
    st.floats(min_value=-10, max_value=10, allow_nan=False),
    st.sampled_from([2**63, -(2**64), 0.5, -0.0]),
)
PATTERNS = st.sampled_from(["^a", "b$", "[0-9]+", "^$", "é", "^.{2}$", "a|b"])
TYPES = ["array", "boolean", "integer", "null", "number", "object", "string"]


def subset_schemas(*, hostile: bool) -> st.SearchStrategy[Any]:
    """Schemas of the subset; `hostile` adds invalid keyword values, keywords outside the
    subset and non-JSON values (every one must be left to jsonschema)."""

    def keywords(inner: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
        kw: dict[str, st.SearchStrategy[Any]] = {
            "type": st.one_of(
                st.sampled_from(TYPES),
                st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True),
            ),
            "enum": st.lists(JSON, max_size=4),
            "const": JSON,
            "properties": st.dictionaries(NAMES, inner, max_size=3),
            "required": st.lists(NAMES, max_size=3, unique=True),
            "additionalProperties": inner,
            "items": inner,
            "pattern": PATTERNS,
            "uniqueItems": st.booleans(),
            "title": st.text(max_size=3),
            "description": st.text(max_size=3),
            "$comment": st.text(max_size=3),
            "default": JSON,
            "examples": st.lists(JSON, max_size=2),
            "deprecated": st.booleans(),
            "readOnly": st.booleans(),
            "writeOnly": st.booleans(),
        }
        for name in ("minLength", "maxLength", "minItems", "maxItems"):
            kw[name] = COUNTS
        for name in ("minProperties", "maxProperties"):
            kw[name] = COUNTS
        for name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            kw[name] = BOUNDS
        if hostile:
            bad = st.one_of(
                JSON,
                st.sampled_from(["strin", "(", [], ["string", "string"], -1, 1.5, True, "3"]),
                st.sampled_from([(1, 2), {1: "a"}, float("nan"), math.inf]),
            )
            kw = {name: st.one_of(good, bad) for name, good in kw.items()}
            kw["format"] = st.sampled_from(["email", "date", "uri", "nope"])
            kw["$ref"] = st.sampled_from(["#", "#/properties/a", "nowhere"])
            kw["anyOf"] = st.lists(inner, min_size=1, max_size=2)
            kw["prefixItems"] = st.lists(inner, max_size=2)
            kw["patternProperties"] = st.dictionaries(PATTERNS, inner, max_size=2)
            kw["multipleOf"] = st.sampled_from([2, 0.5, 0.1])
            kw["$schema"] = st.just("https://json-schema.org/draft/2020-12/schema")
        return kw

    def schema(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        kw = keywords(inner)
        return st.fixed_dictionaries({}, optional=kw)

    leaves = st.one_of(st.booleans(), st.just({}), schema(st.booleans()))
    return st.recursive(leaves, schema, max_leaves=6)


@st.composite
def instances(draw: st.DrawFn, schema: Any, depth: int = 0) -> Any:
    """A payload shaped by `schema` (often valid, sometimes just off), or any JSON."""
    if not isinstance(schema, dict) or depth > 4 or draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    if "const" in schema and draw(st.booleans()):
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and draw(st.booleans()):
        return draw(st.sampled_from(enum))
    types = schema.get("type", TYPES)
    types = [types] if isinstance(types, str) else types
    types = [t for t in types if t in TYPES] if isinstance(types, list) else []
    kind = draw(st.sampled_from(types or TYPES))

    def count(name: str, default: int) -> int:
        value = schema.get(name, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return max(0, min(int(value), 6)) if ok and math.isfinite(value) else default

    low, high = count("minLength", 0), count("maxLength", 6)
    if kind == "string":
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and draw(st.booleans()):
            try:
                return draw(st.from_regex(pattern, fullmatch=False))
            except Exception:
                pass
        return draw(st.text(min_size=low, max_size=max(low, high)))
    if kind in ("integer", "number"):
        bound = schema.get("minimum", schema.get("exclusiveMinimum", -10))
        bound = bound if isinstance(bound, (int, float)) and math.isfinite(bound) else -10
        if kind == "integer" or draw(st.booleans()):
            value = draw(st.integers(min_value=int(bound) - 1, max_value=int(bound) + 20))
            return float(value) if draw(st.integers(0, 4)) == 0 else value  # 3.0 is an integer
        low_f = float(bound) - 1
        return draw(st.floats(min_value=low_f, max_value=low_f + 21))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "null":
        return None
    if kind == "array":
        low, high = count("minItems", 0), count("maxItems", 4)
        n = draw(st.integers(low, max(low, high)))
        return [draw(instances(schema.get("items", True), depth + 1)) for _ in range(n)]
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
    names += [n for n in props if draw(st.booleans())]
    out = {
        n: draw(instances(props.get(n, schema.get("additionalProperties", True)), depth + 1))
        for n in names
    }
    if draw(st.integers(0, 3)) == 0:
        extra = draw(NAMES)
        out[extra] = draw(instances(schema.get("additionalProperties", True), depth + 1))
    return out


# --- properties -----------------------------------------------------------------------------


@budget(300)
@given(data=st.data(), schema=subset_schemas(hostile=True))
def test_check_payload_is_jsonschema(data: st.DataObject, schema: Any) -> None:
    """Whatever the schema and payload, `check_payload` answers what jsonschema answers."""
    payload = data.draw(instances(schema))
    if not schema:
        return  # check_payload accepts anything under an empty or false schema
    oracle = _outcome(_jsonschema_errors, schema, payload)
    assert _outcome(check_payload, schema, payload) == oracle
    fast = accepts(schema, payload)
    event(f"fast path: {fast}, valid: {oracle == []}")
    if fast:
        assert oracle == [], (schema, payload)


def _outcome(check: Any, schema: Any, payload: Any) -> Any:
    """The errors, or the exception jsonschema raises (an unresolvable `$ref`)."""
    try:
        return check(schema, payload)
    except Exception as exc:
        return type(exc).__name__


@budget(300)
@given(data=st.data(), schema=subset_schemas(hostile=False))
def test_the_subset_decides_valid_payloads_itself(data: st.DataObject, schema: Any) -> None:
    """Within the subset the fast path is exact: valid for jsonschema <=> accepted (the
    one exception: uniqueItems over a list that mixes kinds of values)."""
    payload = data.draw(instances(schema))
    oracle = _jsonschema_errors(schema, payload) if schema is not False else ["false"]
    event(f"valid: {oracle == []}")
    if accepts(schema, payload):
        assert oracle == [], (schema, payload)
    elif oracle == [] and not _mixed_unique(schema, payload):
        raise AssertionError(f"left to jsonschema: {schema!r} {payload!r}")


def _mixed_unique(schema: Any, payload: Any) -> bool:
    """A `uniqueItems: true` somewhere in the schema and a list in the payload that is not
    all strings nor all numbers: the one case the subset leaves to jsonschema."""

    def lists(value: Any) -> list[list[Any]]:
        if isinstance(value, list):
            return [value, *(x for item in value for x in lists(item))]
        if isinstance(value, dict):
            return [x for item in value.values() for x in lists(item)]
        return []

    def unique_somewhere(s: Any) -> bool:
        if not isinstance(s, dict):
            return False
        subs = [s.get("items"), s.get("additionalProperties")]
        subs += list(s.get("properties", {}).values())
        return s.get("uniqueItems") is True or any(unique_somewhere(x) for x in subs)

    def plain(items: list[Any]) -> bool:
        return all(isinstance(x, str) for x in items) or all(type(x) in (int, float) for x in items)

    return unique_somewhere(schema) and not all(plain(x) for x in lists(payload))


# --- the cases that matter, by example ------------------------------------------------------

APPROVAL = {
    "type": "object",
    "required": ["decision"],
    "properties": {
        "decision": {"type": "string", "enum": ["approve", "reject", "request_changes"]},
        "comment": {"type": "string", "maxLength": 500},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "additionalProperties": False,
}


def test_jsonschema_semantics_at_the_edges() -> None:
    """bool is not an integer, 1.0 is; enum tells True from 1 but not 1 from 1.0; a
    length counts code points; a schema the meta-schema rejects is never "valid"."""
    cases: list[tuple[Any, Any, bool]] = [
        ({"type": "integer"}, 1.0, True),
        ({"type": "integer"}, True, False),
        ({"type": "number"}, False, False),
        ({"enum": [1]}, 1.0, True),
        ({"enum": [1]}, True, False),
        ({"enum": [[0]]}, [False], False),
        ({"const": {"a": [1.0]}}, {"a": [1]}, True),
        ({"type": "string", "maxLength": 1}, "😀", True),
        ({"type": "string", "minLength": 2.0}, "ab", True),
        ({"type": "array", "uniqueItems": True}, [1, 1.0], False),
        ({"type": "strin"}, "x", False),
        ({"required": ["a", "a"]}, {"a": 1}, False),
        ({"minLength": -1}, "x", False),
        ({"minLength": True}, "x", False),
        ({"pattern": "("}, "x", False),
        ({"properties": {"a": {"type": 3}}}, {}, False),
        ({"type": "string", "format": "email"}, "a@b.c", False),  # formats: jsonschema's
        (APPROVAL, {"decision": "approve", "comment": "ok", "score": 7}, True),
        (APPROVAL, {"decision": "approve", "extra": 1}, False),
    ]
    for schema, payload, fast in cases:
        assert accepts(schema, payload) is fast, (schema, payload)
        assert check_payload(schema, payload) == _jsonschema_errors(schema, payload)


def test_resume_of_an_approval_schema_does_not_import_jsonschema() -> None:
    """The import budget of the validator itself (the CLI's is in test_cli_extras.py)."""
    code = (
        "import sys\n"
        "from core.payload import check_payload\n"
        f"assert check_payload({APPROVAL!r}, {{'decision': 'reject'}}) == []\n"
        "assert 'jsonschema' not in sys.modules\n"
        f"errors = check_payload({APPROVAL!r}, {{'decision': 'maybe'}})\n"
        "assert 'jsonschema' in sys.modules and errors[0].path == ('decision',), errors\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_ref_to_nowhere_is_the_schemas_error() -> None:
    """jsonschema raises on a `$ref` it cannot resolve; the payload check says so as one
    error at the root (an event or input refusal, never an internal error)."""
    for ref in ("#/nowhere", "elsewhere.json", "https://example.com/s.json"):
        (error,) = check_payload({"properties": {"a": {"$ref": ref}}}, {"a": 1})
        assert error.path == () and "does not resolve" in error.message, error
        assert ref.removeprefix("#") in error.message
