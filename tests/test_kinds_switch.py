"""Black-box tests of the `switch` step kind through the `cpf` CLI.

Contract §5 (switch), §12 defects 2, 5 and 8, §13 (`${...}` cases evaluated, unknown
targets warned by `validate` and failing cleanly at run time, never falling through).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CpfRunner, step_results_for

ROUTE = """
schema_version: checkpointflow/v1
workflow:
  id: route
  inputs:
    type: object
    required: [env]
    properties:
      env: { type: string }
  steps:
    - id: route
      kind: switch
      cases:
        # cannot be evaluated (no such input): skipped, the next case is tried
        - when: 'inputs.nope == "x"'
          next: broken
        # a plain condition
        - when: 'inputs.env == "prod"'
          next: prod
        # defect 2: a ${...}-wrapped case is evaluated, not silently skipped;
        # it also matches "prod", but the first true case wins
        - when: '${inputs.env in ["prod", "dev", "test"]}'
          next: dev
      default: other
    - id: broken
      kind: end
      result: { path: broken }
    - id: prod
      kind: end
      result: { path: prod }
    - id: dev
      kind: end
      result: { path: dev }
    - id: other
      kind: end
      result: { path: other }
"""


@pytest.mark.parametrize(
    ("env_value", "expected"),
    [("prod", "prod"), ("test", "dev"), ("qa", "other")],
)
def test_switch_cases_and_default(
    cpf: CpfRunner, write_workflow: Callable[..., Path], env_value: str, expected: str
) -> None:
    path = write_workflow(ROUTE)
    env = cpf.ok("run", "-f", str(path), "--input", f'{{"env": "{env_value}"}}')
    assert env["status"] == "completed"
    assert env["result"] == {"path": expected}
    assert env["current_step_id"] == expected
    if env_value != "test":
        return
    ins = cpf.inspect(cpf.run_id_of(env))
    hist = ins["result"]
    # The decision is recorded as the switch's outputs.
    assert hist["step_outputs"]["route"] == {"_next_step_id": expected}
    [rec] = step_results_for(ins, "route")
    assert rec["step_kind"] == "switch"
    assert rec["status"] == "completed"
    assert rec["outputs"] == {"_next_step_id": expected}
    # Only the chosen branch ran.
    assert [r["step_id"] for r in hist["step_results"]] == ["route", expected]


def test_switch_no_match_without_default_fails(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: nomatch
          inputs: { type: object }
          steps:
            - id: route
              kind: switch
              cases:
                - when: 'inputs.missing == 1'
                  next: a
                - when: '1 == 2'
                  next: a
            - id: after
              kind: cli
              command: touch after_ran
            - id: a
              kind: end
              result: { path: a }
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"]
    assert env["current_step_id"] == "route"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    # The case that could not be evaluated is named in the no-match error.
    assert "inputs.missing" in env["error"]["message"]
    assert not (cpf.cwd / "after_ran").exists()


UNKNOWN_TARGET = """
schema_version: checkpointflow/v1
workflow:
  id: unknown_target
  inputs: { type: object, properties: { go: { type: string } } }
  steps:
    - id: route
      kind: switch
      cases:
        - when: 'inputs.go == "case"'
          next: nowhere_case
      default: nowhere_default
    - id: fallthrough
      kind: cli
      command: touch fell_through
    - id: done
      kind: end
      result: { path: fallthrough }
"""


def test_switch_unknown_target_warns_and_fails_cleanly(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(UNKNOWN_TARGET)
    val = cpf.ok("validate", "-f", str(path))
    assert val["ok"] is True
    warnings = val.get("warnings") or []
    assert any("nowhere_case" in w for w in warnings), warnings
    assert any("nowhere_default" in w for w in warnings), warnings

    # The unknown case target, then the unknown default, taken at run time.
    for go, missing in (("case", "nowhere_case"), ("other", "nowhere_default")):
        env = cpf.ok("run", "-f", str(path), "--input", f'{{"go": "{go}"}}', exit_code=30)
        assert env["ok"] is False
        assert env["status"] == "failed"
        assert env["run_id"]
        assert env["error"]["code"] == "ERR_STEP_FAILED"
        assert missing in env["error"]["message"]
        # Never a silent fall-through to the next step in the list.
        assert not (cpf.cwd / "fell_through").exists()


def test_switch_backward_jump_loops_and_if(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: loop
          inputs: { type: object }
          steps:
            - id: count
              kind: cli
              command: |
                n=$(cat n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > n
                printf '{"n": %d}\\n' $n
            - id: skipped_switch
              kind: switch
              if: steps.count.outputs.n > 100
              cases:
                - when: "true"
                  next: wrong
            - id: again
              kind: switch
              cases:
                - when: ${steps.count.outputs.n < 3}
                  next: count
              default: done
            - id: done
              kind: end
              result: { n: "${steps.count.outputs.n}" }
            - id: wrong
              kind: end
              result: { n: wrong }
        """
    )
    env = cpf.ok("run", "-f", str(path))
    # `if` on a switch: false, so it is skipped and the walk goes on to `again`.
    assert env["result"] == {"n": 3}
    assert (cpf.cwd / "n").read_text().strip() == "3"


def test_switch_in_foreach_body_uses_item(cpf: CpfRunner, write_workflow) -> None:
    """Defect 5: switch decisions in a foreach body are honoured and see ${item}."""
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: body_switch
          inputs: { type: object }
          steps:
            - id: each
              kind: foreach
              items: '${["a", "b", "c"]}'
              body:
                - id: pick
                  kind: switch
                  cases:
                    - when: ${item == "b"}
                      next: is_b
                  default: not_b
                - id: is_b
                  kind: end
                  result: "b at ${item_index}"
                - id: not_b
                  kind: end
                  result: "${item} is not b"
            - id: done
              kind: end
              result: "${steps.each.outputs.iterations}"
        """
    )
    env = cpf.ok("run", "-f", str(path))
    assert env["result"] == [
        {"pick": {"_next_step_id": "not_b"}, "not_b": "a is not b"},
        {"pick": {"_next_step_id": "is_b"}, "is_b": "b at 1"},
        {"pick": {"_next_step_id": "not_b"}, "not_b": "c is not b"},
    ]


def test_switch_unknown_target_in_foreach_body_fails(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: body_unknown
          inputs: { type: object }
          steps:
            - id: each
              kind: foreach
              items: '${[1]}'
              body:
                - id: pick
                  kind: switch
                  cases:
                    - when: 'true'
                      next: ghost
                - id: next_in_body
                  kind: cli
                  command: touch fell_through
            - id: done
              kind: end
              result: { ok: true }
        """
    )
    val = cpf.ok("validate", "-f", str(path))
    assert any("ghost" in w for w in val.get("warnings") or []), val
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "ghost" in env["error"]["message"]
    assert env["current_step_id"] == "each"
    assert not (cpf.cwd / "fell_through").exists()
