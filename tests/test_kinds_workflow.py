"""Black-box tests of the `workflow` (sub-workflow) step kind and of workflow-level `outputs`,
through the `cpf` CLI.

Contract §5 (workflow), §12 defects 4, 14 and 15 (`if` ignored in sub-workflows, workflow
`outputs` ignored, path resolved against the cwd, child inputs not validated, artifact
collisions), §13.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CpfRunner, step_results_for

PARENT = """
schema_version: checkpointflow/v1
workflow:
  id: parent
  inputs:
    type: object
    properties:
      n: { type: integer, default: 3 }
  steps:
    - id: build
      kind: cli
      command: >-
        echo '{"who": "parent"}'
    - id: sub
      kind: workflow
      workflow_ref: parts/child.yaml
      inputs:
        n: ${inputs.n}
        tags: ["x", "${inputs.n}"]
    - id: skipped_sub
      kind: workflow
      if: inputs.n > 100
      workflow_ref: parts/does_not_exist.yaml
    - id: done
      kind: end
      result:
        sub: ${steps.sub.outputs}
        parent_build: ${steps.build.outputs.who}
        skipped: '${"skipped_sub" in steps}'
"""

CHILD = """
schema_version: checkpointflow/v1
workflow:
  id: child
  inputs:
    type: object
    required: [n, tags]
    properties:
      n: { type: integer }
      tags: { type: array }
      mode: { type: string, default: fast }
  steps:
    - id: build
      kind: cli
      command: >-
        echo '{"who": "child", "n": ${inputs.n}}'
    - id: never
      kind: cli
      if: inputs.n > 100
      command: touch never_ran
    - id: flaky
      kind: cli
      retry: { max_attempts: 2 }
      command: >-
        if [ -e child_flaky ]; then echo '{"ok": true}'; else touch child_flaky; exit 1; fi
    - id: grand
      kind: workflow
      workflow_ref: deeper/grandchild.yaml
      inputs: { n: "${inputs.n}" }
    - id: pick
      kind: switch
      cases:
        - when: ${inputs.mode == "fast"}
          next: fast_end
      default: slow_end
    - id: slow_end
      kind: end
      result: { mode: slow }
    - id: fast_end
      kind: end
      result:
        mode: ${inputs.mode}
        n: ${inputs.n}
        tags: ${inputs.tags}
        built_by: ${steps.build.outputs.who}
        grand: ${steps.grand.outputs}
"""

GRANDCHILD = """
schema_version: checkpointflow/v1
workflow:
  id: grandchild
  inputs: { type: object, required: [n], properties: { n: { type: integer } } }
  steps:
    - id: square
      kind: cli
      command: >-
        echo '{"square": '$((${inputs.n} * ${inputs.n}))'}'
"""


def _tree(write_workflow: Callable[..., Path]) -> Path:
    write_workflow(GRANDCHILD, "flows/parts/deeper/grandchild.yaml")
    write_workflow(CHILD, "flows/parts/child.yaml")
    return write_workflow(PARENT, "flows/parent.yaml")


def test_sub_workflow_resolved_next_to_parent_from_another_cwd(
    cpf: CpfRunner, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    path = _tree(write_workflow)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cpf.ok("run", "-f", str(path), cwd=elsewhere)
    assert env["status"] == "completed"
    assert env["result"] == {
        "sub": {
            # child defaults filled in; inputs interpolated keeping their types
            "mode": "fast",
            "n": 3,
            "tags": ["x", 3],
            "built_by": "child",
            # no end step in the grandchild: its outputs are its step outputs by id
            "grand": {"square": {"square": 9}},
        },
        # the child's `build` did not overwrite the parent's
        "parent_build": "parent",
        # `if` on a workflow step: skipped (its missing file never looked at)
        "skipped": False,
    }
    # `if` honoured inside the sub-workflow (defect 4).
    assert not (elsewhere / "never_ran").exists()

    ins = cpf.inspect(env["run_id"])
    records = ins["result"]["step_results"]
    top = [r["step_id"] for r in records if r["parent_id"] is None]
    assert top == ["build", "sub", "done"]
    [sub] = step_results_for(ins, "sub")
    parent_build, child_build = step_results_for(ins, "build")
    assert parent_build["parent_id"] is None
    assert child_build["parent_id"] == sub["id"]
    # Child steps are recorded under the workflow step, their artifacts do not collide.
    assert parent_build["stdout_path"] != child_build["stdout_path"]
    assert Path(parent_build["stdout_path"]).read_text().strip() == '{"who": "parent"}'
    assert Path(child_build["stdout_path"]).read_text().strip() == '{"who": "child", "n": 3}'
    assert step_results_for(ins, "never") == []
    flaky = step_results_for(ins, "flaky")
    assert [(r["attempt"], r["status"]) for r in flaky] == [(1, "failed"), (2, "completed")]
    assert all(r["parent_id"] == sub["id"] for r in flaky)
    [grand] = step_results_for(ins, "grand")
    [square] = step_results_for(ins, "square")
    assert grand["parent_id"] == sub["id"]
    assert square["parent_id"] == grand["id"]
    [pick] = step_results_for(ins, "pick")
    assert pick["outputs"] == {"_next_step_id": "fast_end"}
    assert step_results_for(ins, "slow_end") == []
    assert set(ins["result"]["step_outputs"]) == {"build", "sub", "done"}


@pytest.mark.parametrize("opt_in", [False, True])
def test_sub_workflow_falls_back_to_the_cwd(cpf: CpfRunner, write_workflow, opt_in: bool) -> None:
    """checkpointflow compatibility: a ref that only exists relative to the cwd. The cwd
    is outside the workflow's folder here, so it takes the workflow's opt-in."""
    write_workflow(GRANDCHILD, "lib/square.yaml")
    defaults = "defaults: { workflow: { allow_outside: true } }" if opt_in else ""
    path = write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: fallback
          {defaults}
          inputs: {{ type: object }}
          steps:
            - id: sq
              kind: workflow
              workflow_ref: lib/square.yaml
              inputs: {{ n: 4 }}
            - id: done
              kind: end
              result: ${{steps.sq.outputs.square.square}}
        """,
        "flows/fallback.yaml",
    )
    if opt_in:
        env = cpf.ok("run", "-f", str(path))
        assert env["result"] == 16
    else:
        env = cpf.ok("run", "-f", str(path), exit_code=30)
        assert env["error"]["code"] == "ERR_STEP_FAILED"
        assert "outside the folder of fallback.yaml" in env["error"]["message"]
        assert "allow_outside" in env["error"]["message"]


def test_sub_workflow_missing_file(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: missing
          inputs: { type: object }
          steps:
            - id: sub
              kind: workflow
              workflow_ref: nowhere/child.yaml
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["run_id"]
    assert env["current_step_id"] == "sub"
    assert env["error"]["code"] == "ERR_FILE_NOT_FOUND"


def _caller(write_workflow: Callable[..., Path], inputs: str) -> Path:
    write_workflow(CHILD, "parts/child.yaml")
    write_workflow(GRANDCHILD, "parts/deeper/grandchild.yaml")
    return write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: caller
          inputs: {{ type: object }}
          steps:
            - id: sub
              kind: workflow
              workflow_ref: parts/child.yaml
              inputs: {inputs}
            - id: after
              kind: cli
              command: touch after
        """
    )


def test_sub_workflow_inputs_are_validated(cpf: CpfRunner, write_workflow) -> None:
    # The child requires `tags` and an integer `n`: both are wrong here.
    path = _caller(write_workflow, '{ n: "two" }')
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"]
    assert env["current_step_id"] == "sub"
    assert env["error"]["code"] in ("ERR_VALIDATION_INPUT", "ERR_STEP_FAILED")
    assert "child" in env["error"]["message"] or "input" in env["error"]["message"].lower()
    # The child never ran, nor did the step after the workflow step.
    assert not (cpf.cwd / "child_flaky").exists()
    assert not (cpf.cwd / "after").exists()


def test_sub_workflow_step_failures_propagate(cpf: CpfRunner, write_workflow) -> None:
    """timeout_seconds and outputs schemas are enforced on the child's steps."""
    write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: slow_child
          inputs: { type: object, properties: { mode: { type: string } } }
          steps:
            - id: slow
              kind: cli
              if: inputs.mode == "slow"
              timeout_seconds: 1
              command: sleep 5
            - id: bad
              kind: cli
              command: >-
                echo '{"n": "x"}'
              outputs: { type: object, properties: { n: { type: integer } } }
        """,
        "parts/slow_child.yaml",
    )
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: slow_parent
          inputs: { type: object, properties: { mode: { type: string } } }
          steps:
            - id: sub
              kind: workflow
              workflow_ref: parts/slow_child.yaml
              inputs: { mode: "${inputs.mode}" }
        """
    )
    env = cpf.ok("run", "-f", str(path), "--input", '{"mode": "slow"}', exit_code=30)
    assert env["current_step_id"] == "sub"
    assert env["error"]["code"] == "ERR_TIMEOUT"
    assert "slow" in env["error"]["message"]

    env = cpf.ok("run", "-f", str(path), "--input", '{"mode": "fast"}', exit_code=30)
    assert env["current_step_id"] == "sub"
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"


def test_invalid_or_waiting_sub_workflow_fails_the_step(cpf: CpfRunner, write_workflow) -> None:
    """A child that fails validation, or that holds an await_event, fails its step cleanly
    (exit 30, never 10 or 90). Both run as parallel branches of one run."""
    write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: broken
          inputs: { type: object }
          steps:
            - id: x
              kind: cli
              comand: echo typo
        """,
        "broken.yaml",
    )
    write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: waits
          inputs: { type: object }
          steps:
            - id: ask
              kind: await_event
              audience: user
              event_name: answer
              input_schema: { type: object }
        """,
        "waits.yaml",
    )
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: uses_bad_children
          inputs: { type: object }
          steps:
            - id: fan
              kind: parallel
              branches: [{ start_at: uses_broken }, { start_at: uses_waits }]
            - id: uses_broken
              kind: workflow
              workflow_ref: broken.yaml
            - id: uses_waits
              kind: workflow
              workflow_ref: waits.yaml
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["current_step_id"] == "fan"
    assert env["run_id"]
    assert "uses_broken" in env["error"]["message"]
    assert "uses_waits" in env["error"]["message"]
    ins = cpf.inspect(env["run_id"])
    [broken] = step_results_for(ins, "uses_broken")
    [waits] = step_results_for(ins, "uses_waits")
    assert broken["status"] == "failed" and broken["error_code"] != "ERR_INTERNAL"
    assert waits["status"] == "failed" and waits["error_code"] != "ERR_INTERNAL"
    [ask] = step_results_for(ins, "ask")
    assert ask["parent_id"] == waits["id"]
    assert ask["status"] == "failed"


OUTPUTS = """
schema_version: checkpointflow/v1
workflow:
  id: with_outputs
  inputs: { type: object, properties: { count: {} } }
  steps:
    - id: done
      kind: end
      result: { count: "${inputs.count}" }
  outputs:
    type: object
    required: [count]
    properties: { count: { type: integer } }
"""


def test_workflow_outputs_validate_the_result(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(OUTPUTS)
    env = cpf.ok("run", "-f", str(path), "--input", '{"count": 2}')
    assert env["result"] == {"count": 2}

    env = cpf.ok("run", "-f", str(path), "--input", '{"count": "many"}', exit_code=30)
    assert env["ok"] is False
    assert env["status"] == "failed"
    assert env["run_id"]
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"


def test_workflow_outputs_checked_on_implicit_completion(cpf: CpfRunner, write_workflow) -> None:
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: implicit
          inputs: { type: object }
          steps:
            - id: only
              kind: cli
              command: "true"
          outputs: { type: object, required: [count] }
        """
    )
    env = cpf.ok("run", "-f", str(path), exit_code=30)
    assert env["status"] == "failed"
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"


def test_sub_workflow_outputs_schema_is_enforced(cpf: CpfRunner, write_workflow) -> None:
    """A child's own workflow-level `outputs` applies to its result as well."""
    write_workflow(OUTPUTS, "parts/counted.yaml")
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: counts
          inputs: { type: object, properties: { count: {} } }
          steps:
            - id: sub
              kind: workflow
              workflow_ref: parts/counted.yaml
              inputs: { count: "${inputs.count}" }
            - id: after
              kind: cli
              command: touch after
        """
    )
    env = cpf.ok("run", "-f", str(path), "--input", '{"count": "many"}', exit_code=30)
    assert env["current_step_id"] == "sub"
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"
    assert not (cpf.cwd / "after").exists()


def test_inspect_names_the_context_of_nested_records(cpf: CpfRunner, write_workflow) -> None:
    """The guide: `cpf inspect` lists nested attempts under the step that ran them
    (`parent_id`, `context` such as `loop[2]` or `fan`)."""
    write_workflow(GRANDCHILD, "sq.yaml")
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: contexts
          inputs: { type: object }
          steps:
            - id: loop
              kind: foreach
              items: ${[1, 2]}
              body:
                - id: body_step
                  kind: end
                  result: ${item}
            - id: fan
              kind: parallel
              branches: [{ start_at: branch_step }]
            - id: branch_step
              kind: end
              result: branch
            - id: deploy
              kind: workflow
              workflow_ref: sq.yaml
              inputs: { n: 2 }
        """
    )
    env = cpf.ok("run", "-f", str(path))
    ins = cpf.inspect(env["run_id"])
    contexts = {}
    for rec in ins["result"]["step_results"]:
        assert "context" in rec, rec
        contexts.setdefault(rec["step_id"], []).append(rec["context"])
    assert contexts["loop"] == [None]
    assert contexts["body_step"] == ["loop[0]", "loop[1]"]
    assert contexts["branch_step"] == ["fan"]
    assert contexts["square"] == ["deploy"]


# --------------------------------------------------------------------------- escapes

EVIL = """
schema_version: checkpointflow/v1
workflow:
  id: evil
  inputs: { type: object }
  steps:
    - id: pwn
      kind: cli
      command: touch PWNED
"""


def _escape_tree(write_workflow: Callable[..., Path], tmp_path: Path, defaults: str) -> Path:
    """proj/main.yaml picks parts/<flavor>.yaml by run input; elsewhere/evil.yaml is outside."""
    write_workflow(EVIL.replace("evil", "good").replace("PWNED", "GOOD"), "proj/parts/good.yaml")
    evil = write_workflow(EVIL, "elsewhere/evil.yaml")
    (tmp_path / "work" / "proj" / "parts" / "link.yaml").symlink_to(evil)
    return write_workflow(
        f"""
        schema_version: checkpointflow/v1
        workflow:
          id: main
          {defaults}
          inputs: {{ type: object }}
          steps:
            - id: sub
              kind: workflow
              workflow_ref: parts/${{inputs.flavor}}.yaml
            - id: each
              kind: foreach
              items: inputs.list
              workflow_ref: ${{inputs.each}}
        """,
        "proj/main.yaml",
    )


@pytest.mark.parametrize(
    "flavor, each",
    [
        ("../../elsewhere/evil", "parts/good.yaml"),  # traversal out of the folder
        ("link", "parts/good.yaml"),  # a symlink inside that points outside
        ("good", "../elsewhere/evil.yaml"),  # foreach workflow_ref
        ("good", "ABSOLUTE"),  # an absolute path outside
    ],
)
def test_workflow_refs_cannot_leave_the_workflow_folder(
    cpf: CpfRunner, write_workflow: Callable[..., Path], tmp_path: Path, flavor: str, each: str
) -> None:
    path = _escape_tree(write_workflow, tmp_path, "")
    if each == "ABSOLUTE":
        each = str(tmp_path / "work" / "elsewhere" / "evil.yaml")
    inputs = {"flavor": flavor, "list": [1], "each": each}
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps(inputs), exit_code=30)
    assert env["status"] == "failed"
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    message = env["error"]["message"]
    assert "outside the folder of main.yaml; refused" in message, message
    assert "defaults.workflow.allow_outside: true" in message
    assert str(tmp_path / "work" / "elsewhere" / "evil.yaml") in message  # the real path
    assert not (cpf.cwd / "PWNED").exists()


def test_workflow_refs_outside_with_the_opt_in(
    cpf: CpfRunner, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    path = _escape_tree(write_workflow, tmp_path, "defaults: { workflow: { allow_outside: true } }")
    inputs = {"flavor": "../../elsewhere/evil", "list": [1], "each": "parts/good.yaml"}
    env = cpf.ok("run", "-f", str(path), "--input", json.dumps(inputs))
    assert env["status"] == "completed"
    assert (cpf.cwd / "PWNED").exists() and (cpf.cwd / "GOOD").exists()


def test_validate_warns_about_interpolated_refs(
    cpf: CpfRunner, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    path = _escape_tree(write_workflow, tmp_path, "defaults: { workflow: { allow_outside: 1 } }")
    env = cpf.ok("validate", "-f", str(path))
    warnings = env["warnings"]
    for where in ("workflow.steps[0].workflow_ref", "workflow.steps[1].workflow_ref"):
        [hit] = [w for w in warnings if w.startswith(where + ":")]
        assert "is interpolated, so run input can choose which file runs" in hit
        assert "defaults.workflow.allow_outside" in hit
    assert "workflow.defaults.workflow.allow_outside: 1 is not of type 'boolean'" in warnings
    # A fixed ref draws no such warning.
    env = cpf.ok("validate", "-f", str(write_workflow(PARENT, "flows/parent.yaml")))
    assert not [w for w in env.get("warnings", []) if "interpolated" in w]
