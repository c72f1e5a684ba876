"""Waiting: every run waiting for input, oldest first; enter opens its form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from cpf_tui.clock import ago
from cpf_tui.commands import answer_name
from cpf_tui.control import RunControl
from cpf_tui.hints import hint
from cpf_tui.look import palette, short_id
from cpf_tui.nav import open_approval, open_run
from cpf_tui.screens.base import Command, CpfScreen
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.line import Line
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.widgets.vtable import Column, Row, VirtualTable

COLUMNS = [
    Column("risk", "Risk", 6),
    Column("workflow", "Workflow", 12),
    Column("step", "Step", 12, drop=2),
    Column("since", "Waiting", 8, drop=3),
    Column("audience", "For", 6, drop=4),
    Column("summary", "Summary", 16, stretch=True, drop=1),
    Column("id", "Run", 8),
]


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


class WaitingScreen(CpfScreen, RunControl):
    AREA = "waiting"
    HELP = """\
**Waiting** lists the runs that wait for an answer (an `await_event` step), oldest
first. `enter` opens one: the prompt and summary next to the output of the step before,
and a form generated from the step's `input_schema`. The app rings the terminal bell and
shows a notification when a run starts waiting.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "view", "View run", id="waiting.view"),
        Binding("c", "cancel", "Cancel run", id="waiting.cancel"),
    ]

    def compose(self) -> ComposeResult:
        yield TopBar()
        yield Line("", id="waiting-info")
        yield VirtualTable(
            COLUMNS,
            empty_text="No run is waiting for input.",
            formatter=self._cells,
            id="waiting-table",
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(VirtualTable).focus()  # CpfScreen's watch of `waiting` fills it
        self.set_interval(1.0, self._retime)

    def _retime(self) -> None:
        if self.is_current:
            self.query_one(VirtualTable).refresh_cells()

    def waiting_changed(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {r["run_id"]: r for r in rows}
        self.query_one(VirtualTable).set_rows([Row(r["run_id"], r) for r in rows])
        info = Text(no_wrap=True)
        if rows:
            info.append(
                f" {len(rows)} run{'s' if len(rows) != 1 else ''} waiting for input", "bold"
            )
            keys = f"{hint(self.app, 'waiting.view', 'v', 'view run')}"
            info.append(f"  · enter: answer  {keys}", style="dim")
        else:
            info.append(" Nothing is waiting for you.", style="dim")
        self.query_one("#waiting-info", Line).update(info)

    def _cells(self, r: dict[str, Any]) -> tuple[Any, ...]:
        wait = r.get("wait") or {}
        risk = wait.get("risk_level") or ""
        theme = palette(self.app)
        risk_style = {"high": f"bold {theme.error}", "medium": theme.warning}.get(risk, "")
        return (
            Text(risk or "-", style=risk_style),
            r.get("workflow_id") or "",
            wait.get("step_id") or r.get("current_step_id") or "",
            ago(r.get("updated_at"), self.now).removesuffix(" ago"),
            wait.get("audience") or "user",
            first_line(wait.get("summary")) or first_line(wait.get("prompt")),
            short_id(r["run_id"]),
        )

    def home(self) -> VirtualTable:
        return self.query_one(VirtualTable)

    def shows_waiting(self, run_id: str) -> bool:
        return True  # every waiting run is listed here

    @property
    def selected(self) -> dict[str, Any] | None:
        key = self.query_one(VirtualTable).cursor_key
        return getattr(self, "rows", {}).get(key) if key else None

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        open_approval(self, event.key)

    def action_answer(self) -> None:
        if self.selected:
            open_approval(self, self.selected["run_id"])

    def action_view(self) -> None:
        if self.selected:
            open_run(self, self.selected["run_id"])

    def action_cancel(self) -> None:
        self.control_cancel(self.selected)

    def context_commands(self) -> Iterator[Command]:
        run = self.selected
        if run is not None:
            label = f"{run['workflow_id']} {short_id(run['run_id'])}"
            yield (answer_name(run), "Open its form", self.action_answer)
            yield (f"Cancel run {label}", "With a reason", self.action_cancel)
