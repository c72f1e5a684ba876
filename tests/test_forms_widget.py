"""SchemaForm behaviour, driven through a tiny host app with Pilot (keys, not internals)."""

from __future__ import annotations

import json
from typing import Any

from textual.pilot import Pilot
from textual.widgets import (
    Checkbox,
    Input,
    MaskedInput,
    RadioSet,
    Select,
    SelectionList,
    Switch,
    TextArea,
)

from core.payload import FieldError, check_payload
from cpf_tui.forms import SchemaForm
from cpf_tui.forms.demo import FormHost
from cpf_tui.forms.fields import ArrayField, FieldWidget, ObjectField, VariantField

SIZE = (100, 40)


def field(app: FormHost, *path: str | int) -> FieldWidget:
    """The field widget at `path` (keys / indices), found the way errors are routed."""
    root = app.form.root
    assert root is not None
    target, tail = root.route(tuple(path))
    assert tail == (), f"no field at {path}"
    return target


def by_key(app: FormHost, key: str) -> Any:
    """The top-level field widget of property `key` (a variant itself, not its choice)."""
    root = app.form.root
    assert root is not None
    return next(w for w in root.children_fields if w.field.key == key)


async def focus(pilot: Pilot, app: FormHost, *path: str | int) -> None:
    target = field(app, *path).focus_target()
    assert target is not None
    target.focus()
    await pilot.pause()


async def type_into(pilot: Pilot, app: FormHost, path: tuple[str | int, ...], text: str) -> None:
    await focus(pilot, app, *path)
    await pilot.press("ctrl+a", "ctrl+k", *text)  # (select-on-focus differs for TextArea)
    await pilot.pause()


# ---------------------------------------------------------------------------------------------
# Scalars, JSON types, omission of empty optional fields

SCALARS = {
    "type": "object",
    "required": ["name", "count"],
    "properties": {
        "name": {"type": "string", "title": "Name", "examples": ["Ada"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        "ratio": {"type": "number"},
        "note": {"type": "string"},
    },
}


async def test_typed_values_are_json_types_and_empty_optionals_are_omitted() -> None:
    app = FormHost(SCALARS)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        payload, errors = form.collect()
        assert payload == {"count": 3}  # the default is prefilled; empty optionals omitted
        assert errors == [FieldError(("name",), "'name' is a required property")]

        await type_into(pilot, app, ("name",), "Ada")
        await type_into(pilot, app, ("count",), "5")
        await type_into(pilot, app, ("ratio",), "2.5")
        payload, errors = form.collect()
        assert payload == {"name": "Ada", "count": 5, "ratio": 2.5}
        assert type(payload["count"]) is int and errors == []

        await type_into(pilot, app, ("ratio",), "2")
        assert form.collect()[0]["ratio"] == 2 and type(form.collect()[0]["ratio"]) is int


async def test_integer_field_flags_letters_and_reports_coercion_once() -> None:
    app = FormHost(SCALARS)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, ("name",), "x")
        await type_into(pilot, app, ("count",), "a-b")  # kept as typed, and flagged at once
        assert field(app, "count").focus_target().value == "a-b"
        assert field(app, "count").errors == ["Must be a whole number"]
        payload, errors = app.form.collect()
        assert "count" not in payload
        # One message for the field: the widget's, not also the engine's "required".
        assert errors == [FieldError(("count",), "Must be a whole number")]


async def test_engine_errors_show_inline_with_summary_and_focus_first() -> None:
    app = FormHost(SCALARS)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, ("count",), "12")
        await focus(pilot, app, "note")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.submitted is None
        assert [(e.path, e.message) for e in app.last_errors] == [
            (("name",), "'name' is a required property"),
            (("count",), "12 is greater than the maximum of 10"),
        ]
        # The same messages `cpf resume` gives for this payload.
        assert app.last_errors == sorted(
            check_payload(SCALARS, {"count": 12}), key=lambda e: e.path != ("name",)
        )
        assert field(app, "name").errors == ["'name' is a required property"]
        assert field(app, "count").errors == ["12 is greater than the maximum of 10"]
        assert field(app, "note").errors == []
        summary = app.form.summary
        assert summary.has_class("-shown")
        text = str(summary.render())
        assert "Name" in text and "12 is greater than the maximum of 10" in text
        assert app.focused is field(app, "name").focus_target()

        # Fix both and submit: accepted, errors cleared.
        await type_into(pilot, app, ("name",), "Ada")
        await type_into(pilot, app, ("count",), "7")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.submitted == {"name": "Ada", "count": 7}
        assert not summary.has_class("-shown")
        assert field(app, "count").errors == []


async def test_show_errors_maps_paths_and_sends_unknown_ones_to_the_summary() -> None:
    app = FormHost(NESTED)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        form.show_errors(
            [
                FieldError((), "Additional properties are not allowed ('x' was unexpected)"),
                FieldError(("approver", "email"), "bad email"),
                FieldError(("approver", "name", "deeper"), "too deep"),
                FieldError(("nope",), "no such field"),
            ]
        )
        await pilot.pause()
        assert field(app, "approver", "email").errors == ["bad email"]
        assert field(app, "approver", "name").errors == ["deeper: too deep"]
        approver = field(app, "approver")
        assert isinstance(approver, ObjectField) and approver.border_subtitle == "2 errors"
        text = str(form.summary.render())
        assert "$: Additional properties" in text and "$.nope: no such field" in text
        assert "Approver › Email: bad email" in text
        assert app.focused is field(app, "approver", "name").focus_target()

        form.show_errors([])
        await pilot.pause()
        assert not form.summary.has_class("-shown")
        assert field(app, "approver", "email").errors == []
        assert approver.border_subtitle == ""


async def test_live_hints_on_blur_then_while_typing() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 3, "pattern": "^[a-z]+$"},
            "other": {"type": "string"},
        },
    }
    app = FormHost(schema)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, ("code",), "aB")
        assert field(app, "code").errors == []  # not while typing a fresh field
        await pilot.press("tab")
        await pilot.pause()
        assert field(app, "code").errors == [
            "Must be at least 3 characters",
            "Must match the pattern ^[a-z]+$",
        ]
        await focus(pilot, app, "code")
        await pilot.press("end", "backspace", *"bc")
        await pilot.pause()
        assert field(app, "code").errors == []  # cleared as soon as it is fixed


# ---------------------------------------------------------------------------------------------
# Booleans, enums, const, multiselect

CHOICES = {
    "type": "object",
    "required": ["confirm", "decision"],
    "properties": {
        "confirm": {"type": "boolean"},
        "notify": {"type": "boolean"},
        "dry_run": {"type": "boolean", "default": True},
        "decision": {"enum": ["approve", "reject"]},
        "env": {"enum": ["dev", "staging", "prod", "qa", "perf"], "default": "dev"},
        "level": {"oneOf": [{"const": 1, "title": "Low"}, {"const": 5, "title": "High"}]},
        "kind": {"const": "deploy"},
        "regions": {"type": "array", "items": {"enum": ["eu", "us", "ap"]}, "uniqueItems": True},
    },
}


async def test_booleans_enums_const_and_multiselect_by_keyboard() -> None:
    app = FormHost(CHOICES)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        payload, errors = form.collect()
        # A required boolean is sent either way; an optional one without default is not set.
        assert payload == {"confirm": False, "dry_run": True, "env": "dev", "kind": "deploy"}
        assert [e.path for e in errors] == [("decision",)]

        await focus(pilot, app, "notify")
        assert isinstance(app.focused, Switch)
        await pilot.press("space")
        await focus(pilot, app, "dry_run")
        await pilot.press("enter")
        await focus(pilot, app, "decision")
        assert isinstance(app.focused, RadioSet)  # 2-4 options: radio buttons
        await pilot.press("down", "space")  # highlight the next option and press it
        await focus(pilot, app, "env")
        assert isinstance(app.focused, Select)  # 5 options: a select
        await pilot.press("enter", "down", "down", "enter")
        await focus(pilot, app, "level")
        await pilot.press("down", "space")
        await focus(pilot, app, "regions")
        assert isinstance(app.focused, SelectionList)
        await pilot.press("space", "down", "down", "space")
        await pilot.pause()

        payload, errors = form.collect()
        assert errors == []
        assert payload == {
            "confirm": False,
            "notify": True,
            "dry_run": False,
            "decision": "reject",
            "env": "prod",
            "level": 5,
            "kind": "deploy",
            "regions": ["eu", "ap"],
        }


async def test_tab_order_follows_the_form() -> None:
    app = FormHost(CHOICES)
    async with app.run_test(size=SIZE) as pilot:
        await focus(pilot, app, "confirm")
        seen = []
        for _ in range(7):
            seen.append(type(app.focused).__name__)
            await pilot.press("tab")
        assert seen == [
            "Switch",
            "Switch",
            "Switch",
            "RadioSet",
            "Select",
            "RadioSet",
            "SelectionList",
        ]


# ---------------------------------------------------------------------------------------------
# Nested objects, arrays, variants

NESTED = {
    "type": "object",
    "properties": {
        "approver": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
            },
        },
        "meta": {
            "type": "object",
            "properties": {"team": {"type": "string"}},
        },
    },
    "required": ["approver"],
}


async def test_nested_objects_and_optional_empty_sections() -> None:
    app = FormHost(NESTED)
    async with app.run_test(size=SIZE) as pilot:
        payload, errors = app.form.collect()
        # The required section is sent (so its required field is reported where it is);
        # the optional one nobody touched is left out.
        assert payload == {"approver": {}}
        assert errors == [FieldError(("approver", "name"), "'name' is a required property")]
        await type_into(pilot, app, ("approver", "name"), "Ada")
        await type_into(pilot, app, ("approver", "email"), "ada@example")
        await type_into(pilot, app, ("meta", "team"), "ops")
        payload, errors = app.form.collect()
        assert payload == {
            "approver": {"name": "Ada", "email": "ada@example"},
            "meta": {"team": "ops"},
        }
        # Format checks are the widgets' own (the engine's validator does not check formats).
        assert errors == [
            FieldError(("approver", "email"), "Must be an email address like name@example.com")
        ]


ARRAYS = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "ports": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    },
}


async def test_array_add_type_move_remove_with_limits() -> None:
    app = FormHost(ARRAYS, {"tags": ["a"]})
    async with app.run_test(size=SIZE) as pilot:
        tags = field(app, "tags")
        assert isinstance(tags, ArrayField)
        row = tags.rows[0]
        assert row.remove_button.disabled  # minItems 1
        tags.add_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is tags.rows[1].item.focus_target()  # focus goes to the new item
        await pilot.press(*"b")
        tags.add_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press(*"c")
        await pilot.pause()
        assert tags.add_button.disabled  # maxItems 3
        assert app.form.collect()[0] == {"tags": ["a", "b", "c"]}

        tags.rows[2].up.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.form.collect()[0] == {"tags": ["a", "c", "b"]}
        tags.rows[0].down.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.form.collect()[0] == {"tags": ["c", "a", "b"]}

        tags.rows[1].remove_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.form.collect()[0] == {"tags": ["c", "b"]}
        assert not tags.add_button.disabled

        ports = field(app, "ports")
        ports.add_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("0")
        ports.add_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        payload, errors = app.form.collect()
        assert payload == {"tags": ["c", "b"], "ports": [0, None]}
        assert errors == [
            FieldError(("ports", 0), "0 is less than the minimum of 1"),
            FieldError(("ports", 1), "Empty item: fill it in or remove it"),
        ]
        app.form.show_errors(errors)
        await pilot.pause()
        assert ports.rows[0].item.errors == ["0 is less than the minimum of 1"]
        assert ports.rows[1].item.errors == ["Empty item: fill it in or remove it"]
        assert "Ports › #2: Empty item" in str(app.form.summary.render())


async def test_array_of_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}, "retries": {"type": "integer"}},
                },
            }
        },
    }
    app = FormHost(schema, {"steps": [{"id": "a", "retries": 2}]})
    async with app.run_test(size=SIZE) as pilot:
        steps = field(app, "steps")
        assert isinstance(steps, ArrayField)
        steps.add_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        payload, errors = app.form.collect()
        assert payload == {"steps": [{"id": "a", "retries": 2}, {}]}
        assert errors == [FieldError(("steps", 1, "id"), "'id' is a required property")]
        app.form.show_errors(errors)
        await pilot.pause()
        assert field(app, "steps", 1, "id").errors == ["'id' is a required property"]


VARIANTS = {
    "type": "object",
    "required": ["target"],
    "properties": {
        "target": {
            "title": "Target",
            "oneOf": [
                {
                    "title": "Host",
                    "type": "object",
                    "required": ["host"],
                    "properties": {"kind": {"const": "host"}, "host": {"type": "string"}},
                },
                {
                    "title": "Cluster",
                    "type": "object",
                    "required": ["nodes"],
                    "properties": {
                        "kind": {"const": "cluster"},
                        "nodes": {"type": "integer", "minimum": 1},
                    },
                },
            ],
        },
        "when": {"anyOf": [{"type": "string", "format": "date"}, {"enum": ["now", "later"]}]},
    },
}


async def test_variant_selection_by_keyboard() -> None:
    app = FormHost(VARIANTS)
    async with app.run_test(size=SIZE) as pilot:
        target = field(app, "target")
        assert isinstance(target, VariantField)
        assert app.form.collect()[0] == {"target": {"kind": "host"}}  # required: first variant
        await focus(pilot, app, "target")
        await pilot.press("enter", "down", "enter")  # choose "Cluster"
        await pilot.pause()
        assert target.chosen == 1
        await type_into(pilot, app, ("target", "nodes"), "3")
        assert app.form.collect() == ({"target": {"kind": "cluster", "nodes": 3}}, [])

        when = by_key(app, "when")
        when.focus_target().focus()
        await pilot.press("enter", "down", "down", "enter")  # blank, date, keyword
        await pilot.pause()
        assert when.chosen == 1
        await pilot.press("tab")  # into the keyword radio set
        assert isinstance(app.focused, RadioSet)
        await pilot.press("down", "space")
        await pilot.pause()
        assert app.form.collect()[0]["when"] == "later"


async def test_variant_prefill_and_errors_inside_the_chosen_alternative() -> None:
    app = FormHost(VARIANTS, {"target": {"kind": "cluster", "nodes": 0}, "when": "2024-05-01"})
    async with app.run_test(size=SIZE) as pilot:
        assert by_key(app, "target").chosen == 1
        assert by_key(app, "when").chosen == 0
        payload, errors = app.form.check()
        await pilot.pause()
        assert payload == {"target": {"kind": "cluster", "nodes": 0}, "when": "2024-05-01"}
        # oneOf reports at the variant; the engine's message is shown there.
        assert [e.path for e in errors] == [("target",)]
        assert field(app, "target").errors == [errors[0].message]


# ---------------------------------------------------------------------------------------------
# Nullable, secret, readOnly, dates, multi-line text, reset, defaults

MISC = {
    "type": "object",
    "properties": {
        "limit": {"type": ["integer", "null"], "default": 5},
        "token": {"type": "string", "writeOnly": True},
        "owner": {"type": "string", "readOnly": True, "default": "ops"},
        "day": {"type": "string", "format": "date"},
        "notes": {"type": "string", "x-multiline": True},
        "mode": {"type": "string", "default": "safe"},
    },
}


async def test_null_toggle_secret_readonly_date_multiline() -> None:
    app = FormHost(MISC)
    async with app.run_test(size=SIZE) as pilot:
        limit = field(app, "limit")
        assert limit.null_toggle is not None
        limit.null_toggle.focus()
        await pilot.press("space")
        await pilot.pause()
        assert limit.focus_target() is limit.null_toggle  # the editor is disabled while null
        token = field(app, "token").focus_target()
        assert isinstance(token, Input) and token.password
        owner = field(app, "owner")
        assert owner.focus_target() is None and owner.editors()[0].disabled
        await focus(pilot, app, "day")
        assert isinstance(app.focused, MaskedInput)
        await pilot.press(*"20240229")
        await type_into(pilot, app, ("token",), "s3cret")
        await focus(pilot, app, "notes")
        assert isinstance(app.focused, TextArea)
        await pilot.press(*"line1", "enter", *"line2")
        await pilot.pause()
        payload, errors = app.form.collect()
        assert errors == []
        assert payload == {
            "limit": None,
            "token": "s3cret",
            "owner": "ops",
            "day": "2024-02-29",
            "notes": "line1\nline2",
            "mode": "safe",
        }


async def test_reset_field_to_default() -> None:
    app = FormHost(MISC)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, ("mode",), "fast")
        assert app.form.collect()[0]["mode"] == "fast"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.form.collect()[0]["mode"] == "safe"
        assert not app.form.dirty


async def test_prefilled_value_round_trips_including_unknown_keys() -> None:
    value = {
        "limit": None,
        "owner": "ops",
        "day": "2023-01-31",
        "notes": "a\nb",
        "mode": "x",
        "extra": {"kept": True},
    }
    app = FormHost(MISC, value)
    async with app.run_test(size=SIZE):
        payload, _ = app.form.collect()
        assert payload == value


# ---------------------------------------------------------------------------------------------
# Raw JSON, unsupported schemas, change tracking


async def test_raw_json_toggle_is_two_way() -> None:
    app = FormHost(SCALARS, {"name": "Ada", "count": 2})
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        await focus(pilot, app, "name")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert form.raw_mode and app.focused is form.raw
        assert form.raw.text == '{\n  "name": "Ada",\n  "count": 2\n}'
        form.raw.load_text('{"name": "Bo", "count": 4, "ratio": 0.5}')
        assert form.collect() == ({"name": "Bo", "count": 4, "ratio": 0.5}, [])
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not form.raw_mode
        assert field(app, "count").focus_target().value == "4"
        assert form.collect() == ({"name": "Bo", "count": 4, "ratio": 0.5}, [])


async def test_raw_json_refuses_bad_json_and_unshowable_values() -> None:
    app = FormHost(SCALARS)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        await pilot.press("ctrl+r")
        form.raw.load_text('{"name": ')
        payload, errors = form.collect()
        assert payload is None and errors[0].path == () and "Invalid JSON" in errors[0].message
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert form.raw_mode  # refused
        assert "Invalid JSON at line 1" in str(form.summary.render())
        form.raw.load_text('{"name": {"first": "Ada"}, "count": 1}')
        assert not form.set_raw_mode(False)
        assert "cannot show this JSON faithfully" in str(form.summary.render())
        # Still submittable as JSON: the engine's validator has the last word.
        payload, errors = form.collect()
        assert errors == [FieldError(("name",), "{'first': 'Ada'} is not of type 'string'")]


async def test_unsupported_schema_opens_in_raw_json() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    assert not SchemaForm.supported(schema)
    app = FormHost(schema, [1, 2])
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        assert form.raw_mode and form.root is None
        assert form.collect() == ([1, 2], [])
        form.raw.load_text('[1, "x"]')
        assert form.collect() == ([1, "x"], [FieldError((1,), "'x' is not of type 'integer'")])
        await pilot.press("ctrl+r")
        assert form.raw_mode


async def test_json_fallback_field_inside_a_form() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "extra": {}},
    }
    app = FormHost(schema, {"extra": {"a": [1]}})
    async with app.run_test(size=SIZE) as pilot:
        extra = field(app, "extra").focus_target()
        assert isinstance(extra, TextArea)
        assert app.form.collect()[0] == {"extra": {"a": [1]}}
        extra.load_text("{oops")
        payload, errors = app.form.collect()
        assert "extra" not in payload
        assert errors == [
            FieldError(
                ("extra",),
                "Invalid JSON: Expecting property name enclosed in double quotes (line 1)",
            )
        ]
        await pilot.pause()


async def test_changed_messages_and_dirty() -> None:
    app = FormHost(SCALARS)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        form = app.form
        assert app.changes == 0 and not form.dirty  # mounting is not a change
        await type_into(pilot, app, ("name",), "A")
        assert app.changes >= 1 and form.dirty
        n = app.changes
        await pilot.press("backspace")
        await pilot.pause()
        assert app.changes == n + 1 and not form.dirty  # back to where it started
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not form.dirty  # switching views is not an edit
        form.raw.load_text('{"count": 4}')
        await pilot.pause()
        assert form.dirty and app.changes > n + 1


async def test_bindings_are_declared_with_ids() -> None:
    ids = {b.id for b in SchemaForm.BINDINGS if hasattr(b, "id")}
    assert {"form.toggle_raw", "form.reset_field"} <= ids
    app = FormHost(SCALARS)
    async with app.run_test(size=SIZE) as pilot:
        await focus(pilot, app, "name")
        keys = {b.binding.id for b in app.active_bindings.values()}
        assert {"form.toggle_raw", "form.reset_field"} <= keys
        assert isinstance(app.query_one("#form"), SchemaForm)
        assert not app.query(Checkbox)  # no nullable fields, no null toggles


# ---------------------------------------------------------------------------------------------
# Corpus: real schemas must render, and a valid value must come back unchanged


def _pydantic_schemas() -> list[tuple[dict[str, Any], Any]]:
    from datetime import date
    from enum import StrEnum
    from typing import Literal

    from pydantic import BaseModel, Field

    class Env(StrEnum):
        dev = "dev"
        prod = "prod"

    class Person(BaseModel):
        name: str
        email: str | None = None

    class Email(BaseModel):
        kind: Literal["email"] = "email"
        to: str

    class Sms(BaseModel):
        kind: Literal["sms"] = "sms"
        number: str

    class Deploy(BaseModel):
        service: str = Field(min_length=1, description="What to deploy")
        replicas: int = Field(default=2, ge=1, le=50)
        env: Env = Env.dev
        approvers: list[Person] = []
        tags: list[str] = []
        notify: Email | Sms | None = None
        window: date | None = None
        dry_run: bool = True
        note: str | None = None

    value = {
        "service": "api",
        "replicas": 3,
        "env": "prod",
        "approvers": [{"name": "Ada", "email": None}],
        "tags": ["x"],
        "notify": {"kind": "sms", "number": "123"},
        "window": "2024-05-01",
        "dry_run": False,
        "note": None,
    }
    return [(Deploy.model_json_schema(), value)]


CORPUS: list[tuple[dict[str, Any], Any]] = [
    (
        CHOICES,
        {
            "confirm": True,
            "dry_run": False,
            "decision": "approve",
            "env": "qa",
            "kind": "deploy",
            "regions": ["us"],
        },
    ),
    (NESTED, {"approver": {"name": "Ada"}, "meta": {"team": "ops"}}),
    (ARRAYS, {"tags": ["a", "b"], "ports": [80, 443]}),
    (VARIANTS, {"target": {"kind": "host", "host": "h1"}, "when": "now"}),
    (
        {  # the approval example's event schema
            "type": "object",
            "required": ["decision"],
            "properties": {
                "decision": {"type": "string", "enum": ["approve", "reject", "request_changes"]},
                "comment": {"type": "string"},
            },
        },
        {"decision": "request_changes", "comment": "split it"},
    ),
]


async def test_corpus_renders_and_round_trips_valid_values() -> None:
    for schema, value in CORPUS + _pydantic_schemas():
        assert check_payload(schema, value) == [], value
        app = FormHost(schema, value)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            payload, errors = app.form.collect()
            assert errors == [], (schema.get("title"), errors)
            assert payload == value


async def test_repository_examples_render() -> None:
    from pathlib import Path

    import yaml

    schemas: list[dict[str, Any]] = []
    for path in sorted(Path(__file__).parent.parent.joinpath("examples").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        wf = doc.get("workflow", {}) if isinstance(doc, dict) else {}
        if isinstance(wf.get("inputs"), dict):
            schemas.append(wf["inputs"])
        for step in wf.get("steps", []) or []:
            if isinstance(step, dict) and isinstance(step.get("input_schema"), dict):
                schemas.append(step["input_schema"])
    for schema in schemas:
        app = FormHost(schema)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            payload, errors = app.form.collect()
            assert isinstance(errors, list)
            assert payload is not None or app.form.raw_mode


async def test_compact_form_uses_one_line_editors() -> None:
    app = FormHost(CHOICES, compact=True)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        assert form.has_class("-compact")
        confirm = field(app, "confirm").focus_target()
        assert isinstance(confirm, Checkbox) and confirm.compact  # booleans: checkboxes
        assert field(app, "env").focus_target().compact
        confirm.focus()
        await pilot.press("space")
        await pilot.pause()
        assert form.collect()[0]["confirm"] is True


async def test_mark_clean_and_limitations() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {}},
        "dependentRequired": {"a": ["b"]},
    }
    app = FormHost(schema)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        assert form.limitations == [
            "$: dependentRequired is checked on submit only",
            "$.b: any JSON value; edited as raw JSON",
        ]
        await type_into(pilot, app, ("a",), "x")
        assert form.dirty
        _, errors = form.collect()
        assert errors == [FieldError((), "'b' is a dependency of 'a'")]  # the engine decides
        form.mark_clean()
        assert not form.dirty


async def test_structural_edits_post_changed() -> None:
    app = FormHost({**ARRAYS, "properties": {**ARRAYS["properties"], **VARIANTS["properties"]}})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        base = app.changes
        ports = field(app, "ports")
        assert isinstance(ports, ArrayField)
        ports.add_button.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.changes == base + 1
        when = by_key(app, "when")
        when.focus_target().focus()
        await pilot.press("enter", "down", "enter")
        await pilot.pause()
        assert app.changes == base + 2
        assert app.form.dirty


async def test_raw_toggle_binding_hidden_without_a_form() -> None:
    app = FormHost({"type": "string"}, "x")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown = {b.binding.id for b in app.active_bindings.values() if b.enabled}
        assert "form.toggle_raw" not in shown
        assert app.form.collect() == ("x", [])


async def test_raw_round_trip_rebuilds_rows_with_selects_and_variants() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "object", "properties": {"k": {"const": "a"}}},
                        {
                            "type": "object",
                            "properties": {
                                "k": {"const": "b"},
                                "env": {"enum": ["dev", "staging", "prod", "qa", "perf"]},
                            },
                        },
                    ]
                },
            },
            "day": {"type": "string", "format": "date"},
        },
    }
    app = FormHost(schema)
    async with app.run_test(size=SIZE) as pilot:
        form = app.form
        await pilot.press("ctrl+r")
        value = {"items": [{"k": "b", "env": "qa"}, {"k": "a"}], "day": "2024-01-31"}
        form.raw.load_text(json.dumps(value))
        assert form.set_raw_mode(False)
        # Read straight away, before the new rows are even mounted.
        assert form.collect() == (value, [])
        await pilot.pause()
        assert form.collect() == (value, [])
        # A date the masked editor cannot hold is refused, not silently dropped.
        assert form.set_raw_mode(True)
        form.raw.load_text(json.dumps({"day": "31/01/2024"}))
        assert not form.set_raw_mode(False)
        # ...and the one validator (the engine's) reports it, as `cpf resume` would.
        assert form.collect() == (
            {"day": "31/01/2024"},
            [FieldError(("day",), "'31/01/2024' is not a 'date'")],
        )


async def test_x_widget_overrides_the_default_editor() -> None:
    schema = {
        "type": "object",
        "properties": {
            "two": {"enum": ["x", "y"], "x-widget": "select"},
            "many": {"enum": ["a", "b", "c", "d", "e"], "x-widget": "radio"},
            "flag": {"type": "boolean", "x-widget": "checkbox"},
        },
    }
    app = FormHost(schema)
    async with app.run_test(size=SIZE):
        assert isinstance(field(app, "two").focus_target(), Select)
        assert isinstance(field(app, "many").focus_target(), RadioSet)
        assert isinstance(field(app, "flag").focus_target(), Checkbox)


async def test_an_object_schema_without_fields_sends_an_empty_object() -> None:
    # A workflow's `inputs: {type: object}`: raw JSON, prefilled, and it says why.
    app = FormHost({"type": "object"})
    async with app.run_test(size=SIZE):
        form = app.form
        assert form.raw_mode
        assert "No fields are declared" in str(form.raw_help.render())
        assert form.collect() == ({}, [])
