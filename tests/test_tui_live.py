"""Pilot tests of the live views: what a run view shows while a run moves on must be what
it shows when the run is opened again later. Real `cpf` executors, a real store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from tui_seed import screen_ready, wait_until

from core import queries
from cpf_tui.app import CpfApp
from cpf_tui.config import TuiConfig
from cpf_tui.feed import LogFeed, section_label
from cpf_tui.screens.run_view import RunScreen
from cpf_tui.widgets.line import Line
from cpf_tui.widgets.logpane import LogPane
from cpf_tui.widgets.logview import LogView

CPF = str(Path(os.sys.executable).parent / "cpf")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def cpf(*args: str) -> dict[str, Any]:
    proc = subprocess.run([CPF, *args], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def meta_lines(view: LogView) -> list[str]:
    return [line for line in view.lines() if line.startswith("── ")]


def head_text(app: Any) -> str:
    return str(app.screen.query_one("#run-head", Line).render().renderables[1])


# -- section headers ------------------------------------------------------------------------


async def test_section_headers_do_not_depend_on_when_the_attempts_were_read(tui_store, tmp_path):
    """A feed that meets output of an attempt it has not seen (the live case: the step
    started after the run view last read the attempts) labels it as a reopened view does."""
    env = cpf("run", "-f", str(EXAMPLES / "foreach.yaml"))
    assert env["status"] == "completed", env
    run_id = env["run_id"]
    expected = [f"── {section_label(a)} ──" for a in queries.attempts(run_id)]

    app = CpfApp([str(tmp_path)], config=TuiConfig())
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_run(run_id)
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        view = app.screen.query_one(LogView)
        await wait_until(pilot, lambda: len(meta_lines(view)) >= 2, what="reopened log")
        reopened = meta_lines(view)
        assert "── each[1]/size ──" in reopened
        assert set(reopened) <= set(expected)

        # The live path: a feed that knows no attempt yet, fed chunk by chunk.
        pane = app.screen.query_one(LogPane)
        live = LogFeed(pane, run_id, sections=True)
        live.loaded = True
        pane.log_view.clear()
        while await live.poll():
            pass
        assert meta_lines(pane.log_view) == reopened


# -- durations --------------------------------------------------------------------------------


async def test_a_running_step_ticks_with_the_header(tui_store, tmp_path):
    """The timeline's duration of the running step and the header's "running for" come
    from the same clock and move on together."""
    gate = tmp_path / "gate"
    flow = tmp_path / "slow.yaml"
    flow.write_text(
        "schema_version: checkpointflow/v1\nworkflow:\n  id: slow\n  inputs: {type: object}\n"
        "  steps:\n    - id: ticker\n      kind: cli\n      timeout_seconds: 60\n"
        f"      command: 'while [ ! -e {gate} ]; do echo tick; sleep 0.1; done'\n"
    )
    proc = subprocess.Popen([CPF, "run", "-f", str(flow)], stdout=subprocess.PIPE, text=True)
    now = [datetime.now(UTC)]
    app = CpfApp([str(tmp_path)], config=TuiConfig(), clock=lambda: now[0])
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: bool(queries.list_runs()), what="the run")
            run_id = queries.list_runs()[0]["run_id"]
            app.open_run(run_id)
            await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
            screen: Any = app.screen
            await wait_until(pilot, lambda: "running for" in head_text(app), what="running")
            started = screen.attempts[-1]["started_at"]
            for seconds in (12, 42, 125):
                now[0] = datetime.fromisoformat(started) + timedelta(seconds=seconds)
                label = f"{seconds}s" if seconds < 60 else "2m 05s"

                def agree(label: str = label) -> bool:
                    node = screen._attempt_nodes.get(screen.attempts[-1]["id"])
                    return (
                        node is not None
                        and str(node.label).endswith(f"ticker {label}")
                        and f"running for {label}" in head_text(app)
                    )

                await wait_until(pilot, agree, what=f"both at {label}")
    finally:
        gate.touch()
        proc.communicate(timeout=60)


# -- a failed step without output -------------------------------------------------------------


async def test_a_failed_api_step_shows_its_error_not_no_output(tui_store, tmp_path):
    with socket.socket() as s:  # a port nobody listens on: the request is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flow = tmp_path / "api.yaml"
    flow.write_text(
        "schema_version: checkpointflow/v1\nworkflow:\n  id: api_down\n"
        "  defaults: { api: { allow_private: true } }\n  inputs: {type: object}\n"
        f"  steps:\n    - id: fetch\n      kind: api\n      method: GET\n"
        f"      url: http://127.0.0.1:{port}/x\n"
        "      timeout_seconds: 5\n"
    )
    env = cpf("run", "-f", str(flow))
    assert env["status"] == "failed", env
    attempt = queries.attempts(env["run_id"])[0]
    assert not queries.output(env["run_id"])  # nothing printed: the case under test

    app = CpfApp([str(tmp_path)], config=TuiConfig())
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_run(env["run_id"])
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        view = app.screen.query_one(LogView)
        await wait_until(pilot, lambda: attempt["error_code"] in view.empty_text, what="error")
        assert "No output yet" not in view.empty_text
        await pilot.press("t", "down")  # the step itself
        await wait_until(pilot, lambda: app.screen.selection == attempt["id"], what="selection")
        await wait_until(
            pilot, lambda: attempt["error_message"] in view.empty_text, what="the step error"
        )
        assert view.empty_text.startswith(f"✗ {attempt['error_code']}")
        shown = "\n".join(
            "".join(seg.text for seg in view.render_line(y)) for y in range(view.size.height)
        )
        assert attempt["error_code"] in shown


# -- lines cut at the pane edge -----------------------------------------------------------------


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView()


async def test_a_long_log_line_ends_in_an_ellipsis_where_it_is_cut() -> None:
    app = LogApp()
    async with app.run_test(size=(40, 6)) as pilot:
        view = app.query_one(LogView)
        view.write("short\n" + "x" * 100 + "\n")
        await pilot.pause()
        short, long = ("".join(seg.text for seg in view.render_line(y)).strip() for y in range(2))
        assert short == "short"
        assert long.endswith("…") and len(long) <= 40
        view.wrap = True
        await pilot.pause()
        assert "…" not in "".join(seg.text for seg in view.render_line(1))
