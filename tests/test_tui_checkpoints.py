"""The Checkpoints screen (cpf_tui/screens/checkpoints.py) against a real temporary store.

API workflows are saved through the engine's checkpoint API (`core.service.api`, what
`cpf serve` calls) in two accounts; the demo runs of tests/tui_seed.py give the account
`local` its run workflows. The checkpoint API's clock and etags are pinned (test set-up
only) so times, expiries and etags are the same on every run; the screen shows them with
the same frozen clock. The screen is hosted by a tiny app of this file (the real app
wires it in as a mode).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.reactive import var
from tui_seed import IDS, NOW, seed, wait_until

from cpf_tui.clock import frozen
from cpf_tui.css import APP_CSS
from cpf_tui.screens.checkpoints import CheckpointsScreen
from cpf_tui.widgets.vtable import VirtualTable

ACME = "acme"
SIZE = (100, 30)
SMALL = (80, 24)

ORDER = [  # local / order-42, agent planner: one step per minute, from 20 minutes ago
    ("cart", {"items": [], "total": 0}),
    ("add-item", {"items": ["book"], "total": 12}),
    ("add-item", {"items": ["book", "pen"], "total": 14}),
    ("checkout", {"items": ["book", "pen"], "total": 14, "paid": True}),
]
NOTES = [  # local / research.notes, no agent, short TTL
    ("draft", {"notes": ["a"], "done": False}),
    ("review", {"notes": ["a", "b"], "reviewer": "ada"}),
]
INVOICE = [  # acme / invoice-7, agent billing-bot
    ("open", {"invoice": 7, "lines": [{"sku": "x", "qty": 1}], "status": "open"}),
    ("adjust", {"invoice": 7, "lines": [{"sku": "x", "qty": 3}], "status": "open"}),
    ("sent", {"invoice": 7, "lines": [{"sku": "x", "qty": 3}], "status": "sent"}),
]
CRAWL = [  # acme / crawl:2026-01, agent crawler
    ("start", {"pages": 0}),
    ("page", {"pages": 1, "last": "/index"}),
]


def compact(state: Any) -> str:
    return json.dumps(state, separators=(",", ":"))


def _etag(account: str, workflow_id: str, step: int, body: str) -> str:
    digest = hashlib.sha256(f"{account}\0{workflow_id}\0{step}\0{body}".encode()).hexdigest()
    return f'"{digest[:16]}"'


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Demo runs plus API workflows in `local` and `acme`; the checkpoint API's clock
    stays at NOW for the rest of the test (so nothing expires by the wall clock)."""
    import core.service.checkpoints as checkpoints
    from core.service import api, common

    monkeypatch.setenv("CHECKPOINTFLOW_BASE_DIR", str(tmp_path / "base"))
    monkeypatch.delenv("CPF_DATABASE_URL", raising=False)
    monkeypatch.setenv("CPF_TUI_CONFIG", "")
    monkeypatch.chdir(tmp_path)
    seed(tmp_path / "flows")

    now = datetime.fromisoformat(NOW)
    clock = {"at": now - timedelta(minutes=30)}
    monkeypatch.setattr(common, "utc_now", lambda: clock["at"])
    monkeypatch.setattr(checkpoints, "_new_etag", _etag)
    svc = api.CheckpointService()
    svc.create_key(ACME, label="tests")

    def save(account: str, workflow_id: str, steps: list[tuple[str, dict[str, Any]]], *,
             start: float, agent: str | None = None, ttl: str | None = None) -> None:
        for step, (label, state) in enumerate(steps):
            clock["at"] = now - timedelta(minutes=start - step)
            body: dict[str, Any] = {
                "workflow_id": workflow_id, "step": step, "state": state, "label": label,
            }
            if agent:
                body["agent_id"] = agent
            svc.save(account, body, ttl_header=ttl)

    save("local", "order-42", ORDER, start=20, agent="planner")
    save("local", "research.notes", NOTES, start=30, ttl="2400")
    save(ACME, "invoice-7", INVOICE, start=15, agent="billing-bot")
    save(ACME, "crawl:2026-01", CRAWL, start=40, agent="crawler")
    clock["at"] = now
    return {"service": svc}


class Host(App[None]):
    """The least an app must offer a cpf screen: a clock and the list of waiting runs."""

    CSS = APP_CSS
    waiting: ClassVar[Any] = var(list, init=False)

    def __init__(self, account: str = "local") -> None:
        super().__init__()
        self.clock = frozen(NOW)
        self.account = account
        self.opened: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(CheckpointsScreen(self.account))

    def open_run(self, run_id: str) -> None:
        self.opened.append(run_id)


def screen_of(pilot: Pilot[Any]) -> CheckpointsScreen:
    screen = pilot.app.screen
    assert isinstance(screen, CheckpointsScreen)
    return screen


async def ready(pilot: Pilot[Any], *, checkpoints: bool = True) -> CheckpointsScreen:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, CheckpointsScreen))
    screen = screen_of(pilot)
    await wait_until(pilot, lambda: screen.loaded, what="the workflow list")
    if checkpoints:
        await wait_until(
            pilot,
            lambda: screen.selected_workflow is None or screen._cp_sig is not None,
            what="the checkpoints",
        )
    await pilot.pause()
    return screen


async def select_workflow(pilot: Pilot[Any], workflow_id: str) -> CheckpointsScreen:
    screen = screen_of(pilot)
    screen.workflow_table.focus()
    assert screen.workflow_table.move_to(workflow_id)
    await wait_until(
        pilot,
        lambda: screen.selected_workflow is not None
        and screen.selected_workflow["workflow_id"] == workflow_id
        and screen._cp_sig is not None
        and screen._cp_sig[1][0] == workflow_id,
        what=f"checkpoints of {workflow_id}",
    )
    await pilot.pause()
    return screen


def rows(table: VirtualTable) -> list[tuple[str, ...]]:
    """The table's rows as the plain text of their cells."""
    out = []
    for row in table.rows:
        cells = table.formatter(row.data) if table.formatter else row.data
        out.append(tuple(c if isinstance(c, str) else c.plain for c in cells))
    return out


def detail_text(screen: CheckpointsScreen) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(screen.detail_content)
    return console.export_text()


# -- pilot tests -------------------------------------------------------------------------------


async def test_workflow_rows_of_local(store):
    async with Host().run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        got = {r[1]: r for r in rows(screen.workflow_table)}
        # Most recent activity first (then by id): the runs (1 s ago), order-42, notes.
        keys = [r.key for r in screen.workflow_table.rows]
        assert keys == [IDS["hello"], IDS["approval"], "order-42", "research.notes"]
        assert got["order-42"] == ("api", "order-42", "planner", "4", "3", "17m ago", "in 6d")
        assert got["research.notes"] == (
            "api", "research.notes", "", "2", "1", "29m ago", "in 11m"
        )
        # cpf runs are workflows of `local` too, marked as runs (read-only).
        assert got[IDS["hello"]] == ("run", IDS["hello"], "cpf", "3", "2", "1s ago", "never")
        assert got[IDS["approval"]][0] == "run"
        # No workflow of another account leaks in.
        assert "invoice-7" not in got and "crawl:2026-01" not in got
        assert screen.accounts == ["local", ACME]


async def test_selecting_a_checkpoint_shows_state_and_diff(store):
    async with Host().run_test(size=SIZE) as pilot:
        await ready(pilot)
        screen = await select_workflow(pilot, "order-42")
        table = screen.checkpoint_table
        assert [r[:4] for r in rows(table)] == [
            (str(step), label, f"{20 - step}m ago", f"{len(compact(state))} B")
            for step, (label, state) in enumerate(ORDER)
        ]
        etag = _etag("local", "order-42", 2, compact(ORDER[2][1]))
        assert rows(table)[2][4] == etag.strip('"')[: len(rows(table)[2][4])]

        await pilot.press("p")  # focus the checkpoints; the first is selected
        assert screen.focused is table
        text = detail_text(screen)
        assert "cp_order-42_000" in text and "(none: the first)  +1 ~0 -0" in text
        assert "+ total = 0" in text

        await pilot.press("down", "down")  # step 2: a pen added, the total changed
        await pilot.pause()
        assert screen.selected_checkpoint is not None
        assert screen.selected_checkpoint["step"] == 2
        text = detail_text(screen)
        assert "cp_order-42_002" in text and "add-item" in text
        assert f"etag {etag}" in text
        assert "Diff from previous (step 1)  +1 ~1 -0" in text
        assert '+ items[1] = "pen"' in text
        assert "~ total: 12 → 14" in text
        assert '"agent_id": "planner"' in text  # the metadata
        state = text.split("State", 1)[1]
        assert '"items": [' in state and '"pen"' in state and '"total": 14' in state

        await pilot.press("down")  # step 3: paid added
        await pilot.pause()
        assert "+ paid = true" in detail_text(screen)

        # The diff is coloured: added green, changed yellow, removed red (theme colours).
        await select_workflow(pilot, "research.notes")
        await pilot.press("p", "down")
        await pilot.pause()
        diff = screen._diff(screen.selected_checkpoint)  # the same Text the pane shows
        styles = {span.style for span in diff.spans}
        theme = pilot.app.theme_variables
        assert {theme["success"], theme["warning"], theme["error"]} <= styles
        text = detail_text(screen)
        assert "+2 ~0 -1" in text
        assert "- done (was false)" in text
        assert '+ notes[1] = "b"' in text and '+ reviewer = "ada"' in text


async def test_account_switch_shows_only_that_account(store):
    async with Host().run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await wait_until(pilot, lambda: screen.accounts == ["local", ACME], what="accounts")
        await pilot.press("a")
        await wait_until(
            pilot, lambda: screen.account == ACME and screen.loaded, what="account acme"
        )
        await ready(pilot)
        got = rows(screen.workflow_table)
        assert [r[1] for r in got] == ["invoice-7", "crawl:2026-01"]
        assert got[0] == ("api", "invoice-7", "billing-bot", "3", "2", "13m ago", "in 6d")
        assert got[1][2] == "crawler"
        assert all(r[0] == "api" for r in got)  # runs belong to `local` only
        assert "acme" in str(screen.query_one("#cp-account").value)

        await select_workflow(pilot, "invoice-7")
        await pilot.press("p", "end")
        await pilot.pause()
        text = detail_text(screen)
        assert "cp_invoice-7_002" in text and '~ status: "open" → "sent"' in text

        await pilot.press("A")  # and back (the previous account)
        await wait_until(pilot, lambda: screen.account == "local" and screen.loaded)
        await ready(pilot)
        assert "invoice-7" not in [r.key for r in screen.workflow_table.rows]
        assert "order-42" in [r.key for r in screen.workflow_table.rows]


async def test_live_refresh_and_run_workflows(store):
    svc = store["service"]
    async with Host().run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await select_workflow(pilot, "order-42")
        assert len(screen.checkpoints) == 4
        # Another process saves a step: the list and the open workflow follow it.
        svc.save("local", {"workflow_id": "order-42", "step": 4, "state": {"done": True}})
        svc.save("local", {"workflow_id": "fresh", "step": 0, "state": {"n": 1}})
        await wait_until(
            pilot,
            lambda: len(screen.checkpoints) == 5 and "fresh" in screen.workflows,
            timeout=5,
            what="the new checkpoints",
        )
        assert screen.workflows["order-42"]["total_checkpoints"] == 5
        assert screen.selected_workflow["workflow_id"] == "order-42"  # the cursor stays
        # A deleted workflow leaves the list; the one shown below goes with it.
        svc.delete_workflow("local", "fresh")
        await wait_until(pilot, lambda: "fresh" not in screen.workflows, timeout=5)
        await select_workflow(pilot, "research.notes")
        svc.delete_workflow("local", "research.notes")
        await wait_until(
            pilot,
            lambda: "research.notes" not in screen.workflows
            and all(c["workflow_id"] != "research.notes" for c in screen.checkpoints),
            timeout=5,
        )

        # A run's checkpoints: the step transitions of the run, read-only; `o` opens it.
        await select_workflow(pilot, IDS["hello"])
        assert [r[1] for r in rows(screen.checkpoint_table)] == ["square", "describe", "done"]
        await pilot.press("p", "down")
        await pilot.pause()
        text = detail_text(screen)
        assert "read-only" in text and "+ step_outputs.describe.parity" in text
        await pilot.press("o")
        await pilot.pause()
        assert pilot.app.opened == [IDS["hello"]]


async def test_keyboard_focus_chain(store):
    async with Host().run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert screen.focused is screen.workflow_table
        await pilot.press("enter")
        assert screen.focused is screen.checkpoint_table
        await pilot.press("enter")
        assert screen.focused is not None and screen.focused.id == "cp-detail"
        await pilot.press("escape")
        assert screen.focused is screen.checkpoint_table
        await pilot.press("escape")
        assert screen.focused is screen.workflow_table
        await pilot.press("s")
        assert screen.focused.id == "cp-detail"
        await pilot.press("w")
        assert screen.focused is screen.workflow_table
        # `o` only applies to runs: order-42 is not one.
        await select_workflow(pilot, "order-42")
        assert screen.check_action("open_run", ()) is False


# -- snapshots ---------------------------------------------------------------------------------


def _steady(app: Any) -> None:
    for widget in app.screen.query("Input"):
        widget.cursor_blink = False


def test_snapshot_local_order(store, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await select_workflow(pilot, "order-42")
        await pilot.press("p", "down", "down")
        await pilot.pause()
        _steady(pilot.app)

    assert snap_compare(Host(), terminal_size=SIZE, run_before=run_before)


def test_snapshot_acme_small(store, snap_compare):
    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await ready(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: screen.account == ACME and screen.loaded)
        await ready(pilot)
        await pilot.press("p", "end")
        await pilot.pause()
        _steady(pilot.app)

    assert snap_compare(Host(), terminal_size=SMALL, run_before=run_before)
