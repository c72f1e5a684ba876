"""Black-box tests of the checkpointflow-run/v1 envelope contract (contract §3, §4, §8, §9).

Every row of the §8 table is exercised against the installed `cpf` console script.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import CPF, CpfRunner, step_results_for, wait_for

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")

APPROVAL = """
schema_version: checkpointflow/v1
workflow:
  id: approval-demo
  name: Approval demo
  description: Asks for approval, then finishes
  version: "1.2"
  inputs:
    type: object
    properties:
      who: {type: string}
    required: [who]
  steps:
    - id: hello
      kind: cli
      command: >-
        echo '{"greeting": "hi", "count": 3, "flags": [true, false]}'
    - id: ask
      kind: await_event
      audience: agent
      event_name: approval
      prompt: "Approve ${inputs.who}? (${steps.hello.outputs.count})"
      summary: "Greeting was ${steps.hello.outputs.greeting}"
      risk_level: high
      input_schema:
        type: object
        properties:
          decision: {type: string, enum: [approve, reject]}
          note: {type: string}
        required: [decision]
    - id: done
      kind: end
      result:
        decision: ${steps.ask.outputs.decision}
        who: ${inputs.who}
        count: ${steps.hello.outputs.count}
        flags: ${steps.hello.outputs.flags}
        text: "n=${steps.hello.outputs.count}"
"""

SIMPLE_END = """
schema_version: checkpointflow/v1
workflow:
  id: simple-end
  name: Simple end
  version: "0.1"
  inputs:
    type: object
    properties:
      n: {type: integer}
  steps:
    - id: produce
      kind: cli
      command: >-
        echo '{"value": 41, "ok": true, "obj": {"a": 1}}'
    - id: finish
      kind: end
      result:
        value: ${steps.produce.outputs.value}
        ok: ${steps.produce.outputs.ok}
        obj: ${steps.produce.outputs.obj}
        n: ${inputs.n}
    - id: never
      kind: cli
      command: touch never-ran
"""

IMPLICIT = """
schema_version: checkpointflow/v1
workflow:
  id: implicit-demo
  inputs: {type: object}
  steps:
    - id: only
      kind: cli
      command: echo hello
"""

FAILING = """
schema_version: checkpointflow/v1
workflow:
  id: failing-demo
  name: Failing demo
  inputs: {type: object}
  steps:
    - id: first
      kind: cli
      command: echo fine
    - id: boom
      kind: cli
      command: echo oops >&2; exit 3
    - id: after
      kind: cli
      command: touch after-ran
"""


def _no_runs(cpf: CpfRunner) -> None:
    env = cpf.ok("runs")
    assert env["result"]["runs"] == []


def _assert_prerun_failure(env: dict, command: str, code: str) -> None:
    assert env["ok"] is False
    assert env["command"] == command
    assert env["status"] == "failed"
    assert env["exit_code"] == 10
    assert env["error"]["code"] == code
    assert isinstance(env["error"]["message"], str) and env["error"]["message"]
    assert "run_id" not in env


def _start_waiting(cpf: CpfRunner, write_workflow, who: str = "bob") -> tuple[str, Path]:
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps({"who": who}), exit_code=40)
    return cpf.run_id_of(env), path


def _completed_run(cpf: CpfRunner, write_workflow) -> str:
    path = write_workflow(SIMPLE_END, name="simple.yaml")
    env = cpf.ok("run", "-f", str(path), "--input", '{"n": 1}')
    return cpf.run_id_of(env)


def _failed_run(cpf: CpfRunner, write_workflow) -> str:
    path = write_workflow(FAILING, name="failing.yaml")
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    return cpf.run_id_of(env)


# --------------------------------------------------------------------------- validate


def test_validate_ok(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok("validate", "-f", str(path))
    assert env["ok"] is True
    assert env["command"] == "validate"
    assert env["status"] == "completed"
    assert env["workflow_id"] == "approval-demo"
    assert env["workflow_version"] == "1.2"
    assert "workflow_name" not in env
    assert "run_id" not in env
    assert "error" not in env
    # A clean document carries no warnings (null fields are omitted).
    assert not env.get("warnings")
    _no_runs(cpf)


def test_validate_long_flag_and_relative_path(cpf: CpfRunner, write_workflow) -> None:
    write_workflow(IMPLICIT, name="rel.yaml")
    env = cpf.ok("validate", "--file", "rel.yaml")
    assert env["workflow_id"] == "implicit-demo"


def test_envelope_is_pretty_printed_json(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(IMPLICIT)
    proc, env = cpf("validate", "-f", str(path))
    assert env is not None
    assert proc.stdout.startswith('{\n  "schema_version": "checkpointflow-run/v1",\n')
    # Exactly one JSON document on stdout.
    assert json.loads(proc.stdout) == env


# --------------------------------------------------------------------------- pre-run failures


@pytest.mark.parametrize("command", ["validate", "run"])
def test_missing_workflow_file(cpf: CpfRunner, command: str) -> None:
    env = cpf.ok(command, "-f", "does-not-exist.yaml", exit_code=10)
    _assert_prerun_failure(env, command, "ERR_FILE_NOT_FOUND")
    assert "does-not-exist.yaml" in env["error"]["message"]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_workflow_path_is_directory(cpf: CpfRunner, workdir: Path, command: str) -> None:
    (workdir / "adir").mkdir()
    env = cpf.ok(command, "-f", "adir", exit_code=10)
    _assert_prerun_failure(env, command, "ERR_VALIDATION_WORKFLOW")
    assert "directory" in env["error"]["message"].lower()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_yaml_parse_error(cpf: CpfRunner, write_workflow, command: str) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: bad-yaml
          inputs: {type: object}
          steps:
            - id: a
              kind: cli
              command: echo '{"a": 1}'
        """
    )
    env = cpf.ok(command, "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, command, "ERR_YAML_PARSE")
    if command == "run":
        _no_runs(cpf)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_schema_error_unknown_field(cpf: CpfRunner, write_workflow, command: str) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: bad-schema
          inputs: {type: object}
          steps:
            - id: a
              kind: cli
              comand: echo hi
        """
    )
    env = cpf.ok(command, "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, command, "ERR_VALIDATION_WORKFLOW")
    details = env["error"]["details"]
    assert isinstance(details, list) and details
    assert all(isinstance(d, str) for d in details)
    assert any("comand" in d for d in details), details
    if command == "run":
        _no_runs(cpf)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_schema_error_non_string_command(cpf: CpfRunner, write_workflow, command: str) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: bad-command
          inputs: {type: object}
          steps:
            - id: a
              kind: cli
              command: 42
        """
    )
    env = cpf.ok(command, "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, command, "ERR_VALIDATION_WORKFLOW")
    assert any("command" in d for d in env["error"]["details"]), env["error"]


@pytest.mark.parametrize(
    "snippet",
    [
        "version: 1.5\n  inputs: {type: object}",  # version must be a string
        "name: no inputs key",  # inputs is required
    ],
)
def test_schema_error_workflow_fields(cpf: CpfRunner, write_workflow, snippet: str) -> None:
    path = write_workflow(
        "schema_version: checkpointflow/v1\n"
        "workflow:\n"
        "  id: wf\n"
        f"  {snippet}\n"
        "  steps:\n"
        "    - id: a\n"
        "      kind: end\n"
    )
    env = cpf.ok("validate", "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, "validate", "ERR_VALIDATION_WORKFLOW")
    assert env["error"]["details"]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_duplicate_step_ids(cpf: CpfRunner, write_workflow, command: str) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: dup
          inputs: {type: object}
          steps:
            - id: twice
              kind: cli
              command: echo hi
            - id: twice
              kind: end
        """
    )
    env = cpf.ok(command, "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, command, "ERR_DUPLICATE_STEP_ID")
    assert "twice" in env["error"]["message"]


def test_run_bad_input_json(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", "{not json", exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_VALIDATION_INPUT")
    _no_runs(cpf)


def test_run_input_fails_inputs_schema(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", '{"who": 3}', exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_VALIDATION_INPUT")
    details = env["error"]["details"]
    assert isinstance(details, list) and details
    assert any("string" in d for d in details)
    # Missing required key too.
    env = cpf.ok("run", "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_VALIDATION_INPUT")
    assert any("who" in d for d in env["error"]["details"])
    _no_runs(cpf)


def test_run_input_at_file_missing(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", "@nope.json", exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_FILE_NOT_FOUND")
    _no_runs(cpf)


def test_run_input_at_parent_path_refused(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    (workdir.parent / "x.json").write_text('{"who": "escaped"}')
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", "@../x.json", exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_VALIDATION_INPUT")
    _no_runs(cpf)


def test_run_input_at_file_ok(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    (workdir / "in.json").write_text('{"who": "file-user"}')
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", "@in.json", exit_code=40)
    assert env["wait"]["prompt"] == "Approve file-user? (3)"


def test_run_input_from_stdin(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok(
        "run", "-f", str(path), "--input", "-", stdin='{"who": "stdin-user"}', exit_code=40
    )
    assert env["wait"]["prompt"] == "Approve stdin-user? (3)"
    env = cpf.ok("run", "-f", str(path), "--input", "-", stdin="not json", exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_VALIDATION_INPUT")


def test_run_repeated_input_keeps_last(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok(
        "run", "-f", str(path), "--input", '{"who": 1}', "--input", '{"who": "last"}', exit_code=40
    )
    assert env["wait"]["prompt"] == "Approve last? (3)"


# --------------------------------------------------------------------------- run outcomes


def test_run_completed_via_end_with_typed_result(cpf: CpfRunner, write_workflow, workdir) -> None:
    path = write_workflow(SIMPLE_END)
    env = cpf.ok("run", "-f", str(path), "--input", '{"n": 7}')
    assert env["ok"] is True
    assert env["command"] == "run"
    assert env["status"] == "completed"
    assert RUN_ID_RE.match(env["run_id"])
    assert env["workflow_id"] == "simple-end"
    assert env["workflow_name"] == "Simple end"
    assert env["workflow_version"] == "0.1"
    assert "workflow_description" not in env  # null fields are omitted
    assert env["current_step_id"] == "finish"
    assert env["result"] == {"value": 41, "ok": True, "obj": {"a": 1}, "n": 7}
    assert "error" not in env and "wait" not in env
    # Steps after `end` are not run.
    assert not (workdir / "never-ran").exists()


def test_run_completed_implicitly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(IMPLICIT)
    env = cpf.ok("run", "-f", str(path))
    assert env["ok"] is True
    assert env["status"] == "completed"
    assert env["workflow_id"] == "implicit-demo"
    assert RUN_ID_RE.match(env["run_id"])
    assert "current_step_id" not in env
    assert "result" not in env


def test_status_and_inspect_of_an_implicit_completion_name_the_last_step(
    cpf: CpfRunner, write_workflow
) -> None:
    # As checkpointflow: `run` names no step, `status` and `inspect` the last one that ran.
    path = write_workflow(
        IMPLICIT.replace(
            "      command: echo hello\n",
            "      command: echo hello\n    - id: last\n      kind: cli\n      command: 'true'\n",
        )
    )
    run_env = cpf.ok("run", "-f", str(path))
    assert "current_step_id" not in run_env
    run_id = run_env["run_id"]
    for env in (cpf.status(run_id), cpf.inspect(run_id)):
        assert env["status"] == "completed"
        assert env["current_step_id"] == "last"


def test_resume_to_an_implicit_completion_names_the_last_step(
    cpf: CpfRunner, write_workflow
) -> None:
    path = write_workflow(
        IMPLICIT.replace(
            "      command: echo hello\n",
            "      command: echo hello\n    - id: gate\n      kind: await_event\n"
            "      audience: agent\n      event_name: go\n      input_schema: {type: object}\n",
        )
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    resumed = cpf.ok("resume", "--run-id", run_id, "--event", "go", "--input", "{}")
    assert resumed["status"] == "completed" and "current_step_id" not in resumed
    assert cpf.status(run_id)["current_step_id"] == "gate"
    assert cpf.inspect(run_id)["current_step_id"] == "gate"


def test_run_end_with_empty_result_has_no_result(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: empty-end
          inputs: {type: object}
          steps:
            - id: stop
              kind: end
        """
    )
    env = cpf.ok("run", "-f", str(path))
    assert env["current_step_id"] == "stop"
    assert "result" not in env


def test_run_waiting_envelope(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", '{"who": "bob"}', exit_code=40)
    assert env["ok"] is True
    assert env["command"] == "run"
    assert env["status"] == "waiting"
    run_id = env["run_id"]
    assert RUN_ID_RE.match(run_id)
    assert env["workflow_id"] == "approval-demo"
    assert env["workflow_name"] == "Approval demo"
    assert env["workflow_description"] == "Asks for approval, then finishes"
    assert env["workflow_version"] == "1.2"
    assert env["current_step_id"] == "ask"
    wait = env["wait"]
    assert wait["kind"] == "external_event"
    assert wait["audience"] == "agent"
    assert wait["event_name"] == "approval"
    assert wait["prompt"] == "Approve bob? (3)"
    assert wait["summary"] == "Greeting was hi"
    assert wait["input_schema"] == {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": ["approve", "reject"]},
            "note": {"type": "string"},
        },
        "required": ["decision"],
    }
    assert wait["instructions"] == [
        "Ask the intended audience for input using the prompt.",
        "Collect JSON that matches input_schema.",
        "Resume with the provided run_id and event_name.",
    ]
    assert wait["risk_level"] == "high"
    assert wait["resume"]["command"] == (
        f"cpf resume --run-id {run_id} --event approval --input @event.json"
    )


def test_waiting_envelope_without_optional_fields(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: bare-wait
          inputs: {type: object}
          steps:
            - id: w
              kind: await_event
              audience: user
              event_name: go
              input_schema: {type: object}
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=40)
    wait = env["wait"]
    assert wait["audience"] == "user"
    for absent in ("prompt", "summary", "risk_level"):
        assert absent not in wait


def test_run_step_failure(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(FAILING)
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["ok"] is False
    assert env["command"] == "run"
    assert env["status"] == "failed"
    assert RUN_ID_RE.match(env["run_id"])
    assert env["workflow_id"] == "failing-demo"
    assert env["workflow_name"] == "Failing demo"
    assert env["current_step_id"] == "boom"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "3" in env["error"]["message"]
    assert not (workdir / "after-ran").exists()


def test_run_nonzero_exit_allowed_by_success_exit_codes(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: exit-codes
          inputs: {type: object}
          steps:
            - id: grep
              kind: cli
              command: exit 1
              success:
                exit_codes: [0, 1]
        """
    )
    cpf.ok("run", "-f", str(path))


# --------------------------------------------------------------------------- resume


def test_resume_completes_via_end(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    env = cpf.ok(
        "resume", "--run-id", run_id, "--event", "approval", "--input", '{"decision": "approve"}'
    )
    assert env["ok"] is True
    assert env["command"] == "resume"
    assert env["status"] == "completed"
    assert env["run_id"] == run_id
    assert env["workflow_id"] == "approval-demo"
    assert env["workflow_name"] == "Approval demo"
    assert env["current_step_id"] == "done"
    assert env["result"] == {
        "decision": "approve",
        "who": "bob",
        "count": 3,
        "flags": [True, False],
        "text": "n=3",
    }


def test_resume_input_from_file_and_stdin(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    (workdir / "event.json").write_text('{"decision": "reject"}')
    env = cpf.ok("resume", "--run-id", run_id, "--event", "approval", "--input", "@event.json")
    assert env["result"]["decision"] == "reject"

    run_id, _ = _start_waiting(cpf, write_workflow)
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        "-",
        stdin='{"decision": "approve"}',
    )
    assert env["result"]["decision"] == "approve"


def test_resume_from_another_cwd(cpf: CpfRunner, write_workflow, tmp_path: Path) -> None:
    write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", "workflow.yaml", "--input", '{"who": "gil"}', exit_code=40)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cpf.ok(
        "resume",
        "--run-id",
        env["run_id"],
        "--event",
        "approval",
        "--input",
        '{"decision": "approve"}',
        cwd=elsewhere,
    )
    assert env["result"]["who"] == "gil"


def test_resume_unknown_run(cpf: CpfRunner) -> None:
    env = cpf.ok(
        "resume", "--run-id", "0" * 32, "--event", "approval", "--input", "{}", exit_code=10
    )
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["command"] == "resume"
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"


def test_resume_not_waiting(cpf: CpfRunner, write_workflow) -> None:
    run_id = _completed_run(cpf, write_workflow)
    env = cpf.ok("resume", "--run-id", run_id, "--event", "x", "--input", "{}", exit_code=20)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"


def test_resume_wrong_event(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "nope",
        "--input",
        '{"decision": "approve"}',
        exit_code=20,
    )
    assert env["ok"] is False
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_RESUME_EVENT_MISMATCH"
    assert cpf.status(run_id)["status"] == "waiting"


def test_resume_bad_payload(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        '{"decision": "maybe"}',
        exit_code=10,
    )
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_VALIDATION_EVENT_INPUT"
    details = env["error"]["details"]
    assert isinstance(details, list) and details
    assert any("maybe" in d for d in details)
    assert details[0] in env["error"]["message"]

    # Several schema violations: all are listed.
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        '{"note": 5}',
        exit_code=10,
    )
    assert env["error"]["code"] == "ERR_VALIDATION_EVENT_INPUT"
    assert len(env["error"]["details"]) >= 2

    # Not JSON at all.
    env = cpf.ok(
        "resume", "--run-id", run_id, "--event", "approval", "--input", "{nope", exit_code=10
    )
    assert env["error"]["code"] == "ERR_VALIDATION_EVENT_INPUT"

    # Missing @file.
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        "@missing.json",
        exit_code=10,
    )
    assert env["error"]["code"] == "ERR_FILE_NOT_FOUND"

    # Failed validations leave the run waiting, with no event recorded.
    assert cpf.status(run_id)["status"] == "waiting"
    assert cpf.inspect(run_id)["result"]["events"] == []


def test_resume_workflow_edited(cpf: CpfRunner, write_workflow) -> None:
    run_id, path = _start_waiting(cpf, write_workflow)
    path.write_text(path.read_text() + "# a harmless comment\n")
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        '{"decision": "approve"}',
        exit_code=10,
    )
    assert env["ok"] is False
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_VALIDATION_WORKFLOW"
    status = cpf.status(run_id)
    assert status["status"] == "waiting"
    assert status["exit_code"] == 40
    # Defect 17: a refused resume leaves no event behind.
    assert cpf.inspect(run_id)["result"]["events"] == []


def test_resume_workflow_file_removed(cpf: CpfRunner, write_workflow) -> None:
    run_id, path = _start_waiting(cpf, write_workflow, who="frank")
    path.unlink()
    # status still works without the file (the wait block comes from the store).
    status = cpf.ok("status", "--run-id", run_id, exit_code=40)
    assert status["wait"]["event_name"] == "approval"
    assert status["wait"]["prompt"] == "Approve frank? (3)"
    cpf.ok("inspect", "--run-id", run_id, exit_code=40)
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        '{"decision": "approve"}',
        exit_code=10,
    )
    assert env["error"]["code"] == "ERR_FILE_NOT_FOUND"
    assert cpf.status(run_id)["status"] == "waiting"
    assert cpf.inspect(run_id)["result"]["events"] == []


# --------------------------------------------------------------------------- cancel / delete


def test_cancel_waiting_run(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    env = cpf.ok("cancel", "--run-id", run_id, "--reason", "no longer needed")
    assert env["ok"] is True
    assert env["command"] == "cancel"
    assert env["status"] == "cancelled"
    assert env["exit_code"] == 0
    assert env["run_id"] == run_id
    assert env["workflow_id"] == "approval-demo"
    assert env["workflow_name"] == "Approval demo"
    assert env["result"] == {"reason": "no longer needed"}
    # A cancelled run can no longer be resumed.
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        '{"decision": "approve"}',
        exit_code=20,
    )
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"


def test_cancel_wrong_state(cpf: CpfRunner, write_workflow) -> None:
    run_id = _completed_run(cpf, write_workflow)
    env = cpf.ok("cancel", "--run-id", run_id, "--reason", "too late", exit_code=20)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"
    assert cpf.status(run_id)["status"] == "completed"

    # Cancelling twice.
    run_id, _ = _start_waiting(cpf, write_workflow)
    cpf.ok("cancel", "--run-id", run_id, "--reason", "once")
    env = cpf.ok("cancel", "--run-id", run_id, "--reason", "twice", exit_code=20)
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"


def test_cancel_unknown_run(cpf: CpfRunner) -> None:
    env = cpf.ok("cancel", "--run-id", "f" * 32, "--reason", "x", exit_code=10)
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"


def test_delete_terminal_run(cpf: CpfRunner, write_workflow, cpf_base: Path) -> None:
    run_id = _completed_run(cpf, write_workflow)
    run_dir = cpf_base / "runs" / run_id
    assert run_dir.is_dir()
    env = cpf.ok("delete", "--run-id", run_id)
    assert env["ok"] is True
    assert env["command"] == "delete"
    assert env["status"] == "completed"
    assert env["run_id"] == run_id
    assert env["workflow_id"] == "simple-end"
    assert env["result"] == {"deleted": True}
    assert not run_dir.exists()
    assert cpf.ok("runs")["result"]["runs"] == []
    env = cpf.ok("status", "--run-id", run_id, exit_code=10)
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"
    env = cpf.ok("delete", "--run-id", run_id, exit_code=10)
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"


def test_delete_failed_and_cancelled_runs(cpf: CpfRunner, write_workflow) -> None:
    cpf.ok("delete", "--run-id", _failed_run(cpf, write_workflow))
    run_id, _ = _start_waiting(cpf, write_workflow)
    cpf.ok("cancel", "--run-id", run_id, "--reason", "x")
    cpf.ok("delete", "--run-id", run_id)


def test_delete_waiting_run_refused(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    env = cpf.ok("delete", "--run-id", run_id, exit_code=20)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"
    assert cpf.status(run_id)["status"] == "waiting"


# --------------------------------------------------------------------------- status / inspect


@pytest.mark.parametrize("command", ["status", "inspect"])
def test_status_inspect_completed(cpf: CpfRunner, write_workflow, command: str) -> None:
    run_id = _completed_run(cpf, write_workflow)
    env = cpf.ok(command, "--run-id", run_id)
    assert env["ok"] is True
    assert env["command"] == command
    assert env["status"] == "completed"
    assert env["run_id"] == run_id
    assert env["workflow_id"] == "simple-end"
    assert env["workflow_name"] == "Simple end"
    assert env["workflow_version"] == "0.1"
    assert env["current_step_id"] == "finish"
    if command == "status":
        assert env["result"] == {"value": 41, "ok": True, "obj": {"a": 1}, "n": 1}
        assert "wait" not in env


@pytest.mark.parametrize("command", ["status", "inspect"])
def test_status_inspect_waiting(cpf: CpfRunner, write_workflow, command: str) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow, who="carol")
    env = cpf.ok(command, "--run-id", run_id, exit_code=40)
    assert env["ok"] is True
    assert env["status"] == "waiting"
    assert env["run_id"] == run_id
    assert env["current_step_id"] == "ask"
    if command == "status":
        wait = env["wait"]
        assert wait["kind"] == "external_event"
        assert wait["audience"] == "agent"
        assert wait["event_name"] == "approval"
        # Defect 9: the prompt and summary are the interpolated texts, not the templates.
        assert wait["prompt"] == "Approve carol? (3)"
        assert wait["summary"] == "Greeting was hi"
        assert wait["risk_level"] == "high"
        assert wait["input_schema"]["required"] == ["decision"]
        assert wait["resume"]["command"] == (
            f"cpf resume --run-id {run_id} --event approval --input @event.json"
        )


@pytest.mark.parametrize("command", ["status", "inspect"])
def test_status_inspect_failed(cpf: CpfRunner, write_workflow, command: str) -> None:
    run_id = _failed_run(cpf, write_workflow)
    env = cpf.ok(command, "--run-id", run_id, exit_code=30)
    assert env["ok"] is True
    assert env["status"] == "failed"
    assert env["run_id"] == run_id
    assert env["current_step_id"] == "boom"
    if command == "status":
        assert env["error"]["code"] == "ERR_STEP_FAILED"
        assert env["error"]["step_id"] == "boom"
        assert env["error"]["message"]


@pytest.mark.parametrize("command", ["status", "inspect"])
def test_status_inspect_cancelled(cpf: CpfRunner, write_workflow, command: str) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow)
    cpf.ok("cancel", "--run-id", run_id, "--reason", "stop")
    env = cpf.ok(command, "--run-id", run_id, exit_code=50)
    assert env["ok"] is True
    assert env["status"] == "cancelled"
    assert env["run_id"] == run_id


@pytest.mark.parametrize("command", ["status", "inspect"])
def test_status_inspect_unknown_run(cpf: CpfRunner, command: str) -> None:
    env = cpf.ok(command, "--run-id", "a" * 32, exit_code=10)
    assert env["ok"] is False
    assert env["error"]["code"] == "ERR_RUN_NOT_FOUND"


def _parse_ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    assert re.search(r"T\d\d:\d\d:\d\d\.\d{6}", text), text
    assert ts.utcoffset() == timedelta(0), text
    return ts


def test_inspect_history_fields(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow, who="dave")
    cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        '{"decision": "approve", "note": "lgtm"}',
        "--actor",
        "reviewer-1",
    )
    env = cpf.inspect(run_id)
    assert env["status"] == "completed"
    assert env["exit_code"] == 0
    hist = env["result"]
    assert hist["inputs"] == {"who": "dave"}
    outputs = hist["step_outputs"]
    assert outputs["hello"] == {"greeting": "hi", "count": 3, "flags": [True, False]}
    assert outputs["ask"] == {"decision": "approve", "note": "lgtm"}
    assert outputs["done"]["decision"] == "approve"

    results = hist["step_results"]
    assert [r["step_id"] for r in results] == ["hello", "ask", "done"]
    required = {
        "step_id",
        "step_kind",
        "attempt",
        "status",
        "exit_code",
        "error_code",
        "error_message",
        "outputs",
        "stdout_path",
        "stderr_path",
        "started_at",
        "finished_at",
        "created_at",
    }
    for r in results:
        assert required <= set(r), sorted(set(r))
        _parse_ts(r["created_at"])
    hello = step_results_for(env, "hello")[0]
    assert hello["step_kind"] == "cli"
    assert hello["attempt"] == 1
    assert hello["exit_code"] == 0
    assert hello["error_code"] is None
    assert hello["outputs"] == {"greeting": "hi", "count": 3, "flags": [True, False]}
    stdout_path = Path(hello["stdout_path"])
    assert stdout_path.is_absolute()
    assert stdout_path == cpf.base_dir / "runs" / run_id / "stdout" / "hello.txt"
    assert '"greeting": "hi"' in stdout_path.read_text()
    stderr_path = Path(hello["stderr_path"])
    assert stderr_path == cpf.base_dir / "runs" / run_id / "stderr" / "hello.txt"
    assert stderr_path.exists()
    assert _parse_ts(hello["started_at"]) <= _parse_ts(hello["finished_at"])
    assert step_results_for(env, "ask")[0]["step_kind"] == "await_event"
    assert step_results_for(env, "done")[0]["step_kind"] == "end"

    events = hist["events"]
    assert len(events) == 1
    ev = events[0]
    assert {"event_name", "event_data", "step_id", "actor", "surface", "created_at"} <= set(ev)
    assert ev["event_name"] == "approval"
    assert ev["event_data"] == {"decision": "approve", "note": "lgtm"}
    assert ev["step_id"] == "ask"
    assert ev["actor"] == "reviewer-1"
    assert ev["surface"] == "cli"
    _parse_ts(ev["created_at"])
    assert isinstance(hist["checkpoints"], int)


def test_inspect_failed_step_result(cpf: CpfRunner, write_workflow) -> None:
    run_id = _failed_run(cpf, write_workflow)
    env = cpf.inspect(run_id)
    boom = step_results_for(env, "boom")
    assert len(boom) == 1
    assert boom[0]["exit_code"] == 3
    assert boom[0]["error_code"] == "ERR_STEP_FAILED"
    assert boom[0]["error_message"]
    assert boom[0]["status"] == "failed"
    assert "oops" in Path(boom[0]["stderr_path"]).read_text()
    assert step_results_for(env, "after") == []


# --------------------------------------------------------------------------- init / misc


def test_init(cpf: CpfRunner, workdir: Path) -> None:
    env = cpf.ok("init")
    assert env["ok"] is True
    assert env["command"] == "init"
    assert env["status"] == "completed"
    assert env["result"] == {"file": "checkpointflow.yaml"}
    target = workdir / "checkpointflow.yaml"
    assert target.is_file()
    cpf.ok("validate", "-f", "checkpointflow.yaml")

    target.write_text("# mine\n")
    env = cpf.ok("init", exit_code=10)
    assert env["ok"] is False
    assert env["error"]["code"] == "ERR_FILE_EXISTS"
    assert target.read_text() == "# mine\n"

    env = cpf.ok("init", "--force")
    assert env["result"] == {"file": "checkpointflow.yaml"}
    assert target.read_text() != "# mine\n"
    cpf.ok("validate", "-f", "checkpointflow.yaml")


def test_init_custom_file(cpf: CpfRunner, workdir: Path) -> None:
    env = cpf.ok("init", "--file", "flows.yaml")
    assert env["result"] == {"file": "flows.yaml"}
    assert (workdir / "flows.yaml").is_file()


def test_init_write_failure(cpf: CpfRunner, workdir: Path) -> None:
    (workdir / "plain").write_text("not a directory")
    env = cpf.ok("init", "--file", "plain/flow.yaml", exit_code=60)
    assert env["ok"] is False
    assert env["error"]["code"] == "ERR_PERSISTENCE"


def test_version(cpf: CpfRunner) -> None:
    proc, env = cpf("--version")
    assert proc.returncode == 0
    assert env is None
    version = proc.stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version), proc.stdout
    proc2, _ = cpf("-v")
    assert proc2.returncode == 0
    assert proc2.stdout.strip() == version


def test_no_args_is_usage_error(cpf: CpfRunner) -> None:
    proc, env = cpf()
    assert proc.returncode == 2
    assert env is None
    assert (proc.stderr + proc.stdout).strip()  # help text


@pytest.mark.parametrize(
    "args",
    [
        ["bogus-command"],
        ["run"],  # missing required -f
        ["resume", "--run-id", "x"],  # missing --event/--input
        ["cancel", "--run-id", "x"],  # missing --reason
    ],
)
def test_usage_errors_exit_2(cpf: CpfRunner, args: list[str]) -> None:
    proc, env = cpf(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert env is None
    assert proc.stdout.strip() == ""


def test_help(cpf: CpfRunner) -> None:
    proc = subprocess.run([CPF, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("validate", "run", "resume", "status", "inspect", "cancel", "delete", "init"):
        assert command in proc.stdout


def test_guide(cpf: CpfRunner) -> None:
    proc, env = cpf("guide")
    assert proc.returncode == 0
    assert env is None
    assert "await_event" in proc.stdout


# ---------------------------------------------------------------------- cli step semantics (§5)


def _one_step(step_yaml: str, wf_id: str = "one-step") -> str:
    return (
        "schema_version: checkpointflow/v1\n"
        "workflow:\n"
        f"  id: {wf_id}\n"
        "  inputs: {type: object}\n"
        "  steps:\n" + step_yaml.strip("\n") + "\n"
    )


def test_cli_outputs_only_from_a_json_object(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _one_step(
            """
    - id: arr
      kind: cli
      command: echo '[1, 2]'
    - id: mixed
      kind: cli
      command: >-
        echo hello; echo '{"a": 1}'
    - id: obj
      kind: cli
      command: >-
        echo '  {"a": 1}  '
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path))["run_id"]
    outputs = cpf.inspect(run_id)["result"]["step_outputs"]
    assert outputs.get("arr") in (None, {})
    assert outputs.get("mixed") in (None, {})
    assert outputs["obj"] == {"a": 1}


def test_cli_outputs_schema_enforced(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _one_step(
            """
    - id: typed
      kind: cli
      command: >-
        echo '{"a": "x"}'
      outputs:
        type: object
        properties: {a: {type: integer}}
"""
        )
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"
    assert env["current_step_id"] == "typed"

    path = write_workflow(
        _one_step(
            """
    - id: typed
      kind: cli
      command: echo not-json
      outputs: {type: object}
"""
        ),
        name="notjson.yaml",
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"


def test_cli_cwd(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    (workdir / "sub").mkdir()
    path = write_workflow(
        _one_step(
            """
    - id: here
      kind: cli
      cwd: ${inputs.dir}
      command: pwd > where.txt
"""
        )
    )
    cpf.ok("run", "-f", str(path), "--input", '{"dir": "sub"}')
    assert Path((workdir / "sub" / "where.txt").read_text().strip()).resolve() == (
        (workdir / "sub").resolve()
    )
    env = cpf.ok("run", "-f", str(path), "--input", '{"dir": "missing-dir"}', exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert env["run_id"]


def test_cli_shells(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: shells
          defaults: {shell: bash}
          inputs: {type: object}
          steps:
            - id: default_bash
              kind: cli
              command: echo "$BASH_VERSION" > bash.txt
            - id: explicit_sh
              kind: cli
              shell: sh
              command: echo sh-ok > sh.txt
        """
    )
    cpf.ok("run", "-f", str(path))
    assert (workdir / "bash.txt").read_text().strip()
    assert (workdir / "sh.txt").read_text().strip() == "sh-ok"

    path = write_workflow(
        _one_step(
            """
    - id: weird
      kind: cli
      shell: no-such-shell
      command: echo hi
"""
        ),
        name="weird.yaml",
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert env["current_step_id"] == "weird"


def test_if_false_skips_step_without_result(cpf: CpfRunner, write_workflow, workdir) -> None:
    path = write_workflow(
        _one_step(
            """
    - id: skipped
      kind: cli
      if: inputs.go == true
      command: touch skipped-ran
    - id: ran
      kind: cli
      if: inputs.go == false
      command: touch ran
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path), "--input", '{"go": false}')["run_id"]
    assert not (workdir / "skipped-ran").exists()
    assert (workdir / "ran").exists()
    ids = [r["step_id"] for r in cpf.inspect(run_id)["result"]["step_results"]]
    assert ids == ["ran"]


def test_transitions_no_match_falls_through(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _one_step(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
      transitions:
        - when: event.route == "b"
          next: b
    - id: a
      kind: end
      result: a
    - id: b
      kind: end
      result: b
"""
        )
    )
    for route, expected in (("a", "a"), ("b", "b"), ("zzz", "a")):
        run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
        env = cpf.ok(
            "resume", "--run-id", run_id, "--event", "go", "--input", json.dumps({"route": route})
        )
        assert env["result"] == expected


def test_non_object_payloads_rejected(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(APPROVAL)
    env = cpf.ok("run", "-f", str(path), "--input", "[1, 2]", exit_code=10)
    _assert_prerun_failure(env, "run", "ERR_VALIDATION_INPUT")
    run_id, _ = _start_waiting(cpf, write_workflow)
    for payload in ("[1]", '"approve"', "null"):
        env = cpf.ok(
            "resume", "--run-id", run_id, "--event", "approval", "--input", payload, exit_code=10
        )
        assert env["error"]["code"] == "ERR_VALIDATION_EVENT_INPUT", payload
    assert cpf.status(run_id)["status"] == "waiting"


@pytest.mark.parametrize(
    "text",
    ["", "- just\n- a list\n", "plain scalar\n", "schema_version: checkpointflow/v2\n"],
)
def test_non_workflow_documents(cpf: CpfRunner, write_workflow, text: str) -> None:
    path = write_workflow(text)
    env = cpf.ok("validate", "-f", str(path), exit_code=10)
    _assert_prerun_failure(env, "validate", "ERR_VALIDATION_WORKFLOW")


def test_unicode_round_trip(cpf: CpfRunner, write_workflow) -> None:
    run_id, _ = _start_waiting(cpf, write_workflow, who="Zoë ✓")
    env = cpf.ok(
        "resume",
        "--run-id",
        run_id,
        "--event",
        "approval",
        "--input",
        json.dumps({"decision": "approve", "note": "très bien ✓"}),
    )
    assert env["result"]["who"] == "Zoë ✓"
    events = cpf.inspect(run_id)["result"]["events"]
    assert events[0]["event_data"]["note"] == "très bien ✓"


def test_status_of_running_run_is_90(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _one_step(
            """
    - id: long
      kind: cli
      command: touch started; while ! test -f marker; do sleep 0.05; done
"""
        )
    )
    run_proc = cpf.popen("run", "-f", str(path))
    try:
        wait_for(lambda: (workdir / "started").exists(), timeout=30, what="step start")
        run_id = cpf.ok("runs", "--status", "running")["result"]["runs"][0]["run_id"]
        for command in ("status", "inspect"):
            env = cpf.ok(command, "--run-id", run_id, exit_code=90)
            assert env["ok"] is True
            assert env["status"] == "running"
            assert env["current_step_id"] == "long"
        env = cpf.ok("delete", "--run-id", run_id, exit_code=20)
        assert env["error"]["code"] == "ERR_RUN_NOT_WAITING"
    finally:
        (workdir / "marker").touch()
        try:
            run_proc.communicate(timeout=60)
        finally:
            if run_proc.poll() is None:
                run_proc.kill()
                run_proc.wait()
    assert run_proc.returncode == 0
