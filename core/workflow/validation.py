"""Checks on a parsed workflow document: JSON schema, duplicate step ids, referential warnings.

Every message is one line that starts with a JSON path into the document
(`workflow.steps[2].command: 42 is not of type 'string' or 'array'`), so a person or an
agent can find the offending field without reading a Python repr of a whole step.

Errors (schema, duplicate ids) reject the document; warnings (unknown jump targets,
expressions that do not parse, unreachable steps) never do: checkpointflow accepts those
documents, so `cpf` reports them and carries on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError as SchemaError

SCHEMA_PATH = Path(__file__).with_name("schema.json")
ROOT = "document"  # path label for the document itself
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHORT = 60  # longest rendering of a value inside a message

PathPart = str | int


# --- schema --------------------------------------------------------------------------------


@cache
def workflow_schema() -> dict[str, Any]:
    """The cpf workflow JSON schema (package data), read once."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Draft202012Validator:
    # Imported here: jsonschema costs tens of milliseconds and only validation needs it.
    from jsonschema import Draft202012Validator, validators

    # `x-dispatch` picks a step's schema by its `kind`: one lookup instead of an `if` per
    # kind (eight subschema evaluations per step), and errors still point at the field.
    root = workflow_schema()

    def resolve(pointer: str) -> Any:  # "#/$defs/cliStep" -> that subschema
        node: Any = root
        for part in pointer.lstrip("#/").split("/"):
            node = node[part]
        return node

    targets = {kind: resolve(ptr) for kind, ptr in root["$defs"]["step"]["x-dispatch"].items()}

    def dispatch(validator: Any, _mapping: Any, instance: Any, _schema: Any) -> Any:
        if isinstance(instance, dict) and isinstance(instance.get("kind"), str):
            target = targets.get(instance["kind"])
            if target is not None:
                yield from validator.descend(instance, target)

    cls = validators.extend(Draft202012Validator, {"x-dispatch": dispatch})
    return cls(root)


def schema_errors(doc: Any) -> list[str]:
    """One-line messages for everything in `doc` the schema rejects (empty when valid).

    Ordered by position in the document; duplicates removed.
    """
    if doc is None:
        return [f"{ROOT}: the workflow file is empty"]
    if not isinstance(doc, dict):
        return [
            f"{ROOT}: expected a mapping with 'schema_version' and 'workflow', "
            f"got {_type_name(doc)}"
        ]
    # Sorted by position, then text, so the order does not depend on the schema's layout.
    keyed = sorted(
        (_sort_key(err.absolute_path), msg)
        for err in _validator().iter_errors(doc)
        for msg in _messages(err)
    )
    return list(dict.fromkeys(msg for _, msg in keyed))


def _sort_key(path: Iterable[PathPart]) -> tuple[tuple[int, int | str], ...]:
    # ints and strings never compare directly; list indexes sort numerically
    return tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in path)


def _messages(err: SchemaError) -> list[str]:
    """Render one jsonschema error as one or more one-line messages."""
    where = format_path(err.absolute_path)
    kw = err.validator
    inst = err.instance
    val = err.validator_value
    # `x-error` in the schema: a hand-written message per failing keyword
    custom = err.schema.get("x-error", {}) if isinstance(err.schema, dict) else {}
    if "propertyNames" in err.relative_schema_path:
        reason = custom.get(kw) or _bare_message(err)
        return [f"{where}: invalid name {_short(inst)}: {reason}"]
    if kw in custom:
        return [f"{where}: {custom[kw]}"]
    if kw == "required":
        missing = [k for k in val if isinstance(inst, dict) and k not in inst]
        return [f"{where}: missing required field {k!r}" for k in missing]
    if kw in ("additionalProperties", "unevaluatedProperties") and val is False:
        allowed = set(err.schema.get("properties", {}))
        extras = [k for k in inst if k not in allowed] if isinstance(inst, dict) else []
        return [f"{where}: unexpected field {_key_repr(k)}{_yaml_key_hint(k)}" for k in extras]
    return [f"{where}: {_bare_message(err)}"]


def _bare_message(err: SchemaError) -> str:
    """The message without a path; values shortened, never a whole-object repr."""
    kw, inst, val = err.validator, err.instance, err.validator_value
    if kw == "type":
        types = [val] if isinstance(val, str) else list(val)
        expected = " or ".join(repr(t) for t in types)
        msg = f"{_short(inst)} is not of type {expected}"
        if isinstance(inst, bool) and "boolean" not in types:
            msg += " (YAML reads unquoted yes/no/on/off/true/false as booleans; quote the value)"
        return msg
    if kw == "enum":
        return f"{_short(inst)} is not one of {val!r}"
    if kw == "const":
        return f"must be {val!r}, got {_short(inst)}"
    if kw == "minLength":
        return "must not be empty" if val == 1 else f"must be at least {val} characters long"
    if kw == "minItems":
        return "must not be empty" if val == 1 else f"must have at least {val} items"
    if kw == "minimum":
        return f"{_short(inst)} is less than the minimum of {val}"
    if kw == "maximum":
        return f"{_short(inst)} is greater than the maximum of {val}"
    if kw == "pattern":
        return f"{_short(inst)} does not match {val!r}"
    if kw in ("oneOf", "anyOf"):
        if err.context:  # say what the closest alternative wanted
            from jsonschema.exceptions import best_match

            best = best_match(err.context)
            if best is not None:
                return _bare_message(best)
        return "does not match any of the allowed forms"
    # Any other keyword: jsonschema's text, cut to one short line.
    return _truncate(" ".join(str(err.message).split()), 160)


# --- duplicate ids -------------------------------------------------------------------------


def duplicate_step_ids(doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Step ids used more than once in one step list (the top level, or one foreach body).

    Returns (ids in order of first repetition, one-line detail per repeated use).
    An id reused across lists is only a warning (checkpointflow accepts it; each list is
    its own context). Assumes `doc` passed the schema.
    """
    dups: list[str] = []
    details: list[str] = []
    for steps, base in _step_lists(doc["workflow"]["steps"], ("workflow", "steps")):
        first_seen: dict[str, str] = {}
        for i, step in enumerate(steps):
            sid = step["id"]
            here = f"{format_path((*base, i))}.id"
            if sid in first_seen:
                if sid not in dups:
                    dups.append(sid)
                details.append(f"{here}: step id {sid!r} already used at {first_seen[sid]}")
            else:
                first_seen[sid] = here
    return dups, details


def _step_lists(
    steps: Sequence[dict[str, Any]], base: tuple[PathPart, ...]
) -> Iterator[tuple[Sequence[dict[str, Any]], tuple[PathPart, ...]]]:
    yield steps, base
    for i, step in enumerate(steps):
        body = step.get("body") if step.get("kind") == "foreach" else None
        if isinstance(body, list):
            yield from _step_lists(body, (*base, i, "body"))


def _shadowed_ids(doc: dict[str, Any]) -> list[str]:
    """Warnings for ids reused in another step list (legal, but easy to misread)."""
    seen: dict[str, str] = {}
    out: list[str] = []
    for path, step in iter_steps(doc["workflow"]["steps"]):
        sid = step.get("id")
        here = f"{format_path(path)}.id"
        if sid in seen and seen[sid] != here:
            out.append(
                f"{here}: step id {sid!r} is also used at {seen[sid]}; inside its own list "
                "${steps." + str(sid) + ".outputs} means this one"
            )
        else:
            seen.setdefault(sid, here)
    return out


def iter_steps(
    steps: Sequence[dict[str, Any]], base: tuple[PathPart, ...] = ("workflow", "steps")
) -> Iterator[tuple[tuple[PathPart, ...], dict[str, Any]]]:
    """Every step with its path, depth first, foreach bodies right after their step."""
    for i, step in enumerate(steps):
        path = (*base, i)
        yield path, step
        body = step.get("body") if step.get("kind") == "foreach" else None
        if isinstance(body, list):
            yield from iter_steps(body, (*path, "body"))


# --- warnings ------------------------------------------------------------------------------

# Step fields whose strings may contain `${...}` templates, interpolated at run time.
_TEMPLATE_FIELDS = (
    "command",
    "cwd",
    "env",
    "prompt",
    "summary",
    "url",
    "headers",
    "body",
    "result",
    "inputs",
    "workflow_ref",
)


def workflow_warnings(doc: dict[str, Any]) -> list[str]:
    """Non-fatal problems in a schema-valid document, each a one-line message with a path."""
    # Local import: core.expr is only needed here, and only once the schema passed.
    from core.expr import ExprError, check_expression, check_template

    wf = doc["workflow"]
    all_ids = {step["id"] for _, step in iter_steps(wf["steps"])}
    warnings: list[str] = []
    warnings += _defaults_warnings(wf.get("defaults"))
    warnings += _schema_warnings(wf["inputs"], ("workflow", "inputs"))
    warnings += _shadowed_ids(doc)

    def scan(steps: list[dict[str, Any]], base: tuple[PathPart, ...]) -> None:
        scope = {s["id"] for s in steps}
        for i, step in enumerate(steps):
            path = (*base, i)
            for tpath, target in _jump_targets(step, path):
                if target not in scope:
                    warnings.append(f"{format_path(tpath)}: {_unknown(target, scope, all_ids)}")
            for epath, text in _expressions(step, path):
                try:
                    check_expression(text)
                except ExprError as exc:
                    warnings.append(f"{format_path(epath)}: {_one_line(exc)}")
            for field in ("outputs", "input_schema"):
                if isinstance(step.get(field), dict):
                    warnings.extend(_schema_warnings(step[field], (*path, field)))
            for field in _TEMPLATE_FIELDS:
                if field == "body" and step.get("kind") == "foreach":
                    continue  # a list of steps, scanned below
                if field in step:
                    for spath, text in _strings(step[field], (*path, field)):
                        try:
                            check_template(text)
                        except ExprError as exc:
                            warnings.append(f"{format_path(spath)}: {_one_line(exc)}")
            ref = step.get("workflow_ref")
            if isinstance(ref, str) and "${" in ref:
                warnings.append(
                    f"{format_path((*path, 'workflow_ref'))}: {_short(ref)} is interpolated, "
                    "so run input can choose which file runs; at run time a ref outside this "
                    "workflow's folder is refused unless defaults.workflow.allow_outside is true"
                )
            if step.get("kind") == "foreach" and isinstance(step.get("body"), list):
                scan(step["body"], (*path, "body"))
        warnings.extend(_unreachable(steps, base))

    scan(wf["steps"], ("workflow", "steps"))
    return warnings


def _jump_targets(
    step: dict[str, Any], path: tuple[PathPart, ...]
) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """(path of the field, target id) for every jump a step can make."""
    kind = step.get("kind")
    if kind == "await_event":
        for j, tr in enumerate(step.get("transitions") or []):
            yield (*path, "transitions", j, "next"), tr["next"]
        nxt = (step.get("on_timeout") or {}).get("next")
        if nxt is not None:
            yield (*path, "on_timeout", "next"), nxt
    elif kind == "switch":
        for j, case in enumerate(step["cases"]):
            yield (*path, "cases", j, "next"), case["next"]
        if step.get("default") is not None:
            yield (*path, "default"), step["default"]
    elif kind == "parallel":
        for j, br in enumerate(step["branches"]):
            yield (*path, "branches", j, "start_at"), br["start_at"]


def _expressions(
    step: dict[str, Any], path: tuple[PathPart, ...]
) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """Conditions and paths that are parsed as a whole expression at run time."""
    if "if" in step:
        yield (*path, "if"), step["if"]
    kind = step.get("kind")
    if kind == "await_event":
        for j, tr in enumerate(step.get("transitions") or []):
            yield (*path, "transitions", j, "when"), tr["when"]
    elif kind == "switch":
        for j, case in enumerate(step["cases"]):
            yield (*path, "cases", j, "when"), case["when"]
    elif kind == "foreach":
        yield (*path, "items"), step["items"]


def _strings(value: Any, path: tuple[PathPart, ...]) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """Every string inside a JSON-like value (dict values and list items), with its path."""
    if isinstance(value, str):
        if "${" in value:  # most strings hold no template: skip the parser call
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _unreachable(steps: list[dict[str, Any]], base: tuple[PathPart, ...]) -> list[str]:
    """Steps of one list that neither falling through nor any jump can reach.

    Falling through stops after an `end` and after a `switch` with a known `default` (it
    always jumps), unless that step has an `if`: a skipped step falls through. A switch without
    a default is assumed to fall through, so this never claims too much.
    """
    index = {s["id"]: i for i, s in enumerate(steps)}
    reached: set[int] = set()
    todo = [0]
    while todo:
        i = todo.pop()
        if i in reached or i >= len(steps):
            continue
        reached.add(i)
        step = steps[i]
        # a switch whose default is unknown may fall through (that target is warned about)
        blocks = step.get("kind") == "end" or (
            step.get("kind") == "switch" and step.get("default") in index
        )
        if not blocks or "if" in step:
            todo.append(i + 1)
        todo.extend(index[t] for _, t in _jump_targets(step, (*base, i)) if t in index)
    out = []
    for i, step in enumerate(steps):
        if i in reached:
            continue
        prev = steps[i - 1]  # never step 0: it is always reached
        after = (
            f"{prev['kind']} step {prev['id']!r}"
            if i - 1 in reached
            else f"unreachable step {prev['id']!r}"
        )
        out.append(
            f"{format_path((*base, i))}: step {step['id']!r} is unreachable "
            f"(it follows {after} and no reachable step jumps to it)"
        )
    return out


@cache
def _meta_validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def _schema_warnings(schema: dict[str, Any], path: tuple[PathPart, ...]) -> list[str]:
    """A JSON Schema the run will use that is itself invalid (it would fail only at run time)."""
    out = []
    errors = sorted(_meta_validator().iter_errors(schema), key=lambda e: _sort_key(e.absolute_path))
    for err in errors:
        out.append(
            f"{format_path((*path, *err.absolute_path))}: not a valid JSON Schema: "
            f"{_bare_message(err)}"
        )
    return out


def _unknown(target: str, scope: set[str], all_ids: set[str]) -> str:
    if target in all_ids:
        return f"step {target!r} is not in this step list (jumps stay within one list)"
    msg = f"unknown step {target!r}"
    if scope:
        from difflib import get_close_matches

        close = get_close_matches(target, sorted(scope), n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    return msg


def _defaults_warnings(defaults: Any) -> list[str]:
    """Known `defaults` keys with the wrong type (the object itself is free-form)."""
    if not isinstance(defaults, dict):
        return []
    out = []
    shell = defaults.get("shell")
    if shell is not None and not isinstance(shell, str):
        out.append(f"workflow.defaults.shell: {_short(shell)} is not of type 'string'")
    mob = defaults.get("max_output_bytes")
    if mob is not None and (isinstance(mob, bool) or not isinstance(mob, int) or mob < 1024):
        out.append(f"workflow.defaults.max_output_bytes: {_short(mob)} is not an integer >= 1024")
    for section, flag in (("api", "allow_private"), ("workflow", "allow_outside")):
        value = defaults.get(section)
        where = f"workflow.defaults.{section}"
        if value is None:
            continue
        if not isinstance(value, dict):
            out.append(f"{where}: {_short(value)} is not of type 'object'")
        elif flag in value and not isinstance(value[flag], bool):
            out.append(f"{where}.{flag}: {_short(value[flag])} is not of type 'boolean'")
    return out


# --- formatting ----------------------------------------------------------------------------


def format_path(parts: Iterable[PathPart]) -> str:
    """`workflow.steps[2].env["MY-VAR"]` from ("workflow", "steps", 2, "env", "MY-VAR")."""
    out = ""
    for p in parts:
        if isinstance(p, int) and not isinstance(p, bool):
            out += f"[{p}]"
        elif isinstance(p, str) and _IDENT.match(p):
            out += f".{p}" if out else p
        else:
            out += f"[{json.dumps(p if isinstance(p, str) else str(p))}]"
    return out or ROOT


def _short(value: Any) -> str:
    """A value for a message: strings as Python reprs (like jsonschema), the rest as JSON."""
    if isinstance(value, str):
        return _truncate(repr(value), _SHORT)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _truncate(text, _SHORT)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key_repr(key: Any) -> str:
    return _short(key) if isinstance(key, str) else _short(key) + f" ({_type_name(key)} key)"


def _yaml_key_hint(key: Any) -> str:
    if isinstance(key, bool):
        return "; YAML reads an unquoted on/off/yes/no key as a boolean, quote it"
    return ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
