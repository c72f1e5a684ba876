"""JSON Schema -> field tree, and the pure helpers the form widgets use.

No Textual here: this module is unit-tested on its own. The tree describes *how to edit* a
payload (which widget, which label, which default); whether a payload is valid is decided by
the engine's one validator, `core.payload.check_payload`, never here. The only checks this
module makes itself are the ones a validator cannot make on a payload: turning the text a
person typed into a JSON value (coercion) and the live, per-field hints shown while typing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "MISSING",
    "Field",
    "Option",
    "Variant",
    "build",
    "check_text",
    "coerce_text",
    "format_value",
    "humanize",
    "limitations",
    "match_variant",
    "redact",
    "supported",
]


class _Missing:
    """Marks "no value": the field is left out of the payload."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()

# Field kinds.
STRING = "string"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
ENUM = "enum"  # one of fixed values (enum, or oneOf/anyOf of consts)
CONST = "const"  # fixed value, shown read-only
OBJECT = "object"
ARRAY = "array"  # repeatable rows of `item`
MULTISELECT = "multiselect"  # array of enum values
VARIANT = "variant"  # oneOf/anyOf: pick one alternative, edit it
JSON = "json"  # anything the form cannot express: edited as raw JSON

SCALARS = (STRING, INTEGER, NUMBER)

# Strings longer than this (by maxLength) get a multi-line editor.
MULTILINE_MAX_LENGTH = 200
# Formats with a live check (and, for some, a masked editor).
FORMATS = ("email", "uri", "uuid", "date", "date-time", "time")


@dataclass(frozen=True)
class Option:
    value: Any
    label: str
    description: str = ""


@dataclass
class Variant:
    title: str
    field: Field
    schema: dict[str, Any]  # the alternative + its parent's shared keywords + root $defs
    tag: Any = MISSING  # the discriminator's const value for this variant, if any


@dataclass
class Field:
    kind: str
    key: str | int | None = None  # property name; None for the root, items and variants
    schema: dict[str, Any] = field(default_factory=dict)  # the resolved subschema
    title: str = ""
    description: str = ""
    required: bool = False
    default: Any = MISSING
    placeholder: str = ""
    read_only: bool = False
    secret: bool = False
    nullable: bool = False
    format: str | None = None
    multiline: bool = False
    widget: str | None = None  # x-widget hint
    options: list[Option] = field(default_factory=list)
    const: Any = MISSING
    children: list[Field] = field(default_factory=list)
    item: Field | None = None
    variants: list[Variant] = field(default_factory=list)
    discriminator: str | None = None
    reason: str = ""  # why a JSON field could not be a form field

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def child(self, key: str) -> Field | None:
        return next((c for c in self.children if c.key == key), None)

    def walk(self) -> list[Field]:
        """This field and every field below it, depth first (variants included)."""
        out = [self]
        for c in self.children:
            out += c.walk()
        if self.item is not None:
            out += self.item.walk()
        for v in self.variants:
            out += v.field.walk()
        return out


# ---------------------------------------------------------------------------------------------
# Building the tree


def build(schema: Any) -> Field:
    """The field tree of `schema` (the root field; an object for any form-able schema)."""
    return _Builder(schema).build()


def supported(schema: Any) -> bool:
    """True when the schema can be shown as a form (a root object; parts may be raw JSON)."""
    try:
        return build(schema).kind == OBJECT
    except Exception:  # a schema broken beyond repair still gets the raw JSON editor
        return False


def limitations(schema: Any) -> list[str]:
    """What the form cannot express, one line each, "<location>: <what>".

    JSON fields (edited as raw JSON inside the form) and keywords that only the validator
    enforces (conditionals, dependencies, ...) are listed. [] means the form covers it all.
    """
    try:
        builder = _Builder(schema)
        builder.build()
    except Exception as exc:  # pragma: no cover - defensive
        return [f"$: {exc}"]
    return builder.notes


_IGNORED_KEYWORDS = {
    "if": "conditional (if/then/else) is checked on submit only",
    "dependentRequired": "dependentRequired is checked on submit only",
    "dependentSchemas": "dependentSchemas is checked on submit only",
    "dependencies": "dependencies is checked on submit only",
    "not": "'not' is checked on submit only",
    "patternProperties": "patternProperties cannot be edited in the form",
    "propertyNames": "propertyNames is checked on submit only",
    "contains": "'contains' is checked on submit only",
    "unevaluatedProperties": "unevaluatedProperties is checked on submit only",
}

_NULL_SCHEMAS = ({"type": "null"}, {"const": None}, {"enum": [None]})


class _Builder:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.notes: list[str] = []

    def build(self) -> Field:
        root = self.field(self.root, key=None, required=True, stack=frozenset({"#"}), loc="$")
        if root.kind != OBJECT:
            self.notes.insert(0, "$: the root is not an object; only raw JSON can edit it")
        return root

    # -- resolution -------------------------------------------------------------------------

    def pointer(self, ref: str) -> Any:
        """The target of a local JSON pointer ('#/$defs/x'), or MISSING."""
        node = self.root
        frag = unquote(ref[1:])
        if frag in ("", "/"):
            return node
        if not frag.startswith("/"):
            return MISSING  # an $anchor name: not supported
        for raw in frag[1:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return MISSING
        return node

    def deref(self, node: Any, stack: frozenset[str]) -> tuple[Any, frozenset[str], str]:
        """Follow `$ref`s (siblings override the target). Returns (node, stack, problem)."""
        hops = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                return node, stack, f"external $ref {ref!r} (only local refs are resolved)"
            if ref in stack:
                return node, stack, f"recursive $ref {ref!r}"
            target = self.pointer(ref)
            if target is MISSING or not isinstance(target, dict | bool):
                return node, stack, f"unresolvable $ref {ref!r}"
            hops += 1
            if hops > 64:  # pragma: no cover - a chain this long is a cycle in disguise
                return node, stack, f"$ref chain too long at {ref!r}"
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if target is True:
                target = {}
            elif target is False:
                return node, stack, f"$ref {ref!r} allows no value"
            node = {**target, **siblings}
            stack = stack | {ref}
        if isinstance(node, dict) and isinstance(node.get("allOf"), list):
            node, stack, problem = self.merge_all_of(node, stack)
            if problem:
                return node, stack, problem
        return node, stack, ""

    def merge_all_of(
        self, node: dict[str, Any], stack: frozenset[str]
    ) -> tuple[dict[str, Any], frozenset[str], str]:
        """Flatten `allOf` into one schema: properties and required are united, the node's
        own keywords win, then the first part that sets a keyword. The validator still
        checks the real `allOf`, so an approximate merge can only cost a nicer widget."""
        out = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            part, stack, problem = self.deref(part, stack)
            if problem:
                return node, stack, problem
            if part is True or not isinstance(part, dict):
                continue
            out = merge_schemas(out, part)
        return out, stack, ""

    # -- fields ------------------------------------------------------------------------------

    def json_field(self, node: Any, key: Any, required: bool, loc: str, reason: str) -> Field:
        base = node if isinstance(node, dict) else {}
        f = self.common(Field(JSON, key=key, schema=base, required=required), base, key)
        f.reason = reason
        self.notes.append(f"{loc}: {reason}; edited as raw JSON")
        return f

    def common(self, f: Field, node: dict[str, Any], key: Any) -> Field:
        title = node.get("title")
        f.title = title if isinstance(title, str) and title else humanize(key)
        desc = node.get("x-help", node.get("description"))
        f.description = desc if isinstance(desc, str) else ""
        if "default" in node:
            f.default = node["default"]
        examples = node.get("examples")
        placeholder = node.get("x-placeholder")
        if isinstance(placeholder, str):
            f.placeholder = placeholder
        elif isinstance(examples, list) and examples:
            ex = examples[0]
            f.placeholder = ex if isinstance(ex, str) else json.dumps(ex)
        f.read_only = node.get("readOnly") is True
        f.secret = (
            node.get("writeOnly") is True
            or node.get("x-secret") is True
            or node.get("format") == "password"
        )
        widget = node.get("x-widget")
        f.widget = widget if isinstance(widget, str) else None
        return f

    def field(
        self, node: Any, *, key: Any, required: bool, stack: frozenset[str], loc: str
    ) -> Field:
        if node is True or node == {}:
            return self.json_field({}, key, required, loc, "any JSON value")
        if node is False:
            return self.json_field({}, key, required, loc, "no value is allowed")
        if not isinstance(node, dict):
            return self.json_field({}, key, required, loc, "not a schema")
        node, stack, problem = self.deref(node, stack)
        if problem:
            return self.json_field(node, key, required, loc, problem)
        for kw, note in _IGNORED_KEYWORDS.items():
            if kw in node:
                self.notes.append(f"{loc}: {note}")

        if "const" in node:
            f = self.common(Field(CONST, key=key, schema=node, required=required), node, key)
            f.const = node["const"]
            return f
        if isinstance(node.get("enum"), list) and node["enum"]:
            return self.enum_field(node, key, required)
        for kw in ("oneOf", "anyOf"):
            alts = node.get(kw)
            if isinstance(alts, list) and alts:
                return self.alternatives(node, kw, alts, key, required, stack, loc)

        types = node.get("type")
        nullable = False
        if isinstance(types, list):
            nullable = "null" in types
            others = [t for t in types if t != "null"]
            if not others:
                f = self.common(Field(CONST, key=key, schema=node, required=required), node, key)
                f.const = None
                return f
            if len(others) > 1:
                alts = [{"type": t} for t in others]
                rest = {k: v for k, v in node.items() if k != "type"}
                if nullable:
                    rest["type"] = [*others, "null"]
                return self.variant_field(rest, alts, key, required, stack, loc, nullable)
            types = others[0]
            node = {**node, "type": types}
        if types is None:
            types = _infer_type(node)
        f = self.typed(node, types, key, required, stack, loc)
        f.nullable = f.nullable or nullable
        return f

    def typed(
        self,
        node: dict[str, Any],
        t: Any,
        key: Any,
        required: bool,
        stack: frozenset[str],
        loc: str,
    ) -> Field:
        if t in SCALARS:
            f = self.common(Field(t, key=key, schema=node, required=required), node, key)
            fmt = node.get("format")
            f.format = fmt if isinstance(fmt, str) else None
            if t == STRING:
                max_len = node.get("maxLength")
                f.multiline = (
                    node.get("x-multiline") is True
                    or f.widget == "textarea"
                    or "contentMediaType" in node
                    or (isinstance(max_len, int) and max_len > MULTILINE_MAX_LENGTH)
                )
            return f
        if t == BOOLEAN:
            return self.common(Field(BOOLEAN, key=key, schema=node, required=required), node, key)
        if t == "null":
            f = self.common(Field(CONST, key=key, schema=node, required=required), node, key)
            f.const = None
            return f
        if t == OBJECT:
            return self.object_field(node, key, required, stack, loc)
        if t == ARRAY:
            return self.array_field(node, key, required, stack, loc)
        if t is None:
            return self.json_field(node, key, required, loc, "no type given")
        return self.json_field(node, key, required, loc, f"unknown type {t!r}")

    def enum_field(self, node: dict[str, Any], key: Any, required: bool) -> Field:
        f = self.common(Field(ENUM, key=key, schema=node, required=required), node, key)
        labels = node.get("x-enumNames") or node.get("enumNames")
        values = node["enum"]
        if not (isinstance(labels, list) and len(labels) == len(values)):
            labels = [format_value(v) for v in values]
        f.options = [Option(v, str(lbl)) for v, lbl in zip(values, labels, strict=True)]
        return f

    def alternatives(
        self,
        node: dict[str, Any],
        kw: str,
        alts: list[Any],
        key: Any,
        required: bool,
        stack: frozenset[str],
        loc: str,
    ) -> Field:
        rest = {k: v for k, v in node.items() if k != kw}
        resolved = []
        for alt in alts:
            r, _, problem = self.deref(alt, stack)
            if problem:
                return self.json_field(node, key, required, loc, problem)
            resolved.append(r if isinstance(r, dict) else {})
        # oneOf of {const, title}: a labelled choice.
        if all(_const_of(r) is not MISSING for r in resolved):
            f = self.common(Field(ENUM, key=key, schema=node, required=required), rest, key)
            f.options = [
                Option(
                    _const_of(r),
                    r.get("title")
                    if isinstance(r.get("title"), str)
                    else format_value(_const_of(r)),
                    r.get("description", "") if isinstance(r.get("description"), str) else "",
                )
                for r in resolved
            ]
            return f
        # Alternatives that only add constraints to the node's own properties (e.g.
        # `oneOf: [{required: [a]}, {required: [b]}]`): render the node, the validator decides.
        if ("properties" in rest or "type" in rest) and all(
            _is_constraint_only(r) for r in resolved
        ):
            self.notes.append(f"{loc}: {kw} of constraints is checked on submit only")
            return self.field(rest, key=key, required=required, stack=stack, loc=loc)
        # Optional[T] (pydantic's anyOf [T, null]): a nullable T.
        non_null = [r for r in resolved if r not in _NULL_SCHEMAS]
        if len(non_null) == 1 and len(resolved) == 2:
            merged = merge_schemas(rest, non_null[0])
            f = self.field(merged, key=key, required=required, stack=stack, loc=loc)
            f.nullable = True
            return f
        return self.variant_field(
            rest, alts, key, required, stack, loc, len(non_null) < len(resolved)
        )

    def variant_field(
        self,
        rest: dict[str, Any],
        alts: list[Any],
        key: Any,
        required: bool,
        stack: frozenset[str],
        loc: str,
        nullable: bool,
    ) -> Field:
        f = self.common(Field(VARIANT, key=key, schema=rest, required=required), rest, key)
        f.nullable = nullable
        # Shared keywords of the parent (e.g. common properties) apply to every alternative,
        # but its presentation keywords belong to the parent field.
        shared = {
            k: v
            for k, v in rest.items()
            if k not in ("title", "description", "default", "examples", "x-help", "type")
            or (k == "type" and not isinstance(v, list))
        }
        seen: list[str] = []
        for i, alt in enumerate(alts):
            resolved, sub_stack, problem = self.deref(alt, stack)
            if problem or not isinstance(resolved, dict):
                resolved = alt if isinstance(alt, dict) else {}
            if resolved in _NULL_SCHEMAS:
                continue  # null is the field's null toggle
            merged = merge_schemas(shared, resolved) if shared else resolved
            fingerprint = json.dumps(merged, sort_keys=True, default=str)
            if fingerprint in seen:
                continue  # look-alike variants collapse into one
            seen.append(fingerprint)
            sub = self.field(merged, key=None, required=True, stack=sub_stack, loc=f"{loc}<{i}>")
            title = resolved.get("title") if isinstance(resolved.get("title"), str) else ""
            root = self.root if isinstance(self.root, dict) else {}
            f.variants.append(Variant(title or "", sub, _standalone(merged, root)))
        f.discriminator = _discriminator(rest, f.variants)
        for i, v in enumerate(f.variants):
            if f.discriminator is not None:
                tag_field = v.field.child(f.discriminator)
                v.tag = tag_field.const if tag_field is not None else MISSING
            if not v.title:
                v.title = _variant_title(v, i)
        _disambiguate(f.variants)
        return f

    def object_field(
        self, node: dict[str, Any], key: Any, required: bool, stack: frozenset[str], loc: str
    ) -> Field:
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if not isinstance(props, dict) or not props:
            if extra is False:
                f = self.common(Field(OBJECT, key=key, schema=node, required=required), node, key)
                return f
            return self.json_field(node, key, required, loc, "free-form object")
        if isinstance(extra, dict) and extra:
            self.notes.append(f"{loc}: additional properties cannot be added in the form")
        f = self.common(Field(OBJECT, key=key, schema=node, required=required), node, key)
        req = node.get("required")
        req_set = set(req) if isinstance(req, list) else set()
        for name in _ordered(props, node.get("x-order")):
            sub_loc = f"{loc}.{name}" if _plain(name) else f"{loc}[{name!r}]"
            f.children.append(
                self.field(
                    props[name], key=name, required=name in req_set, stack=stack, loc=sub_loc
                )
            )
        return f

    def array_field(
        self, node: dict[str, Any], key: Any, required: bool, stack: frozenset[str], loc: str
    ) -> Field:
        if "prefixItems" in node or isinstance(node.get("items"), list):
            return self.json_field(node, key, required, loc, "tuple arrays (prefixItems)")
        items = node.get("items")
        if items is None or items is True or items == {}:
            return self.json_field(node, key, required, loc, "array of any values")
        resolved, sub_stack, problem = self.deref(items, stack)
        if problem:
            return self.json_field(node, key, required, loc, problem)
        item = self.field(resolved, key=None, required=True, stack=sub_stack, loc=f"{loc}[]")
        if item.kind == ENUM and not item.nullable:
            f = self.common(Field(MULTISELECT, key=key, schema=node, required=required), node, key)
            f.options = item.options
            f.item = item
            return f
        f = self.common(Field(ARRAY, key=key, schema=node, required=required), node, key)
        f.item = item
        if item.title == humanize(None):
            item.title = _singular(f.title)
        return f


def merge_schemas(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` plus `extra`: properties and required united; other keywords: base wins."""
    out = dict(base)
    for k, v in extra.items():
        if k == "properties" and isinstance(v, dict):
            props = dict(out.get("properties") or {})
            for name, sub in v.items():
                props.setdefault(name, sub)
            out["properties"] = props
        elif k == "required" and isinstance(v, list):
            req = list(out.get("required") or [])
            out["required"] = req + [r for r in v if r not in req]
        else:
            out.setdefault(k, v)
    return out


def _infer_type(node: dict[str, Any]) -> str | None:
    if any(k in node for k in ("properties", "required", "additionalProperties")):
        return OBJECT
    if any(k in node for k in ("items", "prefixItems", "minItems", "maxItems", "uniqueItems")):
        return ARRAY
    if any(k in node for k in ("minLength", "maxLength", "pattern", "format")):
        return STRING
    if any(
        k in node
        for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
    ):
        return NUMBER
    return None


def _const_of(node: dict[str, Any]) -> Any:
    if "const" in node:
        return node["const"]
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) == 1:
        return enum[0]
    return MISSING


_CONSTRAINT_KEYS = {
    "required", "minProperties", "maxProperties", "dependentRequired", "not", "title",
    "description", "$comment",
}  # fmt: skip


def _is_constraint_only(node: dict[str, Any]) -> bool:
    return bool(node) and set(node) <= _CONSTRAINT_KEYS


def _discriminator(rest: dict[str, Any], variants: list[Variant]) -> str | None:
    declared = rest.get("discriminator")
    if isinstance(declared, dict) and isinstance(declared.get("propertyName"), str):
        return declared["propertyName"]
    if len(variants) < 2 or any(v.field.kind != OBJECT for v in variants):
        return None
    for candidate in variants[0].field.children:
        tags = []
        for v in variants:
            sub = v.field.child(candidate.key) if isinstance(candidate.key, str) else None
            if sub is None or sub.kind != CONST:
                break
            tags.append(json.dumps(sub.const, sort_keys=True))
        else:
            if len(set(tags)) == len(tags):
                return str(candidate.key)
    return None


def _variant_title(v: Variant, index: int) -> str:
    if v.tag is not MISSING:
        return format_value(v.tag)
    f = v.field
    if f.kind in SCALARS or f.kind == BOOLEAN:
        return f"{f.kind} ({f.format})" if f.format else f.kind
    if f.kind == ENUM:
        return (
            "one of "
            + ", ".join(o.label for o in f.options[:3])
            + (", ..." if len(f.options) > 3 else "")
        )
    if f.kind in (ARRAY, MULTISELECT) and f.item is not None:
        return f"list of {_variant_title(Variant('', f.item, {}), index)}"
    if f.kind == CONST:
        return format_value(f.const)
    return f"Option {index + 1}"


def _disambiguate(variants: list[Variant]) -> None:
    counts: dict[str, int] = {}
    for v in variants:
        counts[v.title] = counts.get(v.title, 0) + 1
    for i, v in enumerate(variants):
        if counts[v.title] > 1:
            v.title = f"{v.title} ({i + 1})"


def _ordered(props: dict[str, Any], order: Any) -> list[str]:
    names = list(props)
    if not isinstance(order, list):
        return names
    first = [n for n in order if isinstance(n, str) and n in props]
    return first + [n for n in names if n not in first]


def _plain(name: str) -> bool:
    return name.isidentifier()


def _singular(title: str) -> str:
    if title.endswith("ies") and len(title) > 4:
        return title[:-3] + "y"
    if title.endswith("s") and not title.endswith("ss") and len(title) > 2:
        return title[:-1]
    return "Item"


def humanize(key: Any) -> str:
    """A label from a property name: 'max_retries' / 'maxRetries' -> 'Max retries'."""
    if key is None:
        return "Value"
    if isinstance(key, int):
        return f"#{key + 1}"
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(key))
    text = re.sub(r"[_\-.]+", " ", text).strip()
    if not text:
        return str(key)
    words = text.split()
    # Acronyms (ID, URL) keep their case; other words after the first are lower-cased.
    rest = [w if len(w) > 1 and w.isupper() else w.lower() for w in words[1:]]
    return " ".join([words[0][:1].upper() + words[0][1:], *rest])


def format_value(value: Any) -> str:
    """A JSON value as a label: strings bare, everything else in JSON spelling."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Values


def match_variant(f: Field, value: Any) -> int | None:
    """Index of the variant of `f` that `value` belongs to (None if none fits)."""
    if value is MISSING or not f.variants:
        return None
    if f.discriminator is not None and isinstance(value, dict) and f.discriminator in value:
        for i, v in enumerate(f.variants):
            if v.tag is not MISSING and v.tag == value[f.discriminator]:
                return i
    from core.payload import check_payload

    valid = [
        i
        for i, v in enumerate(f.variants)
        if v.field.kind != JSON and not check_payload(v.schema, value)
    ]
    # The validator ignores `format`; between alternatives it matters ("tomorrow" is a
    # string, but not a date).
    for i in valid:
        sub = f.variants[i].field
        if not (sub.format and isinstance(value, str) and check_format(sub.format, value)):
            return i
    if valid:
        return valid[0]
    for i, v in enumerate(f.variants):
        if _json_type_fits(v.field, value):
            return i
    return None


def _standalone(sub: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """A subschema that can be checked on its own (carries the definitions its $refs use)."""
    out = dict(sub)
    for defs in ("$defs", "definitions"):
        if defs in parent and defs not in out:
            out[defs] = parent[defs]
    return out


def _json_type_fits(f: Field, value: Any) -> bool:
    kind = f.kind
    if kind == STRING:
        return isinstance(value, str)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == OBJECT:
        return isinstance(value, dict)
    if kind in (ARRAY, MULTISELECT):
        return isinstance(value, list)
    if kind == ENUM:
        return any(o.value == value for o in f.options)
    if kind == CONST:
        return f.const == value
    return True


def coerce_text(f: Field, text: str) -> tuple[Any, str]:
    """The JSON value for what was typed into a scalar field: (value, problem).

    Empty text is MISSING. Integers and numbers become ints / floats ("5" -> 5, never "5").
    """
    if text == "" or (f.kind != STRING and not text.strip()):
        return MISSING, ""
    if f.kind == INTEGER:
        try:
            return int(text.strip().replace("_", "")), ""
        except ValueError:
            return MISSING, "Must be a whole number"
    if f.kind == NUMBER:
        cleaned = text.strip().replace("_", "")
        try:
            number = float(cleaned)
        except ValueError:
            return MISSING, "Must be a number"
        if not math.isfinite(number):
            return MISSING, "Must be a finite number"
        if re.fullmatch(r"[-+]?\d+", cleaned):
            return int(cleaned), ""
        return number, ""
    return text, ""


def check_text(f: Field, text: str) -> list[str]:
    """Live hints for a scalar field, in plain words; [] when the text looks fine.

    Shown under the field while editing; the submit-time verdict is the engine's validator.
    """
    value, problem = coerce_text(f, text)
    if problem:
        return [problem]
    if value is MISSING:
        return []
    s = f.schema
    out: list[str] = []
    if f.kind == STRING:
        n = len(value)
        lo, hi = s.get("minLength"), s.get("maxLength")
        if isinstance(lo, int) and n < lo:
            out.append(f"Must be at least {lo} character{'s' if lo != 1 else ''}")
        if isinstance(hi, int) and n > hi:
            out.append(f"Must be at most {hi} character{'s' if hi != 1 else ''}")
        pattern = s.get("pattern")
        if isinstance(pattern, str):
            try:
                if re.search(pattern, value) is None:
                    out.append(f"Must match the pattern {pattern}")
            except re.error:
                pass
        problem = check_format(f.format, value)
        if problem:
            out.append(problem)
    else:
        out += _range_problems(s, value)
    return out


def _range_problems(s: dict[str, Any], value: float) -> list[str]:
    out = []
    lo, hi = s.get("minimum"), s.get("maximum")
    xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    if _num(lo) and value < lo:
        out.append(f"Must be at least {format_value(lo)}")
    if _num(hi) and value > hi:
        out.append(f"Must be at most {format_value(hi)}")
    if _num(xlo) and value <= xlo:
        out.append(f"Must be greater than {format_value(xlo)}")
    if _num(xhi) and value >= xhi:
        out.append(f"Must be less than {format_value(xhi)}")
    step = s.get("multipleOf")
    if _num(step) and step > 0:
        quotient = value / step
        if not math.isclose(quotient, round(quotient), rel_tol=0, abs_tol=1e-9):
            out.append(f"Must be a multiple of {format_value(step)}")
    return out


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)
_FORMAT_WORDS = {
    "email": "an email address like name@example.com",
    "uri": "an absolute URI like https://example.com/path",
    "uuid": "a UUID like 123e4567-e89b-12d3-a456-426614174000",
    "date": "a date like 2024-12-31",
    "date-time": "a date and time like 2024-12-31T23:59:00Z",
    "time": "a time like 23:59:00Z",
}


def check_format(fmt: str | None, value: str) -> str:
    """A problem with `value` for a known `format`, or "".

    jsonschema's Draft 2020-12 FormatChecker decides where it can (date, uuid, email);
    the rest (uri, date-time, time: their checkers need optional packages) are checked here.
    """
    if fmt not in FORMATS:
        return ""
    ok = _format_ok(fmt, value)
    return "" if ok else f"Must be {_FORMAT_WORDS[fmt]}"


def _format_ok(fmt: str, value: str) -> bool:
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.FORMAT_CHECKER
    if fmt in checker.checkers and not checker.conforms(value, fmt):
        return False
    if fmt == "email":
        return bool(_EMAIL.match(value))
    if fmt == "uuid":
        return bool(_UUID.match(value))
    if fmt == "uri":
        parts = urlsplit(value)
        return (
            bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", parts.scheme))
            and (bool(parts.netloc) or bool(parts.path))
            and " " not in value
        )
    if fmt == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value))
    if fmt == "time":
        m = _TIME.match(value)
        if not m:
            return False
        try:
            time(int(m[1]), int(m[2]), min(int(m[3]), 59))
        except ValueError:
            return False
        return True
    if fmt == "date-time":
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[Tt ](.+)", value)
        if not m or not _format_ok("date", m[1]) or not _format_ok("time", m[2]):
            return False
        try:
            datetime.fromisoformat(value.replace("z", "+00:00").replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Secrets


REDACTED = "***"


def redact(schema: Any, payload: Any) -> Any:
    """`payload` with the values of secret fields (writeOnly, format password, x-secret)
    replaced by "***", for history and logs."""
    try:
        root = build(schema)
    except Exception:  # pragma: no cover - defensive
        return payload
    return _redact(root, payload)


def _redact(f: Field, value: Any) -> Any:
    if value is MISSING:
        return value
    if f.secret and value is not None:
        return REDACTED
    if f.kind == OBJECT and isinstance(value, dict):
        out = dict(value)
        for c in f.children:
            if c.key in out:
                out[c.key] = _redact(c, out[c.key])
        return out
    if f.kind == ARRAY and isinstance(value, list) and f.item is not None:
        return [_redact(f.item, v) for v in value]
    if f.kind == VARIANT:
        i = match_variant(f, value)
        if i is not None:
            return _redact(f.variants[i].field, value)
    return value
