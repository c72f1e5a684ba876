"""Black-box tests: checkpointflow 1.10 defects (contract §12) that cpf must not have.

Only the defects that concern cli / await_event / end steps and the CLI itself.
Defect 10 (concurrent resume) lives in test_cli_extras.py; 16 comes with a later issue.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CpfRunner, pid_gone, step_results_for, wait_for


def _wf(steps_yaml: str, *, wf_id: str = "wf", inputs: str = "{type: object}") -> str:
    """A workflow document around an indented block of steps (each line at 4 spaces)."""
    return (
        "schema_version: checkpointflow/v1\n"
        "workflow:\n"
        f"  id: {wf_id}\n"
        f"  inputs: {inputs}\n"
        "  steps:\n" + steps_yaml.strip("\n") + "\n"
    )


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


# --------------------------------------------------------------------------- 3: retry

FLAKY = """
    - id: flaky
      kind: cli
      command: |
        n=$(cat count 2>/dev/null || echo 0)
        n=$((n + 1))
        echo $n > count
        test $n -ge {succeed_at}
      retry:
        max_attempts: {max_attempts}
        backoff_seconds: {backoff}
{extra}
    - id: done
      kind: end
      result:
        ok: true
"""


def _flaky(succeed_at: int, max_attempts: int, backoff: float = 0, extra: str = "") -> str:
    return _wf(
        FLAKY.format(
            succeed_at=succeed_at, max_attempts=max_attempts, backoff=backoff, extra=extra
        ),
        wf_id="flaky",
    )


def test_retry_accepted_by_validate(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(_flaky(3, 3, 0.1, "        strategy: exponential"))
    env = cpf.ok("validate", "-f", str(path))
    assert env["ok"] is True


@pytest.mark.parametrize(
    "retry",
    [
        "{max_attempts: 0}",
        "{max_attempts: 2, backoff_seconds: -1}",
        "{max_attempts: 2, strategy: random}",
        "{max_attempts: 2, jitter: true}",
    ],
)
def test_retry_invalid_rejected(cpf: CpfRunner, write_workflow, retry: str) -> None:
    path = write_workflow(
        _wf(
            f"""
    - id: a
      kind: cli
      command: "true"
      retry: {retry}
"""
        )
    )
    env = cpf.ok("validate", "-f", str(path), exit_code=10)
    assert env["error"]["code"] == "ERR_VALIDATION_WORKFLOW"


def test_retry_enforced_until_success(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(_flaky(succeed_at=3, max_attempts=3))
    env = cpf.ok("run", "-f", str(path))
    assert env["status"] == "completed"
    assert env["result"] == {"ok": True}
    assert (workdir / "count").read_text().strip() == "3"
    attempts = step_results_for(cpf.inspect(env["run_id"]), "flaky")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["exit_code"] for a in attempts] == [1, 1, 0]
    assert [a["status"] == "failed" for a in attempts] == [True, True, False]
    assert attempts[0]["error_code"] == "ERR_STEP_FAILED"
    assert attempts[2]["error_code"] is None


def test_retry_exhausted_fails_run(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(_flaky(succeed_at=99, max_attempts=2))
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["ok"] is False
    assert env["current_step_id"] == "flaky"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert (workdir / "count").read_text().strip() == "2"
    attempts = step_results_for(cpf.inspect(env["run_id"]), "flaky")
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all(a["status"] == "failed" for a in attempts)


def _gaps(attempts: list[dict]) -> list[float]:
    out = []
    for prev, nxt in itertools.pairwise(attempts):
        end = datetime.fromisoformat(prev["finished_at"])
        start = datetime.fromisoformat(nxt["started_at"])
        out.append((start - end).total_seconds())
    return out


def test_retry_backoff_fixed(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(_flaky(succeed_at=99, max_attempts=3, backoff=0.4))
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    attempts = step_results_for(cpf.inspect(env["run_id"]), "flaky")
    assert len(attempts) == 3
    gaps = _gaps(attempts)
    assert all(g >= 0.35 for g in gaps), gaps


def test_retry_backoff_exponential(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _flaky(succeed_at=99, max_attempts=3, backoff=0.3, extra="        strategy: exponential")
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    attempts = step_results_for(cpf.inspect(env["run_id"]), "flaky")
    assert len(attempts) == 3
    gaps = _gaps(attempts)
    assert gaps[0] >= 0.25, gaps
    assert gaps[1] >= 1.5 * gaps[0], gaps


# --------------------------------------------------------------------------- 6: clean failures


def test_end_unresolvable_reference_fails_run(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: first
      kind: cli
      command: echo hi
    - id: finish
      kind: end
      result:
        value: ${steps.nope.outputs.x}
"""
        )
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"]
    assert env["current_step_id"] == "finish"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "steps.nope.outputs.x" in env["error"]["message"]
    status = cpf.ok("status", "--run-id", env["run_id"], exit_code=30)
    assert status["status"] == "failed"
    assert status["error"]["step_id"] == "finish"


def test_transition_to_unknown_step_fails_cleanly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
      transitions:
        - when: event.x == 1
          next: nowhere
    - id: finish
      kind: end
"""
        )
    )
    env = cpf.ok("validate", "-f", str(path))
    assert any("nowhere" in w for w in env["warnings"])
    env = cpf.ok("run", "-f", str(path), exit_code=40)
    run_id = env["run_id"]
    env = cpf.ok("resume", "--run-id", run_id, "--event", "go", "--input", '{"x": 1}', exit_code=30)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"] == run_id
    assert "nowhere" in env["error"]["message"]
    assert cpf.ok("status", "--run-id", run_id, exit_code=30)["status"] == "failed"


def test_transition_evaluation_error_fails_cleanly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
      transitions:
        - when: event.missing.deep == 1
          next: finish
    - id: finish
      kind: end
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    env = cpf.ok("resume", "--run-id", run_id, "--event", "go", "--input", "{}", exit_code=30)
    assert env["run_id"] == run_id
    assert env["error"]["code"] == "ERR_STEP_FAILED"


def test_if_evaluation_error_fails_cleanly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: guarded
      kind: cli
      if: steps.ghost.outputs.flag == true
      command: echo hi
"""
        )
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["run_id"]
    assert env["current_step_id"] == "guarded"


# --------------------------------------------------------------------------- 7: command typing


@pytest.mark.parametrize("command", ["42", "[1, 2]", "[]", "{a: b}", "true"])
def test_non_string_command_rejected(cpf: CpfRunner, write_workflow, command: str) -> None:
    path = write_workflow(
        _wf(
            f"""
    - id: a
      kind: cli
      command: {command}
"""
        )
    )
    for sub in ("validate", "run"):
        env = cpf.ok(sub, "-f", str(path), exit_code=10)
        assert env["error"]["code"] == "ERR_VALIDATION_WORKFLOW"
        assert "run_id" not in env
    assert cpf.ok("runs")["result"]["runs"] == []


def test_list_command_runs_joined(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: a
      kind: cli
      command:
        - echo one > list.txt
        - echo two >> list.txt
"""
        )
    )
    cpf.ok("run", "-f", str(path))
    assert (workdir / "list.txt").read_text().split() == ["one", "two"]


def test_run_directory_is_validation_error(cpf: CpfRunner, workdir: Path) -> None:
    (workdir / "flows").mkdir()
    env = cpf.ok("run", "-f", "flows", exit_code=10)
    assert env["error"]["code"] == "ERR_VALIDATION_WORKFLOW"


# --------------------------------------------------------------------------- 8: warnings


def test_unknown_targets_are_warnings(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
      transitions:
        - when: event.ok == true
          next: aprove
    - id: route
      kind: switch
      cases:
        - when: inputs.x == 1
          next: ghost_case
      default: ghost_default
    - id: finish
      kind: end
"""
        )
    )
    env = cpf.ok("validate", "-f", str(path))
    assert env["ok"] is True
    warnings = env["warnings"]
    assert isinstance(warnings, list)
    assert all(isinstance(w, str) and "\n" not in w for w in warnings)
    for target in ("aprove", "ghost_case", "ghost_default"):
        assert any(target in w for w in warnings), (target, warnings)


def test_unparseable_expression_is_warning(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: a
      kind: cli
      if: inputs.x ==
      command: echo ${inputs.(broken}
"""
        )
    )
    env = cpf.ok("validate", "-f", str(path))
    assert len(env["warnings"]) >= 2, env["warnings"]


# --------------------------------------------------------------------------- 9: status wait block


def test_status_wait_block_is_interpolated(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: calc
      kind: cli
      command: >-
        echo '{"total": 12.5, "items": ["a", "b"]}'
    - id: ask
      kind: await_event
      audience: system
      event_name: confirm
      prompt: "Pay ${steps.calc.outputs.total} for ${inputs.who}?"
      summary: "Items: ${steps.calc.outputs.items}"
      input_schema: {type: object}
""",
            inputs="{type: object, properties: {who: {type: string}}}",
        )
    )
    run_env = cpf.ok("run", "-f", str(path), "--input", '{"who": "erin"}', exit_code=40)
    assert run_env["wait"]["prompt"] == "Pay 12.5 for erin?"
    assert run_env["wait"]["summary"] == 'Items: ["a", "b"]'
    status = cpf.ok("status", "--run-id", run_env["run_id"], exit_code=40)
    assert status["wait"] == run_env["wait"]


# --------------------------------------------------------------------------- 11: timeouts


def test_timeout_kills_grandchildren(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: slow
      kind: cli
      timeout_seconds: 1
      command: sh -c 'sleep 30 & echo $! > pidfile; wait'
"""
        )
    )
    started = time.monotonic()
    pid = None
    try:
        env = cpf.ok("run", "-f", str(path), exit_code=30)
        assert time.monotonic() - started < 20
        assert env["error"]["code"] == "ERR_TIMEOUT"
        assert env["current_step_id"] == "slow"
        pid = int((workdir / "pidfile").read_text().strip())
        wait_for(lambda: pid_gone(pid), timeout=10, what=f"grandchild {pid} to die")
    finally:
        if pid is not None and not pid_gone(pid):
            os.kill(pid, signal.SIGKILL)
    attempts = step_results_for(cpf.inspect(env["run_id"]), "slow")
    assert attempts[-1]["error_code"] == "ERR_TIMEOUT"


def test_timeout_escalates_to_sigkill(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: stubborn
      kind: cli
      timeout_seconds: 1
      command: trap '' TERM; echo $$ > pidfile; while true; do sleep 0.1; done
"""
        )
    )
    started = time.monotonic()
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert time.monotonic() - started < 20
    assert env["error"]["code"] == "ERR_TIMEOUT"
    pid = int((workdir / "pidfile").read_text().strip())
    try:
        wait_for(lambda: pid_gone(pid), timeout=10, what=f"step {pid} to die")
    finally:
        if not pid_gone(pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- 12: interpolation


def test_interpolation_renders_json(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: render
      kind: cli
      command: >-
        printf '%s|%s|%s|%s|%s\\n' '${inputs.flag}' '${inputs.nothing}' '${inputs.obj}'
        '${inputs.num}' '${inputs.text}' > rendered.txt
"""
        )
    )
    inputs = {"flag": True, "nothing": None, "obj": {"a": 1}, "num": 2.5, "text": "plain"}
    cpf.ok("run", "-f", str(path), "--input", json.dumps(inputs))
    assert (workdir / "rendered.txt").read_text() == 'true|null|{"a": 1}|2.5|plain\n'


INJECTIONS = [
    "$(touch pwned)",
    '"; touch pwned; echo "',
    "'; touch pwned; echo '",
    "`touch pwned`",
    "a\nb && touch pwned",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_env_passes_untrusted_input_safely(
    cpf: CpfRunner, write_workflow, workdir: Path, payload: str
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: safe
      kind: cli
      env:
        TEXT: ${inputs.text}
      command: printf '%s' "$TEXT" > out.txt
"""
        )
    )
    cpf.ok("run", "-f", str(path), "--input", json.dumps({"text": payload}))
    assert not (workdir / "pwned").exists()
    assert (workdir / "out.txt").read_text() == payload


@pytest.mark.parametrize("payload", INJECTIONS)
def test_env_passes_event_payload_safely(
    cpf: CpfRunner, write_workflow, workdir: Path, payload: str
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: text
      input_schema:
        type: object
        properties: {text: {type: string}}
        required: [text]
    - id: use
      kind: cli
      env:
        TEXT: ${steps.ask.outputs.text}
        LABEL: "got: ${steps.ask.outputs.text}"
      command: printf '%s\\n%s' "$TEXT" "$LABEL" > out.txt
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    (workdir / "event.json").write_text(json.dumps({"text": payload}))
    cpf.ok("resume", "--run-id", run_id, "--event", "text", "--input", "@event.json")
    assert not (workdir / "pwned").exists()
    assert (workdir / "out.txt").read_text() == f"{payload}\ngot: {payload}"


def test_env_values_rendered_as_json_scalars(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: envs
      kind: cli
      env:
        FLAG: ${inputs.flag}
        NUM: 5
        LIT: literal
      command: printf '%s|%s|%s' "$FLAG" "$NUM" "$LIT" > env.txt
"""
        )
    )
    cpf.ok("run", "-f", str(path), "--input", '{"flag": false}')
    assert (workdir / "env.txt").read_text() == "false|5|literal"


def test_dollar_dollar_brace_escape(cpf: CpfRunner, write_workflow, workdir: Path) -> None:
    path = write_workflow(
        _wf(
            """
    - id: shellvar
      kind: cli
      env:
        GREETING: hello
      command: printf '%s-%s|%s' "$${GREETING}" "$${GREETING:-unset}" "$${HOME}" > shell.txt
"""
        )
    )
    env = cpf.ok("validate", "-f", str(path))
    assert not env.get("warnings")
    cpf.ok("run", "-f", str(path))
    home = cpf.env["HOME"]
    assert (workdir / "shell.txt").read_text() == f"hello-hello|{home}"


def test_bare_shell_variable_fails_cleanly_with_hint(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: shellvar
      kind: cli
      command: echo ${HOME}
"""
        )
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["run_id"]
    assert "$${HOME}" in env["error"]["message"]


# --------------------------------------------------------------------------- 13: conditions

CONDITIONS = {
    "t_quoted_and": 'inputs.x == "salt and pepper"',
    "t_quoted_and_single": "inputs.x == 'salt and pepper'",
    "f_quoted_or": 'inputs.x == "salt or pepper"',
    "t_ne_quoted_or": 'inputs.x != "a or b"',
    "f_quoted_and_other": 'inputs.x == "pepper and salt"',
    "t_parens": "(inputs.n > 1 and inputs.n < 10) or inputs.flag",
    "f_parens": "inputs.n > 1 and (inputs.n > 10 or inputs.flag)",
    "t_not": "not inputs.flag",
    "f_not_parens": "not (inputs.n == 5)",
    "t_le_ge": "inputs.n <= 5 and inputs.n >= 5",
    "f_lt": "inputs.n < 5",
    "t_in_list": '"b" in inputs.items',
    "f_in_list": '"z" in inputs.items',
    "t_in_string": '"pepper" in inputs.x',
    "t_int_float": "1 == 1.0",
    "t_float_input": "inputs.f == 1",
    "t_wrapped": "${inputs.n < 6}",
    "t_bare_word": "inputs.word == approve",
    "t_index": 'inputs.items[1] == "b"',
    "t_truthy": "inputs.items",
    "f_falsy": "inputs.flag",
}


def test_conditions(cpf: CpfRunner, write_workflow) -> None:
    steps = "".join(
        f"""
    - id: {sid}
      kind: cli
      if: {_q(cond)}
      command: echo ran
"""
        for sid, cond in CONDITIONS.items()
    )
    path = write_workflow(_wf(steps, wf_id="conditions"))
    env = cpf.ok("validate", "-f", str(path))
    assert not env.get("warnings"), env.get("warnings")
    inputs = {
        "x": "salt and pepper",
        "n": 5,
        "f": 1.0,
        "flag": False,
        "items": ["a", "b"],
        "word": "approve",
    }
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps(inputs))
    ran = {r["step_id"] for r in cpf.inspect(env["run_id"])["result"]["step_results"]}
    expected = {sid for sid in CONDITIONS if sid.startswith("t_")}
    assert ran == expected, {"unexpectedly ran": ran - expected, "skipped": expected - ran}


def test_transition_condition_with_quoted_and(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: pick
      input_schema: {type: object}
      transitions:
        - when: 'event.choice == "rock and roll"'
          next: matched
        - when: ${event.choice == "jazz"}
          next: jazz
    - id: fallthrough
      kind: end
      result: fallthrough
    - id: jazz
      kind: end
      result: jazz
    - id: matched
      kind: end
      result: matched
"""
        )
    )
    cases = [("rock and roll", "matched"), ("jazz", "jazz"), ("rock", "fallthrough")]
    for choice, expected in cases:
        run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
        env = cpf.ok(
            "resume",
            "--run-id",
            run_id,
            "--event",
            "pick",
            "--input",
            json.dumps({"choice": choice}),
        )
        assert env["current_step_id"] == expected
        assert env["result"] == expected


# --------------------------------------------------------------------------- 17: edited workflow


def test_refused_resume_records_no_event(cpf: CpfRunner, write_workflow) -> None:
    text = _wf(
        """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
    - id: finish
      kind: end
"""
    )
    path = write_workflow(text)
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    path.write_text(text + "# edited\n")
    env = cpf.ok("resume", "--run-id", run_id, "--event", "go", "--input", "{}", exit_code=10)
    assert env["error"]["code"] == "ERR_VALIDATION_WORKFLOW"
    assert cpf.ok("status", "--run-id", run_id, exit_code=40)["status"] == "waiting"
    assert cpf.inspect(run_id)["result"]["events"] == []
    # Restoring the exact bytes makes the run resumable again; one event in history.
    path.write_text(text)
    cpf.ok("resume", "--run-id", run_id, "--event", "go", "--input", '{"n": 1}')
    events = cpf.inspect(run_id)["result"]["events"]
    assert [e["event_data"] for e in events] == [{"n": 1}]


# --------------------------------------------------------------------------- 18: store unusable


def test_unusable_store_gives_persistence_envelope(
    cpf: CpfRunner, write_workflow, tmp_path: Path
) -> None:
    path = write_workflow(
        _wf(
            """
    - id: a
      kind: cli
      command: echo hi
"""
        )
    )
    not_a_dir = tmp_path / "regular-file"
    not_a_dir.write_text("I am not a directory\n")
    env = dict(cpf.env, CHECKPOINTFLOW_BASE_DIR=str(not_a_dir))
    if "CPF_DATABASE_URL" in env:
        # The suite on PostgreSQL (tests/storedb.py): the store is a database that is not there.
        from sqlalchemy.engine import make_url

        missing = make_url(env["CPF_DATABASE_URL"]).set(database="cpf_no_such_database")
        env["CPF_DATABASE_URL"] = missing.render_as_string(hide_password=False)
    run_id = "0123456789abcdef0123456789abcdef"
    commands = [
        ["run", "-f", str(path)],
        ["status", "--run-id", run_id],
        ["inspect", "--run-id", run_id],
        ["cancel", "--run-id", run_id, "--reason", "x"],
        ["delete", "--run-id", run_id],
        ["resume", "--run-id", run_id, "--event", "go", "--input", "{}"],
        ["retry", "--run-id", run_id],
        ["runs"],
        ["logs", "--run-id", run_id],
    ]
    for args in commands:
        proc, envelope = cpf(*args, env=env)
        assert envelope is not None, (args, proc.stdout, proc.stderr)
        assert envelope["exit_code"] == 60, (args, envelope)
        assert envelope["ok"] is False
        assert envelope["command"] == args[0]
        assert envelope["error"]["code"] == "ERR_PERSISTENCE"
        assert envelope["error"]["message"]
    assert not_a_dir.read_text() == "I am not a directory\n"
    # validate needs no store.
    proc, envelope = cpf("validate", "-f", str(path), env=env)
    assert envelope is not None and envelope["exit_code"] == 0


# --------------------------------------------------------------------------- 20: cancel exit


def test_cancel_exits_zero(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        _wf(
            """
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
"""
        )
    )
    run_id = cpf.ok("run", "-f", str(path), exit_code=40)["run_id"]
    proc, env = cpf("cancel", "--run-id", run_id, "--reason", "done")
    assert proc.returncode == 0
    assert env is not None and env["status"] == "cancelled" and env["ok"] is True
    assert cpf.ok("status", "--run-id", run_id, exit_code=50)["status"] == "cancelled"
