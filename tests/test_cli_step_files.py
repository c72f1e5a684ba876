"""The per-step side of a `cli` step, black-box through `cpf`: the contract's artifact
files and the environment the command gets."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from conftest import CpfRunner

from core.steps.base import StepContext


def test_an_inherited_variable_that_is_not_utf8_reaches_the_step(
    cpf: CpfRunner, write_workflow
) -> None:
    """Bytes the OS gave us are passed back unchanged (only what the step adds is
    checked for NUL bytes and invalid Unicode)."""
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: odd_env
          inputs: {type: object}
          steps:
            - id: show
              kind: cli
              command: printf '%s' "$ODD" | od -An -tx1
        """
    )
    env = cpf.ok("run", "-f", str(path), env={**cpf.env, "ODD": "a\udcffb"})
    assert env["status"] == "completed"
    stdout = Path(cpf.inspect(env["run_id"])["result"]["step_results"][0]["stdout_path"])
    assert stdout.read_text().split() == ["61", "ff", "62"]


def test_artifact_files_of_every_step(cpf: CpfRunner, write_workflow) -> None:
    """Each step writes runs/<id>/stdout/<step>.txt and stderr/<step>.txt, empty ones too."""
    path = write_workflow(
        """
        schema_version: checkpointflow/v1
        workflow:
          id: files
          inputs: {type: object}
          steps:
            - id: a
              kind: cli
              command: echo out-a; echo err-a >&2
            - id: b
              kind: cli
              command: "true"
        """
    )
    first = cpf.ok("run", "-f", str(path))["run_id"]
    run_dir = cpf.base_dir / "runs" / first
    assert (run_dir / "stdout" / "a.txt").read_text() == "out-a\n"
    assert (run_dir / "stderr" / "a.txt").read_text() == "err-a\n"
    assert (run_dir / "stdout" / "b.txt").read_text() == ""
    assert (run_dir / "stderr" / "b.txt").read_text() == ""
    results = cpf.inspect(first)["result"]["step_results"]
    assert [r["stdout_path"] for r in results] == [
        str(run_dir / "stdout" / "a.txt"),
        str(run_dir / "stdout" / "b.txt"),
    ]


def _context(run_dir: Path, name: str) -> StepContext:
    return StepContext(
        run_id="r",
        step={"id": name, "kind": "cli"},
        attempt=1,
        scope={},
        defaults={},
        workflow_path=run_dir / "wf.yaml",
        run_dir=run_dir,
        cancel=threading.Event(),
        output=lambda _batch: None,
    )


def test_a_prepared_file_keeps_an_earlier_attempt_until_it_is_written(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "run", "s")
    ctx.write_artifact("stdout", "attempt 1 said a lot\n")
    again = _context(tmp_path / "run", "s")
    again.prepare_artifacts("stdout")
    path = again.artifact_path("stdout")
    assert path.read_text() == "attempt 1 said a lot\n"  # not emptied while it runs
    assert again.write_artifact("stdout", "2\n") == str(path)
    assert path.read_text() == "2\n"
    again.close_artifacts()  # nothing left open


def test_an_artifact_folder_removed_in_the_meantime_is_made_again(tmp_path: Path) -> None:
    """Folders are made once per process; one that went away is made again."""
    run_dir = tmp_path / "run"
    _context(run_dir, "a").write_artifact("stderr", "x")
    shutil.rmtree(run_dir)
    ctx = _context(run_dir, "b")
    ctx.prepare_artifacts("stderr")  # never raises
    assert Path(ctx.write_artifact("stderr", "é")).read_text(encoding="utf-8") == "é"
    shutil.rmtree(run_dir)
    assert Path(_context(run_dir, "c").write_artifact("stderr", "")).read_text() == ""
