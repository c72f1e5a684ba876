"""Pilot tests of the TUI against a real temporary store and real `cpf` executors.

Every run is executed by a real detached `cpf` process (spawned by the app, or started
with the `cpf` CLI as another terminal would); the tests poll the app (pilot.pause)
until what they expect is on screen.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tui_seed import screen_ready, wait_until

from core import queries
from cpf_tui.app import CpfApp
from cpf_tui.config import TuiConfig
from cpf_tui.screens.approval import ApprovalScreen
from cpf_tui.screens.dialogs import ReasonDialog, RetryDialog, TypeToConfirmDialog
from cpf_tui.screens.run_view import RunScreen
from cpf_tui.screens.runs import RunsScreen
from cpf_tui.screens.start import StartRunScreen
from cpf_tui.screens.waiting import WaitingScreen
from cpf_tui.screens.workflows import WorkflowsScreen
from cpf_tui.widgets.logview import LogView
from cpf_tui.widgets.vtable import VirtualTable

CPF = str(Path(os.sys.executable).parent / "cpf")

HELLO = """\
schema_version: checkpointflow/v1
workflow:
  id: hello
  name: Hello
  inputs:
    type: object
    required: [name, number]
    properties:
      name: { type: string }
      number: { type: integer, minimum: 0 }
  steps:
    - id: square
      kind: cli
      command: |
        echo "squaring ${inputs.number}" >&2
        printf '{"square": %d}\\n' $(( ${inputs.number} * ${inputs.number} ))
    - id: done
      kind: end
      result:
        greeting: "Hello, ${inputs.name}!"
        square: ${steps.square.outputs.square}
"""

APPROVAL = """\
schema_version: checkpointflow/v1
workflow:
  id: approval
  name: Change approval
  inputs: { type: object }
  steps:
    - id: plan
      kind: cli
      command: |
        echo "plan: 3 files" >&2
        echo '{"files": 3}'
    - id: review
      kind: await_event
      audience: user
      event_name: change_review
      risk_level: high
      prompt: Approve the plan?
      summary: "${steps.plan.outputs.files} files change"
      input_schema:
        type: object
        required: [decision]
        properties:
          decision: { type: string, enum: [approve, reject] }
          comment: { type: string }
      transitions:
        - when: event.decision == "approve"
          next: apply
        - when: event.decision == "reject"
          next: rejected
    - id: apply
      kind: cli
      command: |
        echo applying >&2
    - id: applied
      kind: end
      result: { outcome: applied }
    - id: rejected
      kind: end
      result: { outcome: rejected }
"""

COUNT = """\
schema_version: checkpointflow/v1
workflow:
  id: count
  inputs: { type: object }
  steps:
    - id: ask
      kind: await_event
      audience: user
      event_name: how_many
      prompt: How many?
      input_schema:
        type: object
        required: [count]
        properties:
          count: { type: integer, maximum: 10 }
    - id: done
      kind: end
      result: { count: "${steps.ask.outputs.count}" }
"""

GATED = """\
schema_version: checkpointflow/v1
workflow:
  id: gated
  inputs:
    type: object
    properties: { gate: { type: string } }
  steps:
    - id: work
      kind: cli
      timeout_seconds: 60
      command: |
        echo "first line"
        while [ ! -f "${inputs.gate}" ]; do sleep 0.05; done
        echo "second line"
    - id: done
      kind: end
"""

SLEEPER = """\
schema_version: checkpointflow/v1
workflow:
  id: sleeper
  inputs: { type: object }
  steps:
    - id: nap
      kind: cli
      command: |
        echo napping
        sleep 60
    - id: done
      kind: end
"""

FLAKY = """\
schema_version: checkpointflow/v1
workflow:
  id: flaky
  inputs:
    type: object
    properties: { marker: { type: string } }
  steps:
    - id: build
      kind: cli
      command: |
        echo '{"built": true}'
    - id: deploy
      kind: cli
      command: |
        if [ ! -f "${inputs.marker}" ]; then
          touch "${inputs.marker}"; echo "refused" >&2; exit 3
        fi
        echo deployed
    - id: done
      kind: end
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    for name, text in {
        "hello.yaml": HELLO,
        "approval.yaml": APPROVAL,
        "count.yaml": COUNT,
        "gated.yaml": GATED,
        "sleeper.yaml": SLEEPER,
        "flaky.yaml": FLAKY,
    }.items():
        (folder / name).write_text(text)
    return folder


def cpf(*args: str) -> dict[str, Any]:
    """The real CLI, as another terminal would run it."""
    proc = subprocess.run([CPF, *args], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def cpf_background(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([CPF, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def app_for(flows: Path, **kw: Any) -> CpfApp:
    return CpfApp([str(flows)], config=TuiConfig(), **kw)


def status(run_id: str) -> str | None:
    run = queries.get_run(run_id)
    return None if run is None else run["status"]


def log_text(app: CpfApp) -> str:
    return "\n".join(app.screen.query_one(LogView).lines())


# -- start a run ----------------------------------------------------------------------------


async def test_start_a_run_from_the_inputs_form_and_see_it_complete(tui_store, flows):
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        screen = app.screen
        tree = screen.query_one("#wf-tree")
        tree.move_cursor(screen.file_nodes[(flows / "hello.yaml").resolve()])
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, StartRunScreen), what="form")
        await pilot.pause()
        await pilot.press(*"Ada", "tab", "7", "ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        view = app.screen
        await wait_until(
            pilot,
            lambda: view.run is not None and view.run["status"] == "completed",
            what="the run to complete",
        )
        await wait_until(pilot, lambda: "squaring 7" in log_text(app), what="the step's log")
        run = queries.get_run(view.run_id)
        assert run["inputs"] == {"name": "Ada", "number": 7}  # JSON types, not "7"
        assert run["result"] == {"greeting": "Hello, Ada!", "square": 49}
        start = [e for e in queries.events(view.run_id) if e["kind"] == "start"]
        assert start[0]["surface"] == "tui"


async def test_invalid_inputs_stay_on_the_form(tui_store, flows):
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        app.start_workflow(app.screen.files[(flows / "hello.yaml").resolve()])
        await wait_until(pilot, lambda: isinstance(app.screen, StartRunScreen), what="form")
        await pilot.pause()
        await pilot.press("ctrl+s")  # nothing filled in: both fields are required
        await pilot.pause()
        assert isinstance(app.screen, StartRunScreen)
        form = app.screen.query_one("#inputs-form")
        assert {e.path for e in form.errors} == {("name",), ("number",)}
        assert queries.list_runs() == []


# -- answer a waiting run ---------------------------------------------------------------------


async def test_approve_a_waiting_run_through_the_form(tui_store, flows):
    env = cpf("run", "-f", str(flows / "approval.yaml"))
    assert env["status"] == "waiting"
    run_id = env["run_id"]
    app = app_for(flows, start_area="waiting")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="the waiting list")
        assert isinstance(app.screen, WaitingScreen)
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="the form")
        screen = app.screen
        await wait_until(pilot, lambda: "plan: 3 files" in log_text(app), what="step before")
        await pilot.pause()
        await pilot.press("enter")  # the decision radio set: "approve" is first
        form = screen.query_one("#answer-form")
        await wait_until(pilot, lambda: form.value == {"decision": "approve"}, what="the choice")
        await pilot.press("ctrl+s")
        # risk_level high: type the step id to confirm.
        await wait_until(pilot, lambda: isinstance(app.screen, TypeToConfirmDialog))
        await pilot.press(*"review", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        view = app.screen
        await wait_until(
            pilot,
            lambda: view.run is not None and view.run["status"] == "completed",
            what="the run to complete",
        )
        assert view.run["result"] == {"outcome": "applied"}
        steps = [a["step_id"] for a in queries.attempts(run_id)]
        assert steps == ["plan", "review", "apply", "applied"]  # the transition taken
        (event,) = [e for e in queries.events(run_id) if e["kind"] == "event"]
        assert event["data"] == {"decision": "approve"}
        assert event["surface"] == "tui"
        from core.engine import default_actor

        assert event["actor"] == default_actor()
        assert screen not in app.screen_stack


async def test_invalid_answer_shows_the_engine_error_at_the_field(tui_store, flows):
    env = cpf("run", "-f", str(flows / "count.yaml"))
    run_id = env["run_id"]
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_approval(run_id)
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="the form")
        await pilot.pause()
        await pilot.press(*"50", "ctrl+s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ApprovalScreen)  # not sent
        form = screen.query_one("#answer-form")
        expected = queries.check_event(queries.get_run(run_id), {"count": 50})
        assert [str(e) for e in form.errors] == [str(e) for e in expected]
        field = next(w for w in form.query("FieldWidget") if w.field.key == "count")
        assert any(expected[0].message in m for m in field.errors)
        assert field.has_class("-has-error")
    assert status(run_id) == "waiting"
    assert [e for e in queries.events(run_id) if e["kind"] == "event"] == []


async def test_escape_asks_before_discarding_an_edited_answer(tui_store, flows):
    run_id = cpf("run", "-f", str(flows / "count.yaml"))["run_id"]
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_approval(run_id)
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="the form")
        await pilot.pause()
        await pilot.press("4")
        await pilot.press("escape")
        await pilot.pause()
        from cpf_tui.screens.dialogs import ConfirmDialog

        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")  # keep editing
        await pilot.pause()
        assert isinstance(app.screen, ApprovalScreen)
    assert status(run_id) == "waiting"


# -- control ---------------------------------------------------------------------------------


async def test_cancel_a_running_run_with_a_reason(tui_store, flows):
    proc = cpf_background("run", "-f", str(flows / "sleeper.yaml"))
    app = app_for(flows, start_area="runs")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
            table = app.screen.query_one(VirtualTable)
            await wait_until(pilot, lambda: table.row_count == 1, what="the run to appear")
            run_id = table.cursor_key
            await pilot.press("enter")
            await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
            await wait_until(pilot, lambda: "napping" in log_text(app), what="output")
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, ReasonDialog))
            await pilot.press(*"not needed", "enter")
            view = app.screen
            assert isinstance(view, RunScreen)
            await wait_until(
                pilot,
                lambda: view.run is not None and view.run["status"] == "cancelled",
                what="cancelled",
            )
        assert proc.wait(timeout=30) == 50  # the executor stopped the step and exited
        (cancel,) = [e for e in queries.events(run_id) if e["kind"] == "cancel"]
        assert cancel["data"] == {"reason": "not needed"}
        assert cancel["surface"] == "tui"
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_retry_a_failed_run_from_its_failed_step(tui_store, flows, tmp_path):
    marker = tmp_path / "marker"
    env = cpf(
        "run", "-f", str(flows / "flaky.yaml"), "--input", json.dumps({"marker": str(marker)})
    )
    assert env["status"] == "failed"
    run_id = env["run_id"]
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_run(run_id)
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        await wait_until(pilot, lambda: "refused" in log_text(app), what="the failure log")
        view = app.screen  # the run view (the dialog may still be closing after enter)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RetryDialog))
        await pilot.press("enter")  # the failed step is highlighted
        await wait_until(
            pilot,
            lambda: view.run is not None and view.run["status"] == "completed",
            what="the retried run to complete",
        )
        await wait_until(pilot, lambda: "deployed" in log_text(app), what="the new attempt")
    steps = [(a["step_id"], a["status"]) for a in queries.attempts(run_id)]
    assert steps[:2] == [("build", "completed"), ("deploy", "failed")]
    assert ("deploy", "completed") in steps[2:]
    assert not any(s == "build" for s, _ in steps[2:])  # earlier outputs kept


async def test_delete_a_finished_run_after_confirming(tui_store, flows):
    env = cpf("run", "-f", str(flows / "hello.yaml"), "--input", '{"name": "x", "number": 2}')
    run_id = env["run_id"]
    app = app_for(flows, start_area="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        table = app.screen.query_one(VirtualTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.press("d")
        await pilot.pause()
        await pilot.click("#yes")
        await wait_until(pilot, lambda: table.row_count == 0, what="the row to go")
    assert queries.get_run(run_id) is None


# -- live ------------------------------------------------------------------------------------


async def test_live_output_appears_while_the_step_still_runs(tui_store, flows, tmp_path):
    gate = tmp_path / "gate"
    proc = cpf_background(
        "run", "-f", str(flows / "gated.yaml"), "--input", json.dumps({"gate": str(gate)})
    )
    app = app_for(flows, start_area="runs")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
            table = app.screen.query_one(VirtualTable)
            # A run started by `cpf run` in another terminal appears on its own.
            await wait_until(pilot, lambda: table.row_count == 1, timeout=10, what="new run")
            run_id = table.cursor_key
            await pilot.press("enter")
            await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
            await wait_until(pilot, lambda: "first line" in log_text(app), what="live output")
            assert status(run_id) == "running"  # the step is still running
            assert "second line" not in log_text(app)
            gate.touch()
            await wait_until(pilot, lambda: "second line" in log_text(app), what="more output")
            view = app.screen
            await wait_until(pilot, lambda: view.run["status"] == "completed", what="done")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_a_run_that_starts_waiting_notifies_and_rings(tui_store, flows):
    app = app_for(flows, start_area="runs", waiting_poll=0.2)
    bells = []
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        await wait_until(pilot, lambda: app._waiting_seen is not None, what="first poll")
        env = cpf("run", "-f", str(flows / "count.yaml"))
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="the waiting run")
        assert app.waiting[0]["run_id"] == env["run_id"]
        assert bells == [1]
        titles = [n.title for n in app._notifications]
        assert "A run needs input" in titles
        assert "1" in str(app.screen.query_one("TopBar").render())


# -- conventions -----------------------------------------------------------------------------


async def test_keymap_from_the_settings_file(tui_store, flows, tmp_path):
    settings = tmp_path / "tui.yaml"
    settings.write_text("theme: nord\nkeymap:\n  app.runs: f2\n")
    from cpf_tui.config import load_config

    app = CpfApp([str(flows)], config=load_config(settings))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "nord"
        await pilot.press("f2")
        await pilot.pause()
        assert app.current_mode == "runs"


async def test_command_palette_holds_the_app_commands(tui_store, flows):
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to Runs")
        await wait_until(
            pilot,
            lambda: (
                "Go to Runs"
                in str(app.screen.query("CommandList").first().get_option_at_index(0).prompt)
                if app.screen.query("CommandList")
                and app.screen.query("CommandList").first().option_count
                else False
            ),
            what="the palette hit",
        )
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.current_mode == "runs", what="runs")


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
async def test_every_screen_at_small_and_large_sizes(tui_store, flows, size):
    waiting = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
    done = cpf("run", "-f", str(flows / "hello.yaml"), "--input", '{"name": "a", "number": 3}')
    app = app_for(flows)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        for key in ("down", "down", "f1", "escape", "2"):
            await pilot.press(key)
            await pilot.pause()
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        await pilot.press("s", "s", "o", "f1", "escape", "3")
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="waiting")
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="approval")
        await pilot.press("f1", "escape", "escape")
        await pilot.pause()
        app.open_run(done["run_id"])
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        for key in ("o", "e", "p", "i", "l", "w", "t", "down", "f1", "escape", "escape"):
            await pilot.press(key)
            await pilot.pause()
        await pilot.press("4", "f1", "escape", "1")  # the checkpoints area, and back
        await pilot.pause()
        app.open_run(waiting)
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        await pilot.press("a")
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="approval")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
    assert app.return_code in (None, 0)


def test_the_console_script_is_wired(tui_store):
    proc = subprocess.run(
        [str(Path(CPF).parent / "cpf-tui"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert "PATH" in proc.stdout or "paths" in proc.stdout


LOOP = """\
schema_version: checkpointflow/v1
workflow:
  id: loop
  inputs: { type: object }
  steps:
    - id: each
      kind: foreach
      items: '["a", "b"]'
      body:
        - id: say
          kind: cli
          env: { NAME: "${item}" }
          command: |
            echo "item $NAME"
    - id: done
      kind: end
"""


async def test_timeline_nests_foreach_iterations(tui_store, tmp_path):
    flow = tmp_path / "loop.yaml"
    flow.write_text(LOOP)
    env = cpf("run", "-f", str(flow))
    assert env["status"] == "completed", env
    app = CpfApp([str(tmp_path)], config=TuiConfig())
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_run(env["run_id"])
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        await wait_until(pilot, lambda: "item b" in log_text(app), what="the loop's log")
        tree = app.screen.query_one("#timeline")
        (each,) = [n for n in tree.root.children if "each" in str(n.label)]
        labels = [str(n.label) for n in each.children]
        assert [label.split()[1:3] for label in labels] == [["[0]", "say"], ["[1]", "say"]]
        assert "── each[1]/say ──" in log_text(app)


async def test_an_answer_given_elsewhere_closes_the_form(tui_store, flows):
    run_id = cpf("run", "-f", str(flows / "count.yaml"))["run_id"]
    app = app_for(flows)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        app.open_approval(run_id)
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="the form")
        env = cpf("resume", "--run-id", run_id, "--event", "how_many", "--input", '{"count": 3}')
        assert env["status"] == "completed"
        submit = app.screen.query_one("#submit")
        await wait_until(pilot, lambda: submit.disabled, what="the form to close")
        assert "no longer waiting" in str(app.screen.query_one("#answer-head").render())
        # A refused resume (exit 20) is reported; a failed step is left to the run view.
        app.report_envelope(
            "resume",
            {
                "ok": False,
                "exit_code": 20,
                "error": {"code": "ERR_RUN_NOT_WAITING", "message": "not waiting"},
            },
        )
        app.report_envelope(
            "resume",
            {"ok": False, "exit_code": 30, "error": {"code": "ERR_STEP_FAILED", "message": "boom"}},
        )
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("ERR_RUN_NOT_WAITING" in m for m in messages)
        assert not any("boom" in m for m in messages)
