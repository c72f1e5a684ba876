"""Unit tests for core.workflow: loading, schema errors, duplicate ids and warnings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.envelope import ErrorCode, ExitCode, ValidationError
from core.workflow import validation
from core.workflow.loader import LoadedWorkflow, load_workflow, load_workflow_text, sha256_file

HEAD = """\
schema_version: checkpointflow/v1
workflow:
  id: demo
  inputs: {type: object}
  steps:
"""

ALL_KINDS = """\
schema_version: checkpointflow/v1
workflow:
  id: all_kinds
  name: All kinds
  description: one step of every kind
  version: "1.2"
  defaults: {shell: bash, max_output_bytes: 4096, api: {allow_private: true}}
  inputs:
    type: object
    properties:
      xs: {type: array}
  outputs: {type: object}
  steps:
    - id: build
      kind: cli
      name: Build
      description: compile
      if: inputs.mode != "skip"
      timeout_seconds: 30
      risk_level: low
      tags: [ci]
      command: ["make", "make test"]
      shell: sh
      cwd: /tmp
      env: {NAME: "${inputs.name}", COUNT: 3, DEBUG: true, EMPTY: null}
      max_output_bytes: 2048
      success: {exit_codes: [0, 2]}
      outputs: {type: object}
      retry: {max_attempts: 3, backoff_seconds: 0.5, strategy: exponential}
    - id: fetch
      kind: api
      method: POST
      url: "https://example.com/${inputs.name}"
      headers: {Content-Type: application/json}
      body: {name: "${inputs.name}"}
      success: {status_codes: [200, 201]}
    - id: approve
      kind: await_event
      audience: user
      event_name: approval
      prompt: "Approve ${inputs.name}?"
      summary: summary
      input_schema: {type: object, properties: {ok: {type: boolean}}}
      transitions:
        - {when: "event.ok == true", next: fan}
        - {when: "${event.ok == false}", next: rejected}
      on_timeout: {next: rejected}
      timeout_seconds: 3600
    - id: fan
      kind: parallel
      branches: [{start_at: left}, {start_at: right}]
    - id: route
      kind: switch
      cases: [{when: "steps.fetch.outputs.n > 1", next: loop}]
      default: sub
    - id: left
      kind: cli
      command: echo left
    - id: right
      kind: cli
      command: echo right
    - id: loop
      kind: foreach
      items: inputs.xs
      body:
        - id: each
          kind: cli
          command: echo ${item}
        - id: each_end
          kind: end
    - id: sub
      kind: workflow
      workflow_ref: child.yaml
      inputs: {x: "${inputs.name}"}
    - id: done
      kind: end
      result: {name: "${inputs.name}", n: 1}
    - id: rejected
      kind: end
"""


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def with_steps(steps_yaml: str, head: str = HEAD) -> str:
    return head + textwrap.indent(textwrap.dedent(steps_yaml), "    ")


def load_steps(tmp_path: Path, steps_yaml: str) -> LoadedWorkflow:
    return load_workflow(write(tmp_path, with_steps(steps_yaml)))


def load_error(tmp_path: Path, text: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        load_workflow(write(tmp_path, text))
    err = info.value
    assert err.exit_code == ExitCode.VALIDATION_ERROR
    return err


def schema_details(tmp_path: Path, steps_yaml: str) -> list[str]:
    err = load_error(tmp_path, with_steps(steps_yaml))
    assert err.code == ErrorCode.ERR_VALIDATION_WORKFLOW
    assert isinstance(err.details, list)
    assert err.message == f"Workflow validation failed with {len(err.details)} error(s)."
    for line in err.details:
        assert "\n" not in line
        assert re.match(r'^(document|[a-z_]+)(\.\w+|\[\d+\]|\["[^"]*"\])*: ', line), line
    return err.details


# --- successful loads ------------------------------------------------------------------------


def test_all_kinds_load_without_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, ALL_KINDS)
    wf = load_workflow(path)
    assert wf.warnings == []
    assert wf.path == path.absolute() and wf.path.is_absolute()
    assert wf.text == ALL_KINDS
    assert wf.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    assert (wf.id, wf.name, wf.description, wf.version) == (
        "all_kinds",
        "All kinds",
        "one step of every kind",
        "1.2",
    )
    assert wf.inputs_schema["properties"]["xs"] == {"type": "array"}
    assert wf.defaults["shell"] == "bash"
    assert wf.workflow is wf.doc["workflow"]
    assert [s["id"] for s in wf.steps][:3] == ["build", "fetch", "approve"]
    # top-level lookups only: foreach body steps are not jump targets
    assert wf.index_of["done"] == 9 and wf.step_by_id["done"]["kind"] == "end"
    assert "each" not in wf.step_by_id
    paths = dict(wf.iter_steps())
    assert paths["workflow.steps[7].body[0]"]["id"] == "each"


def test_minimal_document_and_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, with_steps("- {id: only, kind: end}\n"))
    monkeypatch.chdir(tmp_path)
    wf = load_workflow("wf.yaml")
    assert wf.path == tmp_path / "wf.yaml"
    assert wf.version is None and wf.name is None and wf.defaults == {}


def test_load_workflow_text_hash_matches_file(tmp_path: Path) -> None:
    path = write(tmp_path, ALL_KINDS)
    again = load_workflow_text(path.read_text(encoding="utf-8"), path)
    assert again.sha256 == sha256_file(path)
    assert again.doc == load_workflow(path).doc


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + with_steps("- {id: a, kind: end}\n").encode())
    assert load_workflow(path).id == "demo"


@pytest.mark.parametrize(
    "steps",
    [
        # fields checkpointflow 1.10 does not know, accepted by cpf
        "- {id: a, kind: cli, command: x, retry: {max_attempts: 1}}",
        "- {id: a, kind: end, retry: {strategy: fixed, backoff_seconds: 0}}",
        "- {id: a, kind: cli, command: x, env: {A: '1', B: 2.5}, max_output_bytes: 1024}",
        # checkpointflow-compatible corners
        "- {id: a, kind: cli, command: [a, b], timeout_seconds: 5.0}",
        "- {id: a, kind: foreach, items: inputs.xs, body: []}",
        "- {id: a, kind: foreach, items: inputs.xs, workflow_ref: child.yaml}",
        "- {id: a, kind: await_event, audience: agent, event_name: e, input_schema: {},"
        " on_timeout: {}}",
        "- {id: a, kind: api, method: GET, url: 'https://x', success: {exit_codes: []}}",
        "- {id: a, kind: end, result: null, inputs: {anything: [1]}}",
    ],
)
def test_accepted_steps(tmp_path: Path, steps: str) -> None:
    load_steps(tmp_path, steps + "\n")


def test_defaults_is_free_form(tmp_path: Path) -> None:
    head = HEAD.replace("  steps:", "  defaults: {custom: [1], shell: 5}\n  steps:")
    wf = load_workflow(write(tmp_path, with_steps("- {id: a, kind: end}\n", head)))
    # a known key with the wrong type only warns
    assert wf.warnings == ["workflow.defaults.shell: 5 is not of type 'string'"]


# --- file and YAML errors --------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_workflow(tmp_path / "nope.yaml")
    assert info.value.code == ErrorCode.ERR_FILE_NOT_FOUND
    assert info.value.message == f"Workflow file not found: {tmp_path / 'nope.yaml'}"
    assert info.value.exit_code == 10


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_workflow(tmp_path)
    assert info.value.code == ErrorCode.ERR_VALIDATION_WORKFLOW
    assert info.value.message == f"Expected a file, got a directory: {tmp_path}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, ALL_KINDS)
    path.chmod(0)
    try:
        with pytest.raises(ValidationError) as info:
            load_workflow(path)
    finally:
        path.chmod(0o644)
    assert info.value.code == ErrorCode.ERR_FILE_NOT_FOUND
    assert "not readable" in info.value.message


def test_yaml_error_is_one_line_with_position(tmp_path: Path) -> None:
    err = load_error(tmp_path, with_steps("- id: a\n  kind: cli\n  command: echo a: b\n"))
    assert err.code == ErrorCode.ERR_YAML_PARSE
    assert "\n" not in err.message
    assert err.message.startswith("YAML parse error at line 8, column 22: mapping values")
    assert "quoted" in err.message


def test_yaml_flow_error_names_both_positions(tmp_path: Path) -> None:
    err = load_error(tmp_path, "a: [1, 2\nb: 3\n")
    assert err.code == ErrorCode.ERR_YAML_PARSE
    assert err.message == (
        "YAML parse error at line 2, column 2: did not find expected ',' or ']' "
        "(while parsing a flow sequence at line 1, column 4)"
    )


def test_two_documents_are_a_yaml_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, with_steps("- {id: a, kind: end}\n") + "---\nb: 1\n")
    assert err.code == ErrorCode.ERR_YAML_PARSE


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(with_steps("- {id: caf\xe9, kind: end}\n").encode("latin-1"))
    with pytest.raises(ValidationError) as info:
        load_workflow(path)
    assert info.value.code == ErrorCode.ERR_YAML_PARSE
    assert "UTF-8" in info.value.message


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "document: the workflow file is empty"),
        (
            "- a\n- b\n",
            "document: expected a mapping with 'schema_version' and 'workflow', got a list",
        ),
        (
            "hello\n",
            "document: expected a mapping with 'schema_version' and 'workflow', got a string",
        ),
    ],
)
def test_non_mapping_document(tmp_path: Path, text: str, detail: str) -> None:
    err = load_error(tmp_path, text)
    assert err.code == ErrorCode.ERR_VALIDATION_WORKFLOW
    assert err.message == "Workflow validation failed with 1 error(s)."
    assert err.details == [detail]


# --- schema errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "- {id: a, kind: cli, command: 42}",
            ["workflow.steps[0].command: 42 is not of type 'string' or 'array'"],
        ),
        (
            "- {id: a, kind: cli, command: {x: 1}}",
            ["workflow.steps[0].command: {\"x\": 1} is not of type 'string' or 'array'"],
        ),
        ("- {id: a, kind: cli, command: []}", ["workflow.steps[0].command: must not be empty"]),
        (
            "- {id: a, kind: cli, command: [echo, 1]}",
            ["workflow.steps[0].command[1]: 1 is not of type 'string'"],
        ),
        (
            "- {id: a, kind: cli, comand: echo}",
            [
                "workflow.steps[0]: missing required field 'command'",
                "workflow.steps[0]: unexpected field 'comand'",
            ],
        ),
        (
            "- {id: a, kind: await_event, audience: admin, event_name: e, input_schema: {}}",
            ["workflow.steps[0].audience: 'admin' is not one of ['user', 'agent', 'system']"],
        ),
        (
            "- {id: a, kind: foo, command: x}",
            [
                "workflow.steps[0].kind: 'foo' is not one of ['cli', 'api', 'await_event', "
                "'workflow', 'switch', 'foreach', 'parallel', 'end']"
            ],
        ),
        ("- {id: a, command: x}", ["workflow.steps[0]: missing required field 'kind'"]),
        ("- {id: '', kind: end}", ["workflow.steps[0].id: must not be empty"]),
        ("- echo hi", ["workflow.steps[0]: 'echo hi' is not of type 'object'"]),
        (
            "- {id: a, kind: foreach, items: xs}",
            ["workflow.steps[0]: a foreach step needs exactly one of 'body' or 'workflow_ref'"],
        ),
        (
            "- {id: a, kind: foreach, items: xs, body: [], workflow_ref: c.yaml}",
            ["workflow.steps[0]: a foreach step needs exactly one of 'body' or 'workflow_ref'"],
        ),
        (
            "- {id: a, kind: foreach, items: xs, body: [{id: b, kind: cli, command: 7}]}",
            ["workflow.steps[0].body[0].command: 7 is not of type 'string' or 'array'"],
        ),
        (
            "- {id: a, kind: cli, command: x, result: 1}",
            ["workflow.steps[0]: unexpected field 'result'"],
        ),
        (
            "- {id: a, kind: end, timeout_seconds: -1}",
            ["workflow.steps[0].timeout_seconds: -1 is less than the minimum of 0"],
        ),
        (
            "- {id: a, kind: api, method: GET, url: 'https://x', success: {status_codes: [99]}}",
            ["workflow.steps[0].success.status_codes[0]: 99 is less than the minimum of 100"],
        ),
        (
            "- {id: a, kind: switch, cases: [{when: x, next: a, then: b}]}",
            ["workflow.steps[0].cases[0]: unexpected field 'then'"],
        ),
        (
            "- {id: a, kind: end, retry: {max_attempts: 0, strategy: linear, delay: 1}}",
            [
                "workflow.steps[0].retry: unexpected field 'delay'",
                "workflow.steps[0].retry.max_attempts: 0 is less than the minimum of 1",
                "workflow.steps[0].retry.strategy: 'linear' is not one of ['fixed', 'exponential']",
            ],
        ),
        (
            "- {id: a, kind: cli, command: x, env: {A: [1]}, max_output_bytes: 10}",
            [
                "workflow.steps[0].env.A: [1] is not of type 'string' or 'number' or "
                "'boolean' or 'null'",
                "workflow.steps[0].max_output_bytes: 10 is less than the minimum of 1024",
            ],
        ),
        (
            "- {id: a, kind: cli, command: x, env: {'A=B': x}}",
            [
                "workflow.steps[0].env: invalid name 'A=B': an environment variable name "
                "must be non-empty and contain no '=' or NUL"
            ],
        ),
    ],
)
def test_schema_error_messages(tmp_path: Path, steps: str, expected: list[str]) -> None:
    assert schema_details(tmp_path, steps + "\n") == expected


def test_yaml_boolean_surprises_get_a_hint(tmp_path: Path) -> None:
    details = schema_details(tmp_path, "- id: no\n  kind: end\n- id: b\n  kind: end\n  on: x\n")
    assert details[0].startswith("workflow.steps[0].id: false is not of type 'string' (YAML")
    assert details[1].startswith("workflow.steps[1]: unexpected field true (a boolean key); YAML")


def test_top_level_errors(tmp_path: Path) -> None:
    text = (
        "schema_version: checkpointflow/v2\nextra: 1\n"
        "workflow:\n  id: w\n  version: 1.5\n  bogus: 1\n  steps: []\n"
    )
    assert load_error(tmp_path, text).details == [
        "document: unexpected field 'extra'",
        "schema_version: must be 'checkpointflow/v1', got 'checkpointflow/v2'",
        "workflow: missing required field 'inputs'",
        "workflow: unexpected field 'bogus'",
        "workflow.steps: must not be empty",
        "workflow.version: 1.5 is not of type 'string'",
    ]


def test_errors_are_in_document_order_and_values_truncated(tmp_path: Path) -> None:
    steps = "".join(f"- {{id: s{i}, kind: end}}\n" for i in range(11))
    steps += "- {id: s11, kind: cli, command: " + "9" * 500 + "}\n"
    steps += "- {id: s12, kind: end, name: [" + ", ".join(["x" * 50] * 20) + "]}\n"
    steps = steps.replace("{id: s2, kind: end}", "{id: s2, kind: end, tags: 1}")
    details = schema_details(tmp_path, steps)
    assert [d.split(":")[0] for d in details] == [
        "workflow.steps[2].tags",
        "workflow.steps[11].command",
        "workflow.steps[12].name",
    ]
    assert all(len(d) < 160 for d in details), details
    assert "…" in details[1] and "…" in details[2]


# --- duplicate ids ---------------------------------------------------------------------------


def test_duplicate_ids(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        with_steps(
            """\
            - {id: a, kind: end}
            - {id: b, kind: foreach, items: xs, body: [{id: c, kind: end}, {id: c, kind: end}]}
            - {id: c, kind: end}
            - {id: a, kind: end}
            """
        ),
    )
    assert err.code == ErrorCode.ERR_DUPLICATE_STEP_ID
    assert err.message == "Duplicate step ID(s): a, c"
    assert err.details == [
        "workflow.steps[3].id: step id 'a' already used at workflow.steps[0].id",
        "workflow.steps[1].body[1].id: step id 'c' already used at workflow.steps[1].body[0].id",
    ]


def test_id_reused_in_another_list_is_a_warning(tmp_path: Path) -> None:
    # checkpointflow accepts it; each list is its own context, so cpf warns only.
    wf = load_steps(
        tmp_path,
        """\
        - {id: a, kind: end}
        - {id: b, kind: foreach, items: xs, body: [{id: a, kind: end}]}
        """,
    )
    assert any(
        w.startswith("workflow.steps[1].body[0].id: step id 'a' is also used at")
        for w in wf.warnings
    )


def test_schema_errors_come_before_duplicates(tmp_path: Path) -> None:
    err = load_error(tmp_path, with_steps("- {id: a, kind: end}\n- {id: a, kind: cli}\n"))
    assert err.code == ErrorCode.ERR_VALIDATION_WORKFLOW


# --- warnings --------------------------------------------------------------------------------


def test_unknown_targets_warn(tmp_path: Path) -> None:
    wf = load_steps(
        tmp_path,
        """\
        - id: ask
          kind: await_event
          audience: user
          event_name: e
          input_schema: {}
          transitions: [{when: "event.ok", next: aprove}]
          on_timeout: {next: gone}
        - id: route
          kind: switch
          cases: [{when: "true", next: approve}]
          default: nowhere
        - id: fan
          kind: parallel
          branches: [{start_at: approve}, {start_at: inner}]
        - id: loop
          kind: foreach
          items: inputs.xs
          body:
            - {id: inner, kind: switch, cases: [{when: "true", next: approve}]}
        - id: approve
          kind: end
        """,
    )
    assert wf.warnings == [
        "workflow.steps[0].transitions[0].next: unknown step 'aprove' (did you mean 'approve'?)",
        "workflow.steps[0].on_timeout.next: unknown step 'gone'",
        "workflow.steps[1].default: unknown step 'nowhere'",
        "workflow.steps[2].branches[1].start_at: step 'inner' is not in this step list "
        "(jumps stay within one list)",
        "workflow.steps[3].body[0].cases[0].next: step 'approve' is not in this step list "
        "(jumps stay within one list)",
    ]


def test_expressions_and_templates_that_do_not_parse_warn(tmp_path: Path) -> None:
    wf = load_steps(
        tmp_path,
        """\
        - id: a
          kind: cli
          if: "inputs.x =="
          command: ["echo ${inputs.ok}", "echo ${#arr[@]}"]
          cwd: "${inputs.dir"
          env: {A: "${inputs.a b}", B: 1}
        - id: b
          kind: api
          method: POST
          url: "https://x/${}"
          headers: {X-Token: "${steps..x}"}
          body: {nested: ["fine", "${(}"]}
        - id: c
          kind: switch
          cases: [{when: "a ==", next: d}]
        - id: d
          kind: end
          result: {r: "${inputs.x)}", shell: "$${HOME}"}
        """,
    )
    paths = [w.split(": ")[0] for w in wf.warnings]
    assert paths == [
        "workflow.steps[0].if",
        "workflow.steps[0].command[1]",
        "workflow.steps[0].cwd",
        "workflow.steps[0].env.A",
        "workflow.steps[1].url",
        'workflow.steps[1].headers["X-Token"]',
        "workflow.steps[1].body.nested[1]",
        "workflow.steps[2].cases[0].when",
        "workflow.steps[3].result.r",
    ]
    assert all("\n" not in w for w in wf.warnings)


def test_unreachable_steps(tmp_path: Path) -> None:
    wf = load_steps(
        tmp_path,
        """\
        - {id: start, kind: cli, command: x}
        - {id: stop, kind: end}
        - {id: orphan, kind: cli, command: x}
        - {id: orphan2, kind: end}
        - {id: route, kind: switch, cases: [{when: "true", next: stop}], default: stop}
        """,
    )
    assert wf.warnings == [
        "workflow.steps[2]: step 'orphan' is unreachable (it follows end step 'stop' and "
        "no reachable step jumps to it)",
        "workflow.steps[3]: step 'orphan2' is unreachable (it follows unreachable step "
        "'orphan' and no reachable step jumps to it)",
        "workflow.steps[4]: step 'route' is unreachable (it follows unreachable step "
        "'orphan2' and no reachable step jumps to it)",
    ]


def test_steps_reached_by_jumps_or_skipped_ends_are_reachable(tmp_path: Path) -> None:
    wf = load_steps(
        tmp_path,
        """\
        - {id: route, kind: switch, cases: [{when: "inputs.a", next: a}], default: b}
        - {id: a, kind: cli, command: x}
        - {id: a_end, kind: end}
        - {id: b, kind: cli, command: x}
        - {id: maybe_end, kind: end, if: inputs.stop}
        - {id: after, kind: parallel, branches: [{start_at: branch}]}
        - {id: fin, kind: end}
        - {id: branch, kind: cli, command: x}
        - {id: ask, kind: await_event, audience: user, event_name: e, input_schema: {}}
        """,
    )
    # `ask` is only reached from `branch`, which falls through to it
    assert wf.warnings == []


def test_invalid_json_schemas_warn(tmp_path: Path) -> None:
    head = HEAD.replace("inputs: {type: object}", "inputs: {type: objet}")
    wf = load_workflow(
        write(
            tmp_path,
            with_steps(
                """\
                - id: a
                  kind: await_event
                  audience: user
                  event_name: e
                  input_schema: {required: ok}
                  outputs: {properties: {n: {minimum: x}}}
                """,
                head,
            ),
        )
    )
    assert wf.warnings == [
        "workflow.inputs.type: not a valid JSON Schema: 'objet' is not one of ['array', "
        "'boolean', 'integer', 'null', 'number', 'object', 'string']",
        "workflow.steps[0].outputs.properties.n.minimum: not a valid JSON Schema: "
        "'x' is not of type 'number'",
        "workflow.steps[0].input_schema.required: not a valid JSON Schema: "
        "'ok' is not of type 'array'",
    ]


# --- helpers and packaging -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        ((), "document"),
        (("workflow", "steps", 2, "command"), "workflow.steps[2].command"),
        (("env", "MY-VAR"), 'env["MY-VAR"]'),
        (("inputs", 1), "inputs[1]"),
        (("x", True), 'x["True"]'),
    ],
)
def test_format_path(parts: tuple[Any, ...], text: str) -> None:
    assert validation.format_path(parts) == text


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(validation.workflow_schema())
    schema = json.loads(validation.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _run_python(code: str) -> str:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def test_package_import_is_light() -> None:
    out = _run_python(
        "import sys, core.workflow; "
        "print(sorted(m for m in ('yaml', 'jsonschema', 'core.workflow.loader') "
        "if m in sys.modules))"
    )
    assert out == "[]"


def test_loading_does_not_import_heavy_modules(tmp_path: Path) -> None:
    path = write(tmp_path, ALL_KINDS)
    out = _run_python(
        "import sys; from core.workflow import load_workflow; "
        f"wf = load_workflow({str(path)!r}); "
        "heavy = ('sqlalchemy', 'sqlmodel', 'textual', 'pydantic', 'httpx', 'rich'); "
        "print(wf.id, sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))"
    )
    assert out == "all_kinds []"


def test_yaml_dates_stay_strings(tmp_path: Path) -> None:
    # Workflow values must be JSON: an unquoted date is kept as the text written.
    wf = load_steps(tmp_path, "- {id: e, kind: end, result: {day: 2024-01-01}}\n")
    assert wf.steps[0]["result"] == {"day": "2024-01-01"}
