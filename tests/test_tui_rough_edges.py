"""Issue 11, part A: navigation and keys, forms, and the house (imports, palette).

Pilot tests against the real app, a real temporary store and real `cpf` processes; the
form tests use the forms' own host app. Fast typing is simulated the way a terminal
delivers it: a burst of key events posted to the app at once, not one `press` at a time.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from textual import events
from tui_seed import screen_ready, wait_until

from core import queries
from cpf_tui.app import CpfApp
from cpf_tui.config import TuiConfig
from cpf_tui.forms.demo import FormHost
from cpf_tui.screens.approval import ApprovalScreen
from cpf_tui.screens.dialogs import ReasonDialog, TypeToConfirmDialog
from cpf_tui.screens.run_view import RunScreen
from cpf_tui.screens.runs import RunsScreen
from cpf_tui.screens.start import StartRunScreen
from cpf_tui.screens.waiting import WaitingScreen
from cpf_tui.screens.workflows import WorkflowsScreen
from cpf_tui.widgets.logview import LogView

CPF = str(Path(os.sys.executable).parent / "cpf")
ROOT = Path(__file__).resolve().parent.parent

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
        printf '{"square": %d}\\n' $(( ${inputs.number} * ${inputs.number} ))
    - id: done
      kind: end
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
        echo '{"files": 3}'
    - id: review
      kind: await_event
      audience: user
      event_name: change_review
      risk_level: high
      prompt: Approve the plan?
      input_schema:
        type: object
        required: [decision]
        properties:
          decision: { type: string, enum: [approve, reject] }
          comment: { type: string }
    - id: done
      kind: end
"""

BROKEN = """\
schema_version: checkpointflow/v1
workflow:
  id: broken
  steps: nope
"""

NOT_STARTABLE = {"broken.yaml"}


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    for name, text in {
        "hello.yaml": HELLO,
        "approval.yaml": APPROVAL,
        "hello2.yaml": HELLO.replace("id: hello", "id: hello2").replace("Hello", "Hi"),
        "broken.yaml": BROKEN,
    }.items():
        (folder / name).write_text(text)
    return folder


def cpf(*args: str) -> dict[str, Any]:
    proc = subprocess.run([CPF, *args], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def app_for(flows: Path, **kw: Any) -> CpfApp:
    return CpfApp([str(flows)], config=TuiConfig(), **kw)


def burst(app: Any, *keys: str) -> None:
    """Keys as a terminal delivers a paste or a quick typist: all queued at once."""
    chars = {"tab": "\t", "enter": "\r", "escape": "\x1b", "space": " "}
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else chars.get(key)))


def toasts(app: Any) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def head_text(app: Any) -> str:
    content = app.screen.query_one("#run-head")._content
    return " ".join(getattr(r, "plain", "") for r in getattr(content, "renderables", [content]))


def escape_binding(app: Any) -> Any:
    """The binding escape runs now (None: escape does nothing here)."""
    active = app.screen.active_bindings.get("escape")
    return active if active is not None and active.enabled else None


# -- the house ------------------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_imports_point_one_way_nothing_below_the_app_imports_it():
    package = ROOT / "cpf_tui"
    screens = sorted((package / "screens").glob("*.py"))
    assert len(screens) >= 8
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__main__.py" or path == package / "app.py":
            continue
        imported = _imported_modules(path)
        if any(name == "cpf_tui.app" or name.startswith("cpf_tui.app.") for name in imported):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_import_check_would_catch_an_import_of_the_app(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from cpf_tui.app import off_thread\n")
    assert "cpf_tui.app" in _imported_modules(sample)


# -- keys keep their order -------------------------------------------------------------------

FORM = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
    },
}


async def test_keys_typed_fast_across_fields_land_where_they_were_typed():
    app = FormHost(FORM)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for i in range(12):
            age = str(10 + i)
            burst(app, "ctrl+a", "ctrl+k", *"Ada", "tab", "ctrl+a", "ctrl+k", *age)
            burst(app, "tab", "ctrl+a", "ctrl+k", *"Oslo", "shift+tab", "shift+tab")
            await wait_until(
                pilot,
                lambda age=age: (
                    app.form.value == {"name": "Ada", "age": int(age), "city": "Oslo"}
                    and app.focused is app.form.root.children_fields[0].editor
                ),
                timeout=10,
                what=f"try {i}: {app.form.value}",
            )
        await pilot.pause(0.3)  # nothing typed lands late, elsewhere
        assert app.form.value == {"name": "Ada", "age": 21, "city": "Oslo"}


async def test_keys_typed_fast_on_the_start_form_of_the_real_app(tui_store, flows):
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        app.start_workflow(app.screen.files[(flows / "hello.yaml").resolve()])
        await wait_until(pilot, lambda: isinstance(app.screen, StartRunScreen), what="form")
        await pilot.pause()
        form = app.screen.query_one("#inputs-form")
        for i in range(10):
            number = str(70 + i)
            burst(app, "ctrl+a", "ctrl+k", *"Ada", "tab", "ctrl+a", "ctrl+k", *number)
            burst(app, "shift+tab")
            await wait_until(
                pilot,
                lambda number=number: (
                    form.value == {"name": "Ada", "number": int(number)}
                    and app.focused is form.root.children_fields[0].editor
                ),
                timeout=10,
                what=f"try {i}: {form.value}",
            )
        await pilot.pause(0.3)  # nothing typed lands late, elsewhere
        assert form.value == {"name": "Ada", "number": 79}


# -- escape always leads back ------------------------------------------------------------------


async def test_escape_leaves_the_run_view_while_the_log_has_focus(tui_store, flows):
    cpf("run", "-f", str(flows / "hello.yaml"), "--input", '{"name": "a", "number": 2}')
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        await pilot.press("2")
        await wait_until(
            pilot,
            lambda: screen_ready(app, RunsScreen) and bool(app.screen.runs),
            what="runs",
        )
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        await wait_until(pilot, lambda: isinstance(app.focused, LogView), what="log focus")
        back = escape_binding(app)
        assert back is not None and back.binding.description == "Back" and back.binding.show
        # The search takes escape only while it is open.
        await pilot.press("slash")
        await pilot.pause()
        closing = escape_binding(app)
        assert closing is not None and closing.binding.description == "Close search"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and isinstance(app.focused, LogView)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), what="back")


async def test_escape_is_shown_wherever_it_leads_back(tui_store, flows):
    waiting = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
    app = app_for(flows, start_area="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        # An area's own screen, on the widget it starts on: there is nothing behind.
        assert escape_binding(app) is None
        await pilot.press("slash")  # the filter field
        await pilot.pause()
        assert escape_binding(app).binding.show
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is app.screen.home()
        for opener, cls in (
            (lambda: app.open_run(waiting), RunScreen),
            (lambda: app.open_approval(waiting), ApprovalScreen),
            (
                lambda: app.start_workflow(
                    next(f for f in app.workflow_files if f.path.name == "hello.yaml")
                ),
                StartRunScreen,
            ),
        ):
            if cls is StartRunScreen:
                app.action_area("workflows")
                await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen))
                await wait_until(pilot, lambda: bool(app.workflow_files), what="scan")
            opener()
            await wait_until(
                pilot,
                lambda cls=cls: isinstance(app.screen, cls) and getattr(app.screen, "loaded", True),
                what=cls.__name__,
            )
            await pilot.pause()
            back = escape_binding(app)
            assert back is not None and back.binding.show, cls.__name__
            assert back.binding.description == "Back"
            await pilot.press("escape")
            await wait_until(
                pilot, lambda cls=cls: not isinstance(app.screen, cls), what="left " + cls.__name__
            )


# -- toasts ----------------------------------------------------------------------------------


async def test_the_waiting_toast_is_not_shown_where_the_run_already_is(tui_store, flows):
    app = app_for(flows, start_area="runs", waiting_poll=0.2)
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        await wait_until(pilot, lambda: app._waiting_seen is not None, what="first poll")
        # Elsewhere: one hint, with the key that opens the Waiting list.
        first = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
        await wait_until(pilot, lambda: any("needs input" in t for t in toasts(app)))
        (toast,) = [t for t in toasts(app) if "needs input" in t]
        assert toast.endswith("3: Waiting")
        # Opening that run's form withdraws its toast (it would cover the options).
        app.open_approval(first)
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="form")
        assert not any("needs input" in t for t in toasts(app))
        # Another run starts waiting while the Runs list shows: its toast; opening its
        # view withdraws it, and the view's header gives the hint in the same wording.
        app.pop_screen()
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        second = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
        await wait_until(pilot, lambda: second in {r["run_id"] for r in app.waiting})
        await wait_until(pilot, lambda: any("needs input" in t for t in toasts(app)))
        app.open_run(second)
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="its view")
        assert not any("needs input" in t for t in toasts(app))
        await wait_until(pilot, lambda: "a: answer" in head_text(app), what=head_text(app))


async def test_no_toast_for_a_run_that_starts_waiting_on_its_own_view(tui_store, flows):
    gate = flows.parent / "gate"
    (flows / "gated.yaml").write_text(
        APPROVAL.replace("id: approval", "id: gated").replace(
            "command: |\n",
            f"command: |\n        while [ ! -f {gate} ]; do sleep 0.05; done\n",
        )
    )
    app = app_for(flows, start_area="runs", waiting_poll=0.2)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_until(pilot, lambda: app._waiting_seen is not None, what="first poll")
        proc = subprocess.Popen(
            [CPF, "run", "-f", str(flows / "gated.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            await wait_until(pilot, lambda: bool(queries.list_runs()), what="the run")
            run_id = queries.list_runs()[0]["run_id"]
            app.open_run(run_id)
            await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
            gate.write_text("go")
            await wait_until(pilot, lambda: run_id in {r["run_id"] for r in app.waiting})
            await pilot.pause(0.3)
            assert not any("needs input" in t for t in toasts(app))
        finally:
            proc.wait(timeout=60)


# -- refusals say why ------------------------------------------------------------------------


async def test_retry_key_on_a_cancelled_run_says_why(tui_store, flows):
    run_id = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
    cpf("cancel", "--run-id", run_id, "--reason", "test")
    app = app_for(flows)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        app.open_run(run_id)
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        await wait_until(pilot, lambda: app.screen.run is not None, what="the run")
        assert "r" not in app.screen.active_bindings or not app.screen.active_bindings["r"].enabled
        await pilot.press("r")
        await wait_until(
            pilot,
            lambda: any(
                "Only failed runs can be retried (this one is cancelled)" in t for t in toasts(app)
            ),
            what="the reason",
        )
        await pilot.press("a")
        await wait_until(
            pilot, lambda: any("not waiting for input" in t for t in toasts(app)), what="answer"
        )


async def test_cancel_with_an_empty_reason_says_a_reason_is_required(tui_store, flows):
    run_id = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_run(run_id)
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        await wait_until(pilot, lambda: app.screen.run is not None, what="the run")
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ReasonDialog), what="dialog")
        refusal = app.screen.query_one(".refusal")
        assert not refusal.display or not refusal.has_class("-shown")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReasonDialog)
        assert refusal.has_class("-shown")
        assert "A reason is required" in str(refusal.render())
        await pilot.press(*"ok")
        await pilot.pause()
        assert not refusal.has_class("-shown")
        await pilot.press("escape")
    assert queries.get_run(run_id)["status"] == "waiting"


async def test_a_wrong_step_id_in_the_high_risk_dialog_says_so(tui_store, flows):
    run_id = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_approval(run_id)
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="form")
        await pilot.pause()
        await pilot.press("enter")  # approve
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, TypeToConfirmDialog))
        await pilot.press(*"revue", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TypeToConfirmDialog)
        refusal = str(app.screen.query_one(".refusal").render())
        assert "'revue' is not review" in refusal
        await pilot.press("escape")
    assert queries.get_run(run_id)["status"] == "waiting"


# -- forms -----------------------------------------------------------------------------------

NUMBERS = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "ratio": {"type": "number", "minimum": 0},
    },
}


@pytest.mark.parametrize(
    ("key", "typed", "problem"),
    [
        ("count", "abc", "Must be a whole number"),
        ("count", "1.5", "Must be a whole number"),
        ("count", "-5", "Must be at least 0"),
        ("ratio", "abc", "Must be a number"),
        ("ratio", "-0.5", "Must be at least 0"),
        ("ratio", "1.5", None),
    ],
)
async def test_number_fields_keep_what_was_typed_and_flag_it(key, typed, problem):
    app = FormHost(NUMBERS)
    async with app.run_test(size=(80, 24)) as pilot:
        form = app.form
        widget = next(w for w in form.root.children_fields if w.field.key == key)
        widget.editor.focus()
        await pilot.press(*typed)
        await pilot.pause()
        assert widget.editor.value == typed  # never altered
        assert widget.errors == ([problem] if problem else [])
        assert widget.has_class("-has-error") is bool(problem)
        await pilot.press("ctrl+s")
        await pilot.pause()
        if problem:
            assert app.submitted is None
        else:
            assert app.submitted == {key: 1.5}


async def test_a_fixed_field_loses_its_error_without_resubmitting():
    schema = {
        "type": "object",
        "required": ["decision", "name"],
        "properties": {
            "decision": {"type": "string", "enum": ["approve", "reject"]},
            "name": {"type": "string", "minLength": 2},
        },
    }
    app = FormHost(schema)
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        form = app.form
        decision, name = form.root.children_fields
        assert decision.errors == ["'decision' is a required property"]
        assert name.errors == ["'name' is a required property"]
        decision.editor.focus()
        await pilot.press("enter")  # picks "approve"
        await pilot.pause()
        assert decision.errors == []  # cleared by the change itself
        assert not decision.has_class("-has-error")
        assert name.errors == ["'name' is a required property"]  # still true
        assert [e.path for e in form.errors] == [("name",)]
        name.editor.focus()
        await pilot.press("x")
        await pilot.pause()
        assert name.errors and "short" in name.errors[0]  # still wrong, now for this reason
        await pilot.press("y")
        await pilot.pause()
        assert name.errors == [] and form.errors == []
        assert not form.summary.has_class("-shown")


# -- the palette -----------------------------------------------------------------------------


async def _palette_names(app: Any, pilot: Any, query: str) -> list[str]:
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: bool(app.screen.query("CommandList")), what="palette")
    await pilot.press(*query)

    def names() -> list[str]:
        found = app.screen.query("CommandList").first()
        return [str(found.get_option_at_index(i).prompt) for i in range(found.option_count)]

    await wait_until(pilot, lambda: bool(names()), what=f"hits for {query!r}")
    await pilot.pause(0.3)
    result = names()
    await pilot.press("escape")
    return result


async def test_palette_search_start_finds_every_startable_workflow(tui_store, flows):
    app = app_for(flows, start_area="runs")  # the Workflows area was never opened
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        hits = await _palette_names(app, pilot, "start")
        starts = [h for h in hits if h.startswith("Start run:")]
        startable = sorted(p.name for p in flows.glob("*.yaml") if p.name not in NOT_STARTABLE)
        assert len(starts) == len(startable) == 3
        assert any("(hello2)" in h for h in starts) and not any("broken" in h for h in starts)


async def test_palette_entries_are_unique_on_every_screen(tui_store, flows):
    waiting = cpf("run", "-f", str(flows / "approval.yaml"))["run_id"]
    app = app_for(flows, start_area="waiting")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="waiting")
        await wait_until(pilot, lambda: isinstance(app.screen, WaitingScreen), what="waiting list")
        for screen_opener in (None, lambda: app.open_run(waiting)):
            if screen_opener is not None:
                screen_opener()
                await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
                await wait_until(pilot, lambda: app.screen.run is not None)
            from cpf_tui.commands import CpfCommands

            ours = [name for name, _, _ in CpfCommands(app.screen)._commands()]
            system = [c.title for c in app.get_system_commands(app.screen)]
            names = [n.casefold() for n in ours + system]
            assert len(names) == len(set(names)), sorted(names)
            assert sum("theme" in n for n in names) == 1
            assert sum("answer:" in n for n in names) == 1  # the screen's and the app's: one


async def test_enter_then_escape_typed_at_once_opens_and_leaves_the_run(tui_store, flows):
    cpf("run", "-f", str(flows / "hello.yaml"), "--input", '{"name": "a", "number": 2}')
    app = app_for(flows, start_area="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot, lambda: screen_ready(app, RunsScreen) and bool(app.screen.runs), what="runs"
        )
        shown: list[str] = []
        app.screen_change_signal.subscribe(app, lambda s: shown.append(type(s).__name__))
        burst(app, "enter", "escape")
        await wait_until(
            pilot,
            lambda: "RunScreen" in shown and isinstance(app.screen, RunsScreen),
            what=f"the run view opened and left: {shown}",
        )
        await pilot.pause(1.0)  # its loading, cut short, must not break the app
        assert isinstance(app.screen, RunsScreen) and len(app.screen_stack) == 1


async def test_escape_on_the_workflows_area_comes_back_to_the_tree(tui_store, flows):
    app = app_for(flows)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        tree = app.screen.home()
        assert app.focused is tree and escape_binding(app) is None
        await pilot.press("tab")  # the preview
        await pilot.pause()
        assert app.focused is not tree
        back = escape_binding(app)
        assert back is not None and back.binding.show and back.binding.description == "Back"
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is tree


async def test_enter_then_escape_typed_at_once_on_the_waiting_list(tui_store, flows):
    cpf("run", "-f", str(flows / "approval.yaml"))
    app = app_for(flows, start_area="waiting")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="waiting")
        await wait_until(pilot, lambda: isinstance(app.screen, WaitingScreen), what="list")
        await pilot.pause()
        shown: list[str] = []
        app.screen_change_signal.subscribe(app, lambda s: shown.append(type(s).__name__))
        for _ in range(3):
            burst(app, "enter", "escape")
            await pilot.pause(0.2)
        await wait_until(
            pilot,
            lambda: shown.count("ApprovalScreen") == 3 and isinstance(app.screen, WaitingScreen),
            what="the form opened and left three times",
        )
        await pilot.pause(1.0)  # its loading, cut short, must not break the app
        assert isinstance(app.screen, WaitingScreen)
