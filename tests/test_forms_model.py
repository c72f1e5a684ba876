"""The pure schema -> field tree model of the form generator (no Textual)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cpf_tui.forms import model
from cpf_tui.forms.model import MISSING, build, limitations, match_variant, redact, supported


def kinds(f: model.Field) -> dict[str, str]:
    return {str(c.key): c.kind for c in f.children}


def test_model_does_not_import_textual() -> None:
    code = "import sys, cpf_tui.forms.model; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scalar_kinds_labels_and_required() -> None:
    root = build(
        {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "title": "Full name", "examples": ["Ada"]},
                "max_retries": {"type": "integer", "description": "How often", "default": 3},
                "ratio": {"type": "number"},
                "ok": {"type": "boolean"},
            },
        }
    )
    assert root.kind == model.OBJECT
    assert kinds(root) == {
        "name": "string",
        "max_retries": "integer",
        "ratio": "number",
        "ok": "boolean",
    }
    name, retries, _, _ = root.children
    assert (name.title, name.required, name.placeholder) == ("Full name", True, "Ada")
    assert (retries.title, retries.required, retries.default, retries.description) == (
        "Max retries",
        False,
        3,
        "How often",
    )
    assert not name.has_default and retries.has_default


def test_schema_order_and_x_order() -> None:
    schema = {
        "type": "object",
        "x-order": ["c", "a", "nope"],
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}},
    }
    assert [c.key for c in build(schema).children] == ["c", "a", "b"]
    del schema["x-order"]
    assert [c.key for c in build(schema).children] == ["a", "b", "c"]


def test_enum_const_and_labelled_oneof() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "color": {"enum": ["red", "green", 3, None]},
                "kind": {"const": "deploy"},
                "level": {
                    "oneOf": [
                        {"const": 1, "title": "Low"},
                        {"const": 2, "title": "High", "description": "wakes people"},
                    ]
                },
                "size": {"enum": ["s", "m"], "x-enumNames": ["Small", "Medium"]},
            },
        }
    )
    color, kind, level, size = root.children
    assert color.kind == model.ENUM
    assert [(o.value, o.label) for o in color.options] == [
        ("red", "red"),
        ("green", "green"),
        (3, "3"),
        (None, "null"),
    ]
    assert (kind.kind, kind.const) == (model.CONST, "deploy")
    assert level.kind == model.ENUM
    assert [(o.value, o.label, o.description) for o in level.options] == [
        (1, "Low", ""),
        (2, "High", "wakes people"),
    ]
    assert [o.label for o in size.options] == ["Small", "Medium"]


def test_secret_readonly_format_multiline() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "a": {"type": "string", "writeOnly": True},
                "b": {"type": "string", "format": "password"},
                "c": {"type": "string", "x-secret": True},
                "d": {"type": "string", "readOnly": True, "default": "fixed"},
                "e": {"type": "string", "format": "date"},
                "f": {"type": "string", "maxLength": 5000},
                "g": {"type": "string", "x-multiline": True},
                "h": {"type": "string", "maxLength": 20},
            },
        }
    )
    a, b, c, d, e, f, g, h = root.children
    assert a.secret and b.secret and c.secret and not d.secret
    assert d.read_only and d.default == "fixed"
    assert e.format == "date"
    assert f.multiline and g.multiline and not h.multiline


def test_nullable_forms() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "a": {"type": ["integer", "null"]},
                "b": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "title": "Bee",
                    "default": None,
                },
                "c": {"type": "null"},
            },
        }
    )
    a, b, c = root.children
    assert (a.kind, a.nullable) == (model.INTEGER, True)
    assert (b.kind, b.nullable, b.title, b.default) == (model.STRING, True, "Bee", None)
    assert (c.kind, c.const) == (model.CONST, None)


def test_nested_objects_and_arrays() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "approver": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                },
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "regions": {"type": "array", "items": {"enum": ["eu", "us"]}},
                "steps": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"id": {"type": "string"}}},
                },
            },
        }
    )
    approver, tags, regions, steps = root.children
    assert approver.kind == model.OBJECT and kinds(approver) == {"name": "string", "age": "integer"}
    assert approver.child("name").required and not approver.child("age").required
    assert tags.kind == model.ARRAY and tags.item is not None and tags.item.kind == model.STRING
    assert tags.item.title == "Tag"  # singular of the array's title
    assert regions.kind == model.MULTISELECT
    assert [o.value for o in regions.options] == ["eu", "us"]
    assert steps.kind == model.ARRAY and steps.item is not None and steps.item.kind == model.OBJECT


def test_local_refs_defs_definitions_and_siblings() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "who": {"$ref": "#/$defs/Person", "title": "Approver"},
                "old": {"$ref": "#/definitions/Level"},
                "escaped": {"$ref": "#/$defs/a~1b"},
            },
            "$defs": {
                "Person": {
                    "type": "object",
                    "title": "Person",
                    "properties": {"n": {"type": "string"}},
                },
                "a/b": {"type": "boolean"},
            },
            "definitions": {"Level": {"type": "integer", "minimum": 1}},
        }
    )
    who, old, escaped = root.children
    assert who.kind == model.OBJECT and who.title == "Approver"  # sibling wins over the target
    assert (old.kind, old.schema["minimum"]) == (model.INTEGER, 1)
    assert escaped.kind == model.BOOLEAN
    assert (
        limitations(
            {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/A"}},
                "$defs": {"A": {"type": "string"}},
            }
        )
        == []
    )


def test_recursive_and_external_refs_fall_back_to_json() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tree": {"$ref": "#/$defs/Node"},
            "remote": {"$ref": "https://example.com/x.json"},
            "missing": {"$ref": "#/$defs/Nope"},
        },
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    }
    root = build(schema)
    tree, remote, missing = root.children
    assert tree.kind == model.OBJECT
    kids = tree.child("kids")
    assert kids is not None and kids.kind == model.JSON and "recursive" in kids.reason
    assert remote.kind == model.JSON and "external" in remote.reason
    assert missing.kind == model.JSON and "unresolvable" in missing.reason
    notes = limitations(schema)
    assert any(n.startswith("$.tree.kids:") and "recursive" in n for n in notes)
    assert supported(schema)  # the rest is still a form


def test_root_recursion_guard() -> None:
    root = build({"type": "object", "properties": {"self": {"$ref": "#"}}})
    assert root.children[0].kind == model.JSON


def test_allof_merge() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "x": {
                    "allOf": [
                        {"$ref": "#/$defs/Base"},
                        {"properties": {"extra": {"type": "integer"}}, "required": ["extra"]},
                    ],
                    "title": "Merged",
                }
            },
            "$defs": {
                "Base": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}},
                }
            },
        }
    )
    x = root.children[0]
    assert x.kind == model.OBJECT and x.title == "Merged"
    assert kinds(x) == {"id": "string", "extra": "integer"}
    assert x.child("id").required and x.child("extra").required


def test_variants_with_discriminator() -> None:
    schema = {
        "type": "object",
        "properties": {
            "target": {
                "oneOf": [
                    {"$ref": "#/$defs/Host"},
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "cluster"}, "nodes": {"type": "integer"}},
                    },
                ]
            }
        },
        "$defs": {
            "Host": {
                "type": "object",
                "title": "A host",
                "properties": {"kind": {"const": "host"}, "name": {"type": "string"}},
            }
        },
    }
    target = build(schema).children[0]
    assert target.kind == model.VARIANT
    assert target.discriminator == "kind"
    assert [(v.title, v.tag) for v in target.variants] == [
        ("A host", "host"),
        ("cluster", "cluster"),
    ]
    assert match_variant(target, {"kind": "cluster"}) == 1
    assert match_variant(target, {"kind": "host", "name": "x"}) == 0
    assert match_variant(target, MISSING) is None


def test_variants_of_scalars_date_or_enum_and_type_lists() -> None:
    # A Prefect-style case: a date, or one of some keywords.
    schema = {
        "type": "object",
        "properties": {
            "when": {
                "anyOf": [
                    {"type": "string", "format": "date"},
                    {"enum": ["today", "tomorrow"]},
                ]
            },
            "size": {"type": ["integer", "string"]},
            "dup": {"anyOf": [{"type": "string"}, {"type": "string"}, {"type": "integer"}]},
            "opt": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        },
    }
    when, size, dup, opt = build(schema).children
    assert when.kind == model.VARIANT
    assert [v.title for v in when.variants] == ["string (date)", "one of today, tomorrow"]
    assert match_variant(when, "tomorrow") == 1
    assert match_variant(when, "2024-01-02") == 0
    assert size.kind == model.VARIANT and [v.title for v in size.variants] == ["integer", "string"]
    assert match_variant(size, 5) == 0 and match_variant(size, "x") == 1
    assert [v.title for v in dup.variants] == ["string", "integer"]  # look-alikes collapse
    assert opt.kind == model.VARIANT and opt.nullable and len(opt.variants) == 2


def test_base_properties_plus_constraint_alternatives() -> None:
    f = build(
        {
            "type": "object",
            "properties": {
                "contact": {
                    "type": "object",
                    "properties": {"email": {"type": "string"}, "phone": {"type": "string"}},
                    "oneOf": [{"required": ["email"]}, {"required": ["phone"]}],
                }
            },
        }
    ).children[0]
    assert f.kind == model.OBJECT and kinds(f) == {"email": "string", "phone": "string"}


def test_unsupported_roots_and_parts() -> None:
    assert not supported({"type": "string"})
    assert not supported({"type": "array", "items": {"type": "string"}})
    assert not supported({})
    assert not supported({"$ref": "https://example.com/s.json"})
    assert supported({"type": "object", "properties": {"a": {}}})
    notes = limitations(
        {
            "type": "object",
            "properties": {
                "any": {},
                "free": {"type": "object"},
                "pairs": {"type": "array", "prefixItems": [{"type": "string"}]},
            },
            "if": {"properties": {"any": {"const": 1}}},
            "then": {"required": ["free"]},
        }
    )
    assert "$: conditional (if/then/else) is checked on submit only" in notes
    assert any(n.startswith("$.any: any JSON value") for n in notes)
    assert any(n.startswith("$.free: free-form object") for n in notes)
    assert any(n.startswith("$.pairs: tuple arrays") for n in notes)


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("integer", "5", (5, "")),
        ("integer", " -12 ", (-12, "")),
        ("integer", "1_000", (1000, "")),
        ("integer", "", (MISSING, "")),
        ("integer", "-", (MISSING, "Must be a whole number")),
        ("number", "5", (5, "")),
        ("number", "2.5", (2.5, "")),
        ("number", "1e3", (1000.0, "")),
        ("number", ".", (MISSING, "Must be a number")),
        ("string", "", (MISSING, "")),
        ("string", "  x ", ("  x ", "")),
    ],
)
def test_coerce_text(kind: str, text: str, expected: tuple[object, str]) -> None:
    value, problem = model.coerce_text(model.Field(kind), text)
    assert (value, problem) == expected
    assert type(value) is type(expected[0])  # 5 stays an int, never "5" or 5.0


@pytest.mark.parametrize(
    ("schema", "text", "hints"),
    [
        ({"type": "string", "minLength": 3}, "ab", ["Must be at least 3 characters"]),
        ({"type": "string", "maxLength": 1}, "ab", ["Must be at most 1 character"]),
        ({"type": "string", "pattern": "^[a-z]+$"}, "aB", ["Must match the pattern ^[a-z]+$"]),
        ({"type": "string", "pattern": "b"}, "abc", []),  # search semantics, like JSON Schema
        ({"type": "integer", "minimum": 5}, "4", ["Must be at least 5"]),
        ({"type": "integer", "maximum": 5}, "6", ["Must be at most 5"]),
        ({"type": "number", "exclusiveMinimum": 0}, "0", ["Must be greater than 0"]),
        ({"type": "number", "exclusiveMaximum": 1}, "1", ["Must be less than 1"]),
        ({"type": "number", "multipleOf": 0.5}, "1.25", ["Must be a multiple of 0.5"]),
        ({"type": "number", "multipleOf": 0.1}, "0.3", []),
        (
            {"type": "string", "format": "email"},
            "ada@example",
            ["Must be an email address like name@example.com"],
        ),
        ({"type": "string", "format": "email"}, "ada@example.com", []),
        (
            {"type": "string", "format": "uri"},
            "not a uri",
            ["Must be an absolute URI like https://example.com/path"],
        ),
        ({"type": "string", "format": "uri"}, "https://example.com/x", []),
        (
            {"type": "string", "format": "uuid"},
            "123",
            ["Must be a UUID like 123e4567-e89b-12d3-a456-426614174000"],
        ),
        ({"type": "string", "format": "uuid"}, "123e4567-e89b-12d3-a456-426614174000", []),
        ({"type": "string", "format": "date"}, "2024-02-30", ["Must be a date like 2024-12-31"]),
        ({"type": "string", "format": "date"}, "2024-02-29", []),
        (
            {"type": "string", "format": "date-time"},
            "2024-02-29 10:00",
            ["Must be a date and time like 2024-12-31T23:59:00Z"],
        ),
        ({"type": "string", "format": "date-time"}, "2024-02-29T10:00:00+02:00", []),
        ({"type": "string", "format": "time"}, "25:00:00Z", ["Must be a time like 23:59:00Z"]),
        ({"type": "string", "format": "time"}, "23:59:00Z", []),
        ({"type": "string", "format": "hostname"}, "anything", []),  # unknown formats: no hint
        ({"type": "integer"}, "", []),
    ],
)
def test_check_text_hints(schema: dict, text: str, hints: list[str]) -> None:
    f = build({"type": "object", "properties": {"x": schema}}).children[0]
    assert model.check_text(f, text) == hints


def test_redact_secret_fields() -> None:
    schema = {
        "type": "object",
        "properties": {
            "user": {"type": "string"},
            "password": {"type": "string", "format": "password"},
            "inner": {
                "type": "object",
                "properties": {"token": {"type": "string", "writeOnly": True}},
            },
            "keys": {"type": "array", "items": {"type": "string", "x-secret": True}},
        },
    }
    payload = {"user": "ada", "password": "hunter2", "inner": {"token": "t"}, "keys": ["a", "b"]}
    assert redact(schema, payload) == {
        "user": "ada",
        "password": "***",
        "inner": {"token": "***"},
        "keys": ["***", "***"],
    }
    assert payload["password"] == "hunter2"  # not modified in place


def test_humanize() -> None:
    assert model.humanize("max_retries") == "Max retries"
    assert model.humanize("maxRetries") == "Max retries"
    assert model.humanize("userID") == "User ID"
    assert model.humanize("dry-run") == "Dry run"


def test_walk_covers_the_tree() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string"}}},
                "c": {"type": "array", "items": {"type": "integer"}},
                "d": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            },
        }
    )
    assert [f.kind for f in root.walk()] == [
        "object", "object", "string", "array", "integer", "variant", "string", "integer",
    ]  # fmt: skip


def test_x_hints() -> None:
    root = build(
        {
            "type": "object",
            "properties": {
                "a": {"enum": ["x", "y"], "x-widget": "select", "x-placeholder": "Pick one"},
                "b": {"type": "string", "description": "long", "x-help": "short"},
                "c": {"type": "string", "x-widget": "textarea"},
            },
        }
    )
    a, b, c = root.children
    assert (a.widget, a.placeholder) == ("select", "Pick one")
    assert b.description == "short"
    assert c.multiline
