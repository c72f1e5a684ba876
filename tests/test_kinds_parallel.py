"""Black-box tests of the `parallel` step kind through the `cpf` CLI.

Contract §5 (parallel), §12 defects 1 (branch steps run twice) and 4 (`if` ignored in
branches), §13: branches run concurrently, each in its own context with `if`, `retry`,
`timeout_seconds`, `outputs` and records of their own; branch targets run once; one failing
branch fails the step after the others ran to completion, naming the failed branches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import CpfRunner, step_results_for


def _seconds(rec: dict[str, Any]) -> float:
    start = datetime.fromisoformat(rec["started_at"])
    end = datetime.fromisoformat(rec["finished_at"])
    return (end - start).total_seconds()


def _log_lines(cpf: CpfRunner) -> list[str]:
    log = cpf.cwd / "ran.log"
    return log.read_text().split() if log.exists() else []


FAN = """
schema_version: checkpointflow/v1
workflow:
  id: fan
  inputs:
    type: object
    properties:
      never: { type: boolean, default: false }
  steps:
    - id: fan
      kind: parallel
      branches:
        - start_at: a
        - start_at: b
        - start_at: skipped
        - start_at: flaky
        - start_at: sub
    - id: a
      kind: cli
      command: >-
        sleep 1; echo a >> ran.log; echo '{"x": 1}'
      outputs: { type: object, required: [x] }
    - id: b
      kind: cli
      command: >-
        sleep 1; echo b >> ran.log; echo '{"y": 2}'
    - id: skipped
      kind: cli
      if: inputs.never
      command: echo skipped >> ran.log
    - id: flaky
      kind: cli
      retry: { max_attempts: 2 }
      command: >-
        echo flaky >> ran.log; if [ -e flaky_once ]; then echo '{"z": 3}';
        else touch flaky_once; exit 1; fi
    - id: sub
      kind: workflow
      workflow_ref: child.yaml
      inputs: { who: sub }
    - id: after
      kind: cli
      command: echo after >> ran.log
    - id: done
      kind: end
      result:
        fan: ${steps.fan.outputs}
        x: ${steps.a.outputs.x}
        y: ${steps.b.outputs.y}
        z: ${steps.flaky.outputs.z}
"""

CHILD = """
schema_version: checkpointflow/v1
workflow:
  id: child
  inputs: { type: object, required: [who], properties: { who: { type: string } } }
  steps:
    - id: hello
      kind: cli
      command: >-
        echo child >> ran.log; echo '{"hello": "${inputs.who}"}'
    - id: out
      kind: end
      result: { hello: "${steps.hello.outputs.hello}" }
"""


def test_parallel_branches_run_concurrently_and_once(
    cpf: CpfRunner, write_workflow: Callable[..., Path]
) -> None:
    write_workflow(CHILD, "child.yaml")
    path = write_workflow(FAN)
    env = cpf.ok("run", "-f", str(path))
    assert env["status"] == "completed"
    fan_out = {"a": {"x": 1}, "b": {"y": 2}, "flaky": {"z": 3}, "sub": {"hello": "sub"}}
    # Outputs merged under the parallel step and available under each branch's own id;
    # a branch skipped by its `if` has no outputs.
    assert env["result"] == {"fan": fan_out, "x": 1, "y": 2, "z": 3}

    # Defect 1: the branch targets listed after the parallel step ran once, as branches.
    lines = _log_lines(cpf)
    assert sorted(lines) == ["a", "after", "b", "child", "flaky", "flaky"]
    assert lines[-1] == "after"

    ins = cpf.inspect(env["run_id"])
    [fan] = step_results_for(ins, "fan")
    assert fan["status"] == "completed"
    assert fan["outputs"] == fan_out
    # Concurrency: two branches sleeping 1 s each take well under 2 s together.
    assert _seconds(fan) < 1.8, fan
    [a] = step_results_for(ins, "a")
    [b] = step_results_for(ins, "b")
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]
    for rec in (a, b):
        assert rec["parent_id"] == fan["id"]
        assert rec["status"] == "completed"
    assert step_results_for(ins, "skipped") == []
    flaky = step_results_for(ins, "flaky")
    assert [(r["attempt"], r["status"]) for r in flaky] == [(1, "failed"), (2, "completed")]
    assert all(r["parent_id"] == fan["id"] for r in flaky)
    [sub] = step_results_for(ins, "sub")
    assert sub["parent_id"] == fan["id"]
    [hello] = step_results_for(ins, "hello")
    assert hello["parent_id"] == sub["id"]
    # Each branch target has exactly one record; `after` runs once at the top level.
    [after] = step_results_for(ins, "after")
    assert after["parent_id"] is None
    assert after["started_at"] >= fan["finished_at"]
    top = [r["step_id"] for r in ins["result"]["step_results"] if r["parent_id"] is None]
    assert top == ["fan", "after", "done"]


def test_parallel_failing_branches_fail_the_step_after_the_others(
    cpf: CpfRunner, write_workflow
) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: fan_fail
          inputs: { type: object }
          steps:
            - id: fan
              kind: parallel
              branches:
                - start_at: breaks
                - start_at: slow_ok
                - start_at: too_slow
                - start_at: bad_outputs
            - id: breaks
              kind: cli
              command: exit 3
            - id: slow_ok
              kind: cli
              command: >-
                sleep 1; touch slow_done; echo '{"ok": true}'
            - id: too_slow
              kind: cli
              timeout_seconds: 1
              command: sleep 5
            - id: bad_outputs
              kind: cli
              command: >-
                echo '{"n": "x"}'
              outputs: { type: object, properties: { n: { type: integer } } }
            - id: after
              kind: cli
              command: touch after
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "fan"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    message = env["error"]["message"]
    # The error names every failed branch, and not the one that succeeded.
    for name in ("breaks", "too_slow", "bad_outputs"):
        assert name in message, message
    assert "slow_ok" not in message, message
    # The others ran to completion before the step failed.
    assert (cpf.cwd / "slow_done").exists()
    assert not (cpf.cwd / "after").exists()

    ins = cpf.inspect(env["run_id"])
    [fan] = step_results_for(ins, "fan")
    assert fan["status"] == "failed"
    recs = {r["step_id"]: r for r in ins["result"]["step_results"] if r["parent_id"] == fan["id"]}
    assert set(recs) == {"breaks", "slow_ok", "too_slow", "bad_outputs"}
    assert recs["slow_ok"]["status"] == "completed"
    assert recs["slow_ok"]["outputs"] == {"ok": True}
    assert recs["slow_ok"]["finished_at"] <= fan["finished_at"]
    assert recs["breaks"]["status"] == "failed"
    assert recs["breaks"]["error_code"] == "ERR_STEP_FAILED"
    assert recs["breaks"]["exit_code"] == 3
    assert recs["too_slow"]["error_code"] == "ERR_TIMEOUT"
    assert _seconds(recs["too_slow"]) < 4.5
    assert recs["bad_outputs"]["error_code"] == "ERR_STEP_OUTPUT_INVALID"
    assert step_results_for(ins, "after") == []


def test_parallel_unknown_branch_target(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: fan_unknown
          inputs: { type: object }
          steps:
            - id: fan
              kind: parallel
              branches: [{ start_at: real }, { start_at: ghost }]
            - id: real
              kind: cli
              command: touch real_ran
            - id: done
              kind: end
        """
    )
    val = cpf.ok("validate", "-f", str(path))
    assert any("ghost" in w for w in val.get("warnings") or []), val
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "fan"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "ghost" in env["error"]["message"]


def test_parallel_await_event_branch_fails(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: fan_await
          inputs: { type: object }
          steps:
            - id: fan
              kind: parallel
              branches: [{ start_at: ask }, { start_at: fine }]
            - id: ask
              kind: await_event
              audience: user
              event_name: answer
              input_schema: { type: object }
            - id: fine
              kind: cli
              command: touch fine_ran
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "fan"
    assert "ask" in env["error"]["message"]
    assert (cpf.cwd / "fine_ran").exists()


def test_parallel_pool_is_bounded_by_max_parallel(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: fan_serial
          defaults: { max_parallel: 1 }
          inputs: { type: object }
          steps:
            - id: fan
              kind: parallel
              branches: [{ start_at: one }, { start_at: two }]
            - id: one
              kind: cli
              command: sleep 0.6
            - id: two
              kind: cli
              command: sleep 0.6
        """
    )
    env = cpf.ok("run", "-f", str(path))
    ins = cpf.inspect(env["run_id"])
    [one] = step_results_for(ins, "one")
    [two] = step_results_for(ins, "two")
    # One at a time: the branches do not overlap.
    assert one["finished_at"] <= two["started_at"] or two["finished_at"] <= one["started_at"]
    [fan] = step_results_for(ins, "fan")
    assert _seconds(fan) >= 1.1


def test_parallel_in_foreach_body_runs_each_branch_once(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: fan_in_loop
          inputs: { type: object }
          steps:
            - id: loop
              kind: foreach
              items: '${["p", "q"]}'
              body:
                - id: fan
                  kind: parallel
                  branches: [{ start_at: left }, { start_at: right }]
                - id: left
                  kind: cli
                  command: >-
                    echo "left-${item}" >> ran.log; echo '{"side": "left-${item}"}'
                - id: right
                  kind: end
                  result: "right-${item_index}"
                - id: tail
                  kind: cli
                  command: echo "tail-${item}" >> ran.log
            - id: done
              kind: end
              result: ${steps.loop.outputs.iterations}
        """
    )
    env = cpf.ok("run", "-f", str(path))
    fan_p = {"left": {"side": "left-p"}, "right": "right-0"}
    fan_q = {"left": {"side": "left-q"}, "right": "right-1"}
    assert [it["fan"] for it in env["result"]] == [fan_p, fan_q]
    assert _log_lines(cpf) == ["left-p", "tail-p", "left-q", "tail-q"]
