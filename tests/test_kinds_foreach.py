"""Black-box tests of the `foreach` step kind through the `cpf` CLI.

Contract §5 (foreach), §12 defects 4 and 5 (`if` ignored in bodies, `${item}` only for cli
bodies, body switch decisions ignored), §13: one step loop for every context, so body
steps of every kind see `${item}` / `${item_index}`, honour `if`, `retry`, `timeout_seconds`
and `outputs`, and are recorded in the store under the foreach attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import CpfRunner, step_results_for

CHILD = """
schema_version: checkpointflow/v1
workflow:
  id: child
  inputs:
    type: object
    required: [value, label]
    properties:
      value: { type: integer }
      label: { type: string }
  steps:
    - id: double
      kind: cli
      command: >-
        echo '{"double": '$((${inputs.value} * 2))'}'
    - id: out
      kind: end
      result: { double: "${steps.double.outputs.double}", label: "${inputs.label}" }
"""

BODIES = """
schema_version: checkpointflow/v1
workflow:
  id: bodies
  inputs:
    type: object
    properties:
      things:
        type: array
        default:
          - { name: a, n: 1 }
          - { name: skip, n: 2 }
          - { name: c, n: 3 }
  steps:
    - id: loop
      kind: foreach
      items: inputs.things
      body:
        - id: show
          kind: cli
          env: { NAME: "${item.name}" }
          command: >-
            printf '{"name": "%s", "index": %d}\\n' "$NAME" ${item_index}
          outputs:
            type: object
            required: [name, index]
        - id: only_c
          kind: cli
          if: item.name == "c"
          command: >-
            echo '{"c": true}'
        - id: flaky
          kind: cli
          retry: { max_attempts: 2, backoff_seconds: 0 }
          command: >-
            if [ -e "flaky_${item_index}" ]; then echo '{"second": true}';
            else touch "flaky_${item_index}"; exit 1; fi
        - id: sub
          kind: workflow
          workflow_ref: parts/child.yaml
          inputs: { value: "${item.n}", label: "${item.name}-${item_index}" }
        - id: route
          kind: switch
          cases:
            - when: ${item.name == "skip"}
              next: skipped_end
          default: normal_end
        - id: normal_end
          kind: end
          result: { item: "${item}", index: "${item_index}" }
        - id: skipped_end
          kind: end
          result: "skipped ${item_index}"
        - id: after_end
          kind: cli
          command: touch after_end
    - id: done
      kind: end
      result: "${steps.loop.outputs}"
"""


def _by_id(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in records}


def test_foreach_bodies_of_every_kind_see_item(
    cpf: CpfRunner, write_workflow: Callable[..., Path]
) -> None:
    write_workflow(CHILD, "flows/parts/child.yaml")
    path = write_workflow(BODIES, "flows/bodies.yaml")
    env = cpf.ok("run", "-f", str(path))
    assert env["status"] == "completed"
    second = {"second": True}
    assert env["result"] == {
        "iterations": [
            {
                "show": {"name": "a", "index": 0},
                "flaky": second,
                "sub": {"double": 2, "label": "a-0"},
                "route": {"_next_step_id": "normal_end"},
                "normal_end": {"item": {"name": "a", "n": 1}, "index": 0},
            },
            {
                "show": {"name": "skip", "index": 1},
                "flaky": second,
                "sub": {"double": 4, "label": "skip-1"},
                "route": {"_next_step_id": "skipped_end"},
                "skipped_end": "skipped 1",
            },
            {
                "show": {"name": "c", "index": 2},
                "only_c": {"c": True},
                "flaky": second,
                "sub": {"double": 6, "label": "c-2"},
                "route": {"_next_step_id": "normal_end"},
                "normal_end": {"item": {"name": "c", "n": 3}, "index": 2},
            },
        ]
    }
    # An end step in a body ends that iteration only.
    assert not (cpf.cwd / "after_end").exists()

    ins = cpf.inspect(env["run_id"])
    records = ins["result"]["step_results"]
    [loop] = step_results_for(ins, "loop")
    assert loop["parent_id"] is None
    assert loop["status"] == "completed"
    assert loop["outputs"] == env["result"]
    [done] = step_results_for(ins, "done")
    assert done["parent_id"] is None

    # Every body attempt is recorded under the foreach attempt.
    shows = step_results_for(ins, "show")
    assert len(shows) == 3
    assert all(r["parent_id"] == loop["id"] for r in shows)
    assert [r["outputs"]["index"] for r in shows] == [0, 1, 2]
    # Artifacts of the iterations do not overwrite each other.
    paths = [r["stdout_path"] for r in shows]
    assert len(set(paths)) == 3
    assert [Path(p).read_text().strip() for p in paths] == [
        '{"name": "a", "index": 0}',
        '{"name": "skip", "index": 1}',
        '{"name": "c", "index": 2}',
    ]
    # `if` honoured in the body: only the third iteration ran only_c.
    [only_c] = step_results_for(ins, "only_c")
    assert only_c["parent_id"] == loop["id"]
    assert step_results_for(ins, "after_end") == []
    # retry in the body: two attempts per iteration, the first failed.
    flaky = step_results_for(ins, "flaky")
    assert [(r["attempt"], r["status"]) for r in flaky] == [(1, "failed"), (2, "completed")] * 3
    assert all(r["parent_id"] == loop["id"] for r in flaky)
    # The sub-workflow's steps are nested one level deeper, under each `sub` attempt.
    subs = step_results_for(ins, "sub")
    assert len(subs) == 3 and all(r["parent_id"] == loop["id"] for r in subs)
    doubles = step_results_for(ins, "double")
    assert [r["parent_id"] for r in doubles] == [r["id"] for r in subs]
    assert [r["outputs"] for r in doubles] == [{"double": 2}, {"double": 4}, {"double": 6}]
    # Nothing nested leaks to the top level.
    top = [r["step_id"] for r in records if r["parent_id"] is None]
    assert top == ["loop", "done"]
    assert set(ins["result"]["step_outputs"]) == {"loop", "done"}


def test_foreach_failing_iteration_fails_the_step(cpf: CpfRunner, write_workflow) -> None:
    """timeout_seconds and retry in a body; the first failing iteration stops the loop."""
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: failing
          inputs: { type: object }
          steps:
            - id: loop
              kind: foreach
              items: ${[10, 11, 12]}
              body:
                - id: work
                  kind: cli
                  timeout_seconds: 1
                  retry: { max_attempts: 2 }
                  command: >-
                    touch "ran_${item}"; if [ ${item_index} -eq 1 ]; then sleep 5; fi;
                    echo '{"ok": true}'
            - id: after
              kind: cli
              command: touch after
        """
    )
    started = time.monotonic()
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert time.monotonic() - started < 9
    assert env["status"] == "failed"
    assert env["current_step_id"] == "loop"
    assert env["error"]["code"] == "ERR_TIMEOUT"
    assert "iteration 1" in env["error"]["message"]
    assert (cpf.cwd / "ran_10").exists() and (cpf.cwd / "ran_11").exists()
    assert not (cpf.cwd / "ran_12").exists()
    assert not (cpf.cwd / "after").exists()

    ins = cpf.inspect(env["run_id"])
    [loop] = step_results_for(ins, "loop")
    assert loop["status"] == "failed"
    assert loop["error_code"] == "ERR_TIMEOUT"
    work = step_results_for(ins, "work")
    assert [(r["attempt"], r["status"], r["error_code"]) for r in work] == [
        (1, "completed", None),
        (1, "failed", "ERR_TIMEOUT"),
        (2, "failed", "ERR_TIMEOUT"),
    ]
    assert all(r["parent_id"] == loop["id"] for r in work)
    for r in work[1:]:
        took = datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])
        assert 0.9 <= took.total_seconds() < 4.5
    assert step_results_for(ins, "after") == []


def test_foreach_body_outputs_schema_is_validated(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: schema_body
          inputs: { type: object }
          steps:
            - id: loop
              kind: foreach
              items: '${["x"]}'
              body:
                - id: produce
                  kind: cli
                  command: >-
                    echo '{"count": "not a number"}'
                  outputs:
                    type: object
                    required: [count]
                    properties: { count: { type: integer } }
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"
    assert env["current_step_id"] == "loop"


def test_foreach_items_forms_and_errors(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: items_forms
          inputs:
            type: object
            properties:
              xs: { type: array, default: [] }
              word: { type: string, default: abc }
              bad: { type: boolean, default: false }
          steps:
            - id: empty
              kind: foreach
              items: ${inputs.xs}
              body:
                - id: never
                  kind: cli
                  command: touch never
            - id: skipped
              kind: foreach
              if: inputs.xs != []
              items: inputs.xs
              body:
                - id: never2
                  kind: cli
                  command: touch never2
            - id: not_a_list
              kind: foreach
              if: inputs.bad
              items: inputs.word
              body:
                - id: never3
                  kind: cli
                  command: touch never3
            - id: done
              kind: end
              result: { empty: "${steps.empty.outputs}", skipped: '${"skipped" in steps}' }
        """
    )
    env = cpf.ok("run", "-f", str(path))
    assert env["result"] == {"empty": {"iterations": []}, "skipped": False}
    env = cpf.ok("run", "-f", str(path), "--input", '{"bad": true}', exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "not_a_list"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert not any((cpf.cwd / n).exists() for n in ("never", "never2", "never3"))


def test_foreach_await_event_in_body_fails_cleanly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: await_body
          inputs: { type: object }
          steps:
            - id: loop
              kind: foreach
              items: ${[1]}
              body:
                - id: ask
                  kind: await_event
                  audience: user
                  event_name: answer
                  input_schema: { type: object }
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "loop"
    assert env["run_id"]


def test_foreach_workflow_ref_gets_foreach_inputs(cpf: CpfRunner, write_workflow) -> None:
    """With workflow_ref each item runs the sub-workflow with inputs._foreach_item/_index;
    the reference resolves next to the parent file, not the cwd."""
    write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: per_item
          inputs:
            type: object
            required: [_foreach_item, _foreach_index]
            properties:
              _foreach_item: { type: string }
              _foreach_index: { type: integer }
          steps:
            - id: first_only
              kind: cli
              if: inputs._foreach_index == 0
              command: >-
                echo '{"first": true}'
            - id: result
              kind: end
              result:
                item: ${inputs._foreach_item}
                index: ${inputs._foreach_index}
                upper: "${inputs._foreach_item}!"
        """,
        "flows/lib/per_item.yaml",
    )
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: refs
          inputs: { type: object, properties: { names: { type: array } } }
          steps:
            - id: loop
              kind: foreach
              items: inputs.names
              workflow_ref: lib/per_item.yaml
            - id: done
              kind: end
              result: "${steps.loop.outputs.iterations}"
        """,
        "flows/refs.yaml",
    )
    env = cpf.ok("run", "-f", str(path), "--input", '{"names": ["x", "y"]}')
    assert env["result"] == [
        {"item": "x", "index": 0, "upper": "x!"},
        {"item": "y", "index": 1, "upper": "y!"},
    ]
    ins = cpf.inspect(env["run_id"])
    [loop] = step_results_for(ins, "loop")
    assert loop["outputs"] == {"iterations": env["result"]}
    [first] = step_results_for(ins, "first_only")
    results = step_results_for(ins, "result")
    assert len(results) == 2
    # The sub-workflow steps are recorded under the foreach attempt.
    assert first["parent_id"] == loop["id"]
    assert all(r["parent_id"] == loop["id"] for r in results)
