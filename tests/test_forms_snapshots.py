"""Snapshots of each form widget kind and of the error states (pytest-textual-snapshot).

Fixed terminal size, fixed theme, cursors that do not blink. Update deliberately with
`pytest tests/test_forms_snapshots.py --snapshot-update` and review the SVGs like code.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from cpf_tui.forms.demo import FormHost

SIZE = (100, 40)


def host(schema: dict[str, Any], value: Any = None, *, compact: bool = False) -> FormHost:
    return FormHost(schema, value, blink=False, compact=compact)


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or []}


TEXT = obj(
    {
        "name": {
            "type": "string",
            "title": "Service name",
            "description": "The **service** to deploy, as in `services.yaml`",
            "examples": ["billing-api"],
        },
        "replicas": {"type": "integer", "minimum": 1, "default": 2},
        "ratio": {"type": "number", "description": "Share of traffic, 0 to 1"},
        "token": {"type": "string", "writeOnly": True},
        "owner": {"type": "string", "readOnly": True, "default": "platform-team"},
        "window": {"type": "string", "format": "date"},
        "contact": {"type": "string", "format": "email"},
        "notes": {"type": "string", "x-multiline": True, "default": "first line\nsecond line"},
    },
    ["name", "replicas"],
)

BOOLEANS = obj(
    {
        "confirm": {"type": "boolean"},
        "notify": {"type": "boolean"},
        "dry_run": {"type": "boolean", "default": True},
        "acknowledge": {
            "type": "boolean",
            "title": "I have read the change plan and the rollback steps",
        },
    },
    ["confirm"],
)

CHOICES = obj(
    {
        "decision": {"enum": ["approve", "reject", "request_changes"]},
        "environment": {"enum": ["dev", "staging", "prod", "qa", "perf"], "default": "staging"},
        "priority": {
            "oneOf": [
                {"const": 1, "title": "Low"},
                {"const": 2, "title": "Normal"},
                {"const": 3, "title": "Urgent"},
            ]
        },
        "kind": {"const": "deploy"},
        "regions": {"type": "array", "items": {"enum": ["eu-west", "us-east", "ap-south"]}},
    },
    ["decision"],
)

NESTED = obj(
    {
        "approver": obj(
            {
                "name": {"type": "string"},
                "address": obj({"city": {"type": "string"}, "zip": {"type": "string"}}),
            },
            ["name"],
        ),
        "limit": {"type": ["integer", "null"], "default": None},
        "timeout": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": 30},
    },
    ["approver"],
)

ARRAYS = obj(
    {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "checks": {
            "type": "array",
            "items": obj({"id": {"type": "string"}, "blocking": {"type": "boolean"}}, ["id"]),
        },
    }
)

VARIANTS = obj(
    {
        "target": {
            "oneOf": [
                {
                    "title": "Single host",
                    "type": "object",
                    "properties": {"kind": {"const": "host"}, "host": {"type": "string"}},
                    "required": ["host"],
                },
                {
                    "title": "Cluster",
                    "type": "object",
                    "properties": {
                        "kind": {"const": "cluster"},
                        "nodes": {"type": "integer", "minimum": 1},
                    },
                },
            ]
        },
        "when": {"anyOf": [{"type": "string", "format": "date"}, {"enum": ["now", "tonight"]}]},
        "extra": {"description": "Anything else, as JSON"},
    },
    ["target"],
)


def test_snapshot_text_inputs(snap_compare: Any) -> None:
    assert snap_compare(host(TEXT), terminal_size=SIZE)


def test_snapshot_booleans(snap_compare: Any) -> None:
    assert snap_compare(host(BOOLEANS), terminal_size=SIZE)


def test_snapshot_choices(snap_compare: Any) -> None:
    assert snap_compare(host(CHOICES, {"regions": ["us-east"]}), terminal_size=SIZE)


def test_snapshot_select_open(snap_compare: Any) -> None:
    assert snap_compare(host(CHOICES), terminal_size=SIZE, press=["tab", "enter"])


def test_snapshot_nested_and_nullable(snap_compare: Any) -> None:
    assert snap_compare(host(NESTED, {"approver": {"name": "Ada"}}), terminal_size=SIZE)


def test_snapshot_arrays(snap_compare: Any) -> None:
    value = {"tags": ["blue", "green"], "checks": [{"id": "smoke", "blocking": True}]}
    assert snap_compare(host(ARRAYS, value), terminal_size=SIZE)


def test_snapshot_variants_and_json_fallback(snap_compare: Any) -> None:
    value = {"target": {"kind": "cluster", "nodes": 3}, "when": "tonight", "extra": {"a": [1]}}
    assert snap_compare(host(VARIANTS, value), terminal_size=SIZE)


def test_snapshot_raw_json_mode(snap_compare: Any) -> None:
    value = {"target": {"kind": "host", "host": "db1"}, "when": "2024-05-01"}
    assert snap_compare(host(VARIANTS, value), terminal_size=SIZE, press=["ctrl+r"])


def test_snapshot_unsupported_schema_is_raw_json(snap_compare: Any) -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    assert snap_compare(host(schema, [1, 2, 3]), terminal_size=SIZE)


def test_snapshot_errors_after_submit(snap_compare: Any) -> None:
    value = {"replicas": 0, "window": "2024-02-30", "contact": "ada@"}
    assert snap_compare(host(TEXT, value), terminal_size=SIZE, press=["ctrl+s"])


def test_snapshot_nested_errors_with_section_count(snap_compare: Any) -> None:
    value = {"approver": {"address": {"city": "Oslo"}}, "timeout": None}
    assert snap_compare(host(NESTED, value), terminal_size=SIZE, press=["ctrl+s"])


def test_snapshot_array_errors(snap_compare: Any) -> None:
    value = {"tags": ["a"], "checks": [{"blocking": False}]}

    async def add_and_submit(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, FormHost)
        tags = app.form.root.children_fields[0]  # type: ignore[union-attr]
        tags.add_button.focus()  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("ctrl+s")

    assert snap_compare(host(ARRAYS, value), terminal_size=SIZE, run_before=add_and_submit)


def test_snapshot_live_hint_on_blur(snap_compare: Any) -> None:
    schema = obj({"code": {"type": "string", "minLength": 3, "pattern": "^[a-z]+$"}, "n": {}})
    assert snap_compare(host(schema), terminal_size=SIZE, press=["A", "b", "tab"])


def test_snapshot_compact_with_errors(snap_compare: Any) -> None:
    schema = obj({**CHOICES["properties"], **BOOLEANS["properties"]}, ["decision", "confirm"])
    assert snap_compare(host(schema, compact=True), terminal_size=SIZE, press=["ctrl+s"])


APPROVAL_EVENT = obj(
    {
        "decision": {"type": "string", "enum": ["approve", "reject", "request_changes"]},
        "comment": {"type": "string"},
    },
    ["decision"],
)


def test_snapshot_approval_event_at_80x24(snap_compare: Any) -> None:
    # The approval example's event form in the smallest terminal we support.
    assert snap_compare(
        host(APPROVAL_EVENT),
        terminal_size=(80, 24),
        press=["down", "down", "space", "tab", *"split it", "ctrl+s"],
    )


def test_snapshot_approval_event_compact_at_80x24(snap_compare: Any) -> None:
    assert snap_compare(
        host(APPROVAL_EVENT, compact=True), terminal_size=(80, 24), press=["ctrl+s"]
    )
