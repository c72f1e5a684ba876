"""The TUI's speed work, as behaviour: keys typed fast across a screen change, screens
mounted once, a footer that is not rebuilt for nothing, and screens that show at once
with a loading state while their data is read off the UI thread.

Pilot tests against the real app, a real temporary store and real `cpf` processes. The
figures themselves are measured by `bench/bench_tui.py`, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets._footer import FooterKey
from tui_seed import screen_ready, wait_until

from cpf_tui.app import CpfApp
from cpf_tui.config import TuiConfig
from cpf_tui.prebuild import hidden_screen
from cpf_tui.screens.base import CpfScreen
from cpf_tui.screens.checkpoints import CheckpointsScreen
from cpf_tui.screens.run_view import RunScreen
from cpf_tui.screens.runs import RunsScreen
from cpf_tui.screens.waiting import WaitingScreen
from cpf_tui.screens.workflows import WorkflowsScreen
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.vtable import VirtualTable

CPF = str(Path(os.sys.executable).parent / "cpf")

HELLO = """\
schema_version: checkpointflow/v1
workflow:
  id: hello
  name: Hello
  inputs: { type: object }
  steps:
    - id: greet
      kind: cli
      command: |
        echo '{"greeting": "hi"}'
    - id: done
      kind: end
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "hello.yaml").write_text(HELLO)
    return folder


def cpf(*args: str) -> dict[str, Any]:
    proc = subprocess.run([CPF, *args], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def burst(app: Any, *keys: str) -> None:
    """Keys as a quick typist sends them: all queued at once."""
    chars = {"enter": "\r", "escape": "\x1b"}
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else chars.get(key)))


def footer_keys(app: Any) -> list[FooterKey]:
    return list(app.screen.query_one(KeyFooter).query_children(FooterKey))


async def test_enter_escape_enter_typed_fast_reopens_the_run_view(tui_store, flows):
    run_id = cpf("run", "-f", str(flows / "hello.yaml"))["run_id"]
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen) and app.screen.runs)
        for _ in range(3):
            burst(app, "enter", "escape", "enter")
            await wait_until(
                pilot,
                lambda: isinstance(app.screen, RunScreen) and app.screen.loaded,
                what="the run view, open again",
            )
            await pilot.pause(0.3)  # nothing queued may close it afterwards
            assert [type(s) for s in app.screen_stack] == [RunsScreen, RunScreen]
            assert app.screen.run_id == run_id
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_every_screen_runs_the_common_mount_once(tui_store, flows, monkeypatch):
    cpf("run", "-f", str(flows / "hello.yaml"))
    mounted: list[str] = []
    common = CpfScreen.on_mount

    def counting(self: CpfScreen) -> None:
        mounted.append(type(self).__name__)
        common(self)

    monkeypatch.setattr(CpfScreen, "on_mount", counting)
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen) and app.screen.runs)
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen_ready(app, RunScreen))
        for key in "1234":
            await pilot.press(key)
            await pilot.pause(0.2)
        assert sorted(mounted) == sorted(
            ["RunsScreen", "RunScreen", "WorkflowsScreen", "WaitingScreen", "CheckpointsScreen"]
        )
        assert len(app.screen.query(KeyFooter)) == 1


async def test_the_footer_keeps_its_keys_when_nothing_shown_changes(tui_store, flows):
    cpf("run", "-f", str(flows / "hello.yaml"))
    cpf("run", "-f", str(flows / "hello.yaml"))
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="runs")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen) and app.screen.runs)
        await pilot.pause(0.3)
        before = footer_keys(app)
        assert any(k.description == "Delete" for k in before)
        await pilot.press("down")  # another run, same keys
        await pilot.pause(0.3)
        assert footer_keys(app) == before  # the same widgets: not rebuilt
        assert not any(k.description == "Back" for k in before)  # on its home widget
        # Another focus with other keys (esc leads back to the list): the footer changes,
        # reusing its key widgets.
        await pilot.press("slash")
        await wait_until(pilot, lambda: any(k.description == "Back" for k in footer_keys(app)))
        after = footer_keys(app)
        assert len(set(before) & set(after)) == min(len(before), len(after))
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.focused, VirtualTable))
        await wait_until(pilot, lambda: not any(k.description == "Back" for k in footer_keys(app)))


async def test_a_footer_key_that_stops_applying_is_dimmed_in_place(tui_store, flows, monkeypatch):
    cpf("run", "-f", str(flows / "hello.yaml"))
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="runs")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen) and app.screen.runs)
        await pilot.pause(0.3)
        keys = footer_keys(app)
        delete = next(k for k in keys if k.description == "Delete")
        assert not delete.has_class("-disabled")
        screen_check = RunsScreen.check_action

        def dim_delete(self: RunsScreen, action: str, parameters: Any) -> bool | None:
            return None if action == "delete" else screen_check(self, action, parameters)

        monkeypatch.setattr(RunsScreen, "check_action", dim_delete)
        app.screen.refresh_bindings()
        await wait_until(pilot, lambda: delete.has_class("-disabled"))
        assert footer_keys(app) == keys  # the same widgets, updated in place


class GatedService:
    """The real checkpoint service, whose first list of workflows waits for `gate`: the
    first read of a real store takes long (it imports the ORM), this makes it last."""

    def __init__(self, gate: threading.Event) -> None:
        from core.service.api import service

        self._svc = service()
        self._gate = gate

    def list_workflows(self, *args: Any, **kwargs: Any) -> Any:
        self._gate.wait(30)
        return self._svc.list_workflows(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._svc, name)


async def test_checkpoints_show_at_once_and_say_they_are_reading(tui_store, flows):
    from core.service.api import service

    service().save("local", {"workflow_id": "order-1", "step": 0, "state": {"n": 1}})
    gate = threading.Event()
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="runs")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen))
        app.add_mode("slow", lambda: CheckpointsScreen(service=GatedService(gate)))
        await app.switch_mode("slow")
        await wait_until(pilot, lambda: isinstance(app.screen, CheckpointsScreen))
        await pilot.pause(0.2)
        screen = app.screen
        assert not screen.loaded
        table = screen.workflow_table
        assert table.row_count == 0 and table.empty_text.startswith("Reading")
        await pilot.press("p")  # the screen answers keys meanwhile
        assert app.focused is screen.checkpoint_table
        gate.set()
        await wait_until(pilot, lambda: screen.loaded and table.row_count == 1)
        assert not table.empty_text.startswith("Reading")


async def test_the_other_areas_are_built_and_read_while_the_first_one_shows(tui_store, flows):
    from core.service.api import service

    run_id = cpf("run", "-f", str(flows / "hello.yaml"))["run_id"]
    service().save("local", {"workflow_id": "order-1", "step": 0, "state": {"n": 1}})
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="workflows")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen))
        first = app.screen
        # Built hidden, with their data read, while the Workflows screen stays on show.
        await wait_until(
            pilot,
            lambda: (
                all(
                    getattr(hidden_screen(app, mode), "loaded", False)
                    for mode in ("runs", "checkpoints")
                )
                and hidden_screen(app, "waiting") is not None
            ),
            what="the other areas built and read",
        )
        assert app.screen is first and app.current_mode == "workflows"
        built = {mode: hidden_screen(app, mode) for mode in ("runs", "waiting", "checkpoints")}
        assert isinstance(built["runs"], RunsScreen) and run_id in built["runs"].runs
        assert isinstance(built["waiting"], WaitingScreen)
        assert isinstance(built["checkpoints"], CheckpointsScreen)

        def laid_out(screen: Any) -> bool:
            """Laid out at the app's size: the table and the footer keys have sizes."""
            keys = list(screen.query_one(KeyFooter).query_children(FooterKey))
            return (
                screen.query_one(VirtualTable).size.width == 120
                and bool(keys)
                and all(k.size.width > 0 for k in keys)
            )

        await wait_until(
            pilot,
            lambda: (
                built["checkpoints"].workflow_table.row_count >= 1
                and all(laid_out(screen) for screen in built.values())
            ),
            what="the screens laid out hidden, the checkpoint workflow listed",
        )
        assert app.screen is first and app.current_mode == "workflows"
        # The first switch shows the screen built meanwhile (nothing is built again).
        for key, mode in (("2", "runs"), ("3", "waiting"), ("4", "checkpoints")):
            await pilot.press(key)
            await wait_until(pilot, lambda m=mode: app.current_mode == m)
            assert app.screen is built[mode]
        await pilot.press("1")
        await wait_until(pilot, lambda: app.screen is first)


async def test_a_screen_has_its_width_class_before_it_mounts(tui_store, flows):
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="workflows")
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        # Styled for its width from the start: not restyled whole at its first resize.
        screen = RunsScreen()
        assert screen.has_class("-tiny") and not screen.has_class("-narrow", "-wide")
        await app.switch_mode("runs")
        await wait_until(pilot, lambda: app.current_mode == "runs")
        assert app.screen.has_class("-tiny") and not app.screen.has_class("-narrow", "-wide")


async def test_closing_while_an_area_is_built_hidden_is_clean(tui_store, flows):
    app = CpfApp([str(flows)], config=TuiConfig(), start_area="workflows")
    init_mode = app._init_mode  # where a hidden build starts

    def init_then_quit(mode: str) -> Any:
        mounted = init_mode(mode)
        if mode == "checkpoints":
            app.exit()  # quit before the screen composed
        return mounted

    app._init_mode = init_then_quit  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app._exit, what="the Checkpoints screen's build")
    # run_test raises what went wrong in the app: the close raised nothing, and the
    # screen's mount ran whole (with its own widgets there).
    assert app.return_code in (None, 0)
