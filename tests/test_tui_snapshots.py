"""Snapshot tests of every screen (pytest-textual-snapshot), on a deterministic demo store:
fixed run ids and timestamps (tests/tui_seed.py), a frozen clock, a fixed theme, no
settings file, no cursor blink. Update with `pytest tests/test_tui_snapshots.py
--snapshot-update` and review the SVGs like code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea
from tui_seed import IDS, NOW, screen_ready, seed, wait_until

from cpf_tui.app import CpfApp
from cpf_tui.clock import frozen
from cpf_tui.config import TuiConfig
from cpf_tui.screens.approval import ApprovalScreen
from cpf_tui.screens.run_view import RunScreen
from cpf_tui.screens.runs import RunsScreen
from cpf_tui.screens.start import StartRunScreen
from cpf_tui.screens.waiting import WaitingScreen
from cpf_tui.screens.workflows import WorkflowsScreen
from cpf_tui.widgets.logview import LogView

TINY = (60, 20)
SMALL = (80, 24)
LARGE = (160, 50)
SIZES = pytest.mark.parametrize("size", [TINY, SMALL, LARGE], ids=["60x20", "80x24", "160x50"])
RunBefore = Callable[[Pilot[Any]], Awaitable[None]]


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("CHECKPOINTFLOW_BASE_DIR", str(tmp_path / "base"))
    monkeypatch.delenv("CPF_DATABASE_URL", raising=False)
    monkeypatch.setenv("CPF_TUI_CONFIG", "")
    monkeypatch.chdir(tmp_path)  # paths show as "flows/..." whatever the tmp dir is
    return seed(tmp_path / "flows")


def make_app(area: str = "runs") -> CpfApp:
    return CpfApp(["flows"], clock=frozen(NOW), config=TuiConfig(), start_area=area)


def steady(app: Any) -> None:
    """No blinking cursors: a snapshot must not depend on when it was taken."""
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    for widget in app.screen.query(TextArea):
        widget.cursor_blink = False


async def ready(pilot: Pilot[Any], cls: type) -> None:
    await wait_until(pilot, lambda: screen_ready(pilot.app, cls), what=cls.__name__)
    await pilot.pause()
    steady(pilot.app)


async def open_run(pilot: Pilot[Any], run_id: str, tab: str | None = None) -> None:
    app: Any = pilot.app
    await ready(pilot, RunsScreen)
    app.open_run(run_id)
    await ready(pilot, RunScreen)
    view = app.screen
    await wait_until(pilot, lambda: view.feed is not None and view.feed.loaded, what="log")
    if tab:
        await pilot.press(tab)
        # The tab underline glides for 0.3 s: a loaded machine could take the picture
        # mid-glide, with the pane not laid out yet.
        await pilot.wait_for_scheduled_animations()
    await pilot.pause()


# -- Workflows ------------------------------------------------------------------------------


def test_workflows(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, WorkflowsScreen)

    assert snap_compare(make_app("workflows"), terminal_size=SMALL, run_before=run_before)


def test_workflows_large_yaml(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, WorkflowsScreen)
        await pilot.press("tab", "right")  # the YAML tab

    assert snap_compare(make_app("workflows"), terminal_size=LARGE, run_before=run_before)


def test_workflows_invalid_file(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, WorkflowsScreen)
        await pilot.press("down")  # broken.yaml

    assert snap_compare(make_app("workflows"), terminal_size=SMALL, run_before=run_before)


def test_start_form(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await ready(pilot, WorkflowsScreen)
        screen = app.screen
        app.start_workflow(screen.files[Path("flows/hello.yaml").resolve()])
        await wait_until(pilot, lambda: isinstance(app.screen, StartRunScreen))
        await pilot.pause()
        await pilot.press(*"Ada", "tab", *"many", "ctrl+s")
        await pilot.pause()
        steady(app)

    assert snap_compare(make_app("workflows"), terminal_size=SMALL, run_before=run_before)


# -- Runs and Waiting -------------------------------------------------------------------------


def test_runs(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, RunsScreen)

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_runs_large_filtered(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, RunsScreen)
        await pilot.press("slash", *"appr", "enter")
        await pilot.pause()
        steady(pilot.app)

    assert snap_compare(make_app(), terminal_size=LARGE, run_before=run_before)


def test_waiting(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await wait_until(pilot, lambda: len(app.waiting) == 1)
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, WaitingScreen))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


# -- Run view ---------------------------------------------------------------------------------


def test_run_view_live_log(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["streaming"])

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_run_view_live_log_large(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["streaming"])

    assert snap_compare(make_app(), terminal_size=LARGE, run_before=run_before)


def test_run_view_paused_log_with_new_lines(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["streaming"])
        view = pilot.app.screen.query_one(LogView)
        await pilot.press("k", "k", "k")
        view.write("".join(f"tick {i} of 50\n" for i in range(43, 46)))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_run_view_search(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["flaky"])
        await pilot.press("slash", *"refused", "enter", "n")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_run_view_checkpoints(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["hello"], tab="p")

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_run_view_events(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["cancelled"], tab="e")

    assert snap_compare(make_app(), terminal_size=LARGE, run_before=run_before)


def test_run_view_outputs_of_a_step(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["hello"], tab="o")
        await pilot.press("t", "down")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


# -- Answer and dialogs -------------------------------------------------------------------------


async def _answer(pilot: Pilot[Any]) -> None:
    app: Any = pilot.app
    await ready(pilot, RunsScreen)
    app.open_approval(IDS["approval"])
    await ready(pilot, ApprovalScreen)
    await pilot.pause()


def test_answer_form(demo, snap_compare):
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=_answer)


def test_answer_form_large(demo, snap_compare):
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=_answer)


def test_answer_form_errors(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await _answer(pilot)
        await pilot.press("ctrl+s")  # no decision chosen
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=LARGE, run_before=run_before)


def test_answer_high_risk_confirmation(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await _answer(pilot)
        await pilot.press("enter", "ctrl+s")
        await pilot.pause()
        await pilot.press(*"rev")
        await pilot.pause()
        steady(pilot.app)

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_cancel_dialog(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["approval"])
        await pilot.press("c")
        await pilot.pause()
        await pilot.press(*"superseded")
        await pilot.pause()
        steady(pilot.app)

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_retry_dialog(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_run(pilot, IDS["flaky"])
        await pilot.press("r")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


def test_help(demo, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, RunsScreen)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


# -- the main screens at 60x20, 80x24 and 160x50 -------------------------------------------------
# Laid out by the width they get: columns dropped by priority, the file tree above the
# preview under 70 columns, the footer showing only the keys that fit, no cut hints.


@SIZES
def test_sizes_workflows(demo, snap_compare, size):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, WorkflowsScreen)

    assert snap_compare(make_app("workflows"), terminal_size=size, run_before=run_before)


@SIZES
def test_sizes_runs(demo, snap_compare, size):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot, RunsScreen)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@SIZES
def test_sizes_run_view_waiting(demo, snap_compare, size):
    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="the waiting badge")
        await open_run(pilot, IDS["approval"])

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@SIZES
def test_sizes_answer_form(demo, snap_compare, size):
    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await wait_until(pilot, lambda: len(app.waiting) == 1, what="the waiting badge")
        await _answer(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)
