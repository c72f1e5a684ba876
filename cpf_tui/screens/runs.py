"""Runs: every run in the store, newest first, refreshed live (filters by status and workflow).

The store is polled with a cheap overview query every half second; only when it changed
are the changed runs read (`updated_after`), so 10,000 runs cost nothing while idle.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Select

from cpf_tui.clock import ago, duration
from cpf_tui.control import RunControl
from cpf_tui.look import short_id, status_text
from cpf_tui.nav import open_approval, open_run
from cpf_tui.screens.base import Command, CpfScreen
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.line import Line
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.widgets.vtable import Column, Row, VirtualTable
from cpf_tui.work import off_thread

STATUS_FILTERS = [
    ("All statuses", "all"),
    ("Active", "active"),
    ("Waiting", "waiting"),
    ("Running", "running"),
    ("Completed", "completed"),
    ("Failed", "failed"),
    ("Cancelled", "cancelled"),
]
SORTS = [
    ("started", lambda r: r.get("created_at") or "", True),
    ("updated", lambda r: r.get("updated_at") or "", True),
    ("status", lambda r: (r.get("status") or "", r.get("created_at") or ""), False),
    ("workflow", lambda r: (r.get("workflow_id") or "", r.get("created_at") or ""), False),
]
FIRST_PAGE = 300
COLUMNS = [
    Column("status", "Status", 11),
    Column("workflow", "Workflow", 12, stretch=True),
    Column("step", "Current step", 12, stretch=True, drop=1),
    Column("started", "Started", 8, drop=3),
    Column("updated", "Updated", 8, drop=4),
    Column("duration", "Duration", 8, justify="right", drop=2),
    Column("id", "Run", 8),
]


class RunsScreen(CpfScreen, RunControl):
    AREA = "runs"
    HELP = """\
**Runs** lists every run in the store (also those started by `cpf run` elsewhere),
newest first, refreshed within a second. Filter by status with the selector or `s`,
by workflow by typing in the filter field (`/`). `enter` opens a run: its steps, live
log, outputs, events and checkpoints. `a` answers a waiting run.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "answer", "Answer", id="runs.answer"),
        Binding("c", "cancel", "Cancel run", id="runs.cancel"),
        Binding("r", "retry", "Retry", id="runs.retry"),
        Binding("d,delete", "delete", "Delete", id="runs.delete"),
        Binding("s", "cycle_status", "Status filter", show=False, id="runs.status"),
        Binding("o", "cycle_sort", "Sort", show=False, id="runs.sort"),
        Binding("slash", "focus_filter", "Filter", id="runs.filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, dict[str, Any]] = {}
        self.overview: dict[str, Any] | None = None
        self.loaded = False
        self._busy = False
        self._sort = 0
        self._last_updated: str | None = None
        self._full_every = 60  # ticks between full re-reads (clock skew, missed deletes)
        self._ticks = 0
        self.partial = False  # only the first page is read so far

    def compose(self) -> ComposeResult:
        yield TopBar()
        with Horizontal(id="runs-filters"):
            yield Select(
                STATUS_FILTERS, value="all", allow_blank=False, compact=True, id="status-filter"
            )
            yield Input(placeholder="workflow filter  (/)", compact=True, id="workflow-filter")
            yield Line("", id="runs-count")
        yield VirtualTable(
            COLUMNS, empty_text="No runs yet.", formatter=self._cells, id="runs-table"
        )
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(VirtualTable).focus()
        self.set_interval(0.5, self._tick)
        self.run_worker(self._refresh(full=True), group="runs-refresh")

    def on_screen_resume(self) -> None:
        self.run_worker(self._refresh(), group="runs-refresh")

    # -- data ----------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self.is_current or self._busy:
            return
        self._ticks += 1
        full = self._ticks % self._full_every == 0
        if self._ticks % 10 == 0:
            self.run_worker(self._reap(), group="runs-reap", exclusive=True)
        self.run_worker(self._refresh(full=full), group="runs-refresh")

    async def _reap(self) -> None:
        """Re-read running runs now and then: a run whose executor died is marked failed
        by that read (and the next refresh shows it)."""
        from core import queries

        for run_id in [k for k, r in self.runs.items() if r["status"] in ("created", "running")]:
            await off_thread(queries.get_run, run_id)

    async def _refresh(self, *, full: bool = False) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            changed = await self._read(full)
            if changed:
                self._render_rows()
            else:
                self.query_one(VirtualTable).refresh_cells()  # times move on
            if self.partial:  # the newest page is on screen; now the rest
                await self._read(True)
                self._render_rows()
        except Exception as exc:  # the store went away: keep showing what we have
            for count in self.query("#runs-count").results(Line):  # none once torn down
                count.update(Text(f"store error: {exc}", "red"))
        finally:
            self._busy = False

    async def _read(self, full: bool) -> bool:
        """Bring `self.runs` up to date; False when nothing changed. The very first read
        takes only the newest FIRST_PAGE runs, so a big store shows at once."""
        from core import queries

        overview = await off_thread(queries.runs_overview)
        if overview == self.overview and not full and self.loaded:
            return False
        if not self.loaded:
            rows = await off_thread(queries.run_summaries, limit=FIRST_PAGE)
            self.runs = {r["run_id"]: r for r in rows}
            self.partial = overview["total"] > len(rows)
        elif full or overview["total"] < len(self.runs):
            rows = await off_thread(queries.run_summaries)
            self.runs = {r["run_id"]: r for r in rows}
            self.partial = False
        else:
            rows = await off_thread(queries.run_summaries, updated_after=self._last_updated)
            for r in rows:
                self.runs[r["run_id"]] = r
            if len(self.runs) != overview["total"]:  # a delete we did not see: re-read
                rows = await off_thread(queries.run_summaries)
                self.runs = {r["run_id"]: r for r in rows}
        self._last_updated = overview["last_updated"]
        self.overview = overview
        self.loaded = True
        return True

    # -- rows ----------------------------------------------------------------------------

    def _filtered(self) -> list[dict[str, Any]]:
        status = self.query_one("#status-filter", Select).value
        text = self.query_one("#workflow-filter", Input).value.strip().casefold()
        rows = list(self.runs.values())
        if status == "active":
            rows = [r for r in rows if r["status"] in ("created", "running", "waiting")]
        elif status not in ("all", Select.NULL):
            rows = [r for r in rows if r["status"] == status]
        if text:
            rows = [
                r
                for r in rows
                if text in (r.get("workflow_id") or "").casefold()
                or text in (r.get("workflow_name") or "").casefold()
                or r["run_id"].startswith(text)
            ]
        _, key, reverse = SORTS[self._sort]
        rows.sort(key=key, reverse=reverse)
        return rows

    def _cells(self, r: dict[str, Any]) -> tuple[Any, ...]:
        now = self.now
        step = r.get("current_step_id") or ""
        code = (r.get("error") or {}).get("code") or ""
        if r["status"] == "failed" and code:
            step = f"{step} ({code.removeprefix('ERR_').lower()})"
        end = r.get("updated_at") if r["status"] == "waiting" else r.get("finished_at")
        return (
            status_text(self.app, r["status"]),
            r.get("workflow_id") or "",
            step,
            ago(r.get("created_at"), now),
            ago(r.get("updated_at"), now),
            duration(r.get("created_at"), end, now),
            short_id(r["run_id"]),
        )

    def _render_rows(self) -> None:
        rows = [Row(r["run_id"], r) for r in self._filtered()]
        self.query_one(VirtualTable).set_rows(rows)
        counts = (self.overview or {}).get("by_status", {})
        info = Text(no_wrap=True)
        total = (self.overview or {}).get("total", len(self.runs))
        info.append(f"{len(rows):,} of {total:,} runs")
        if self.partial:
            info.append(" (reading…)", style="italic")
        if counts.get("running"):
            info.append(f"  ▶ {counts['running']} running")
        if counts.get("waiting"):
            info.append(f"  ‖ {counts['waiting']} waiting", style="bold")
        info.append(f"  · sort: {SORTS[self._sort][0]}", style="dim")
        self.query_one("#runs-count", Line).update(info)

    def on_select_changed(self, _event: Select.Changed) -> None:
        if self.loaded:
            self._render_rows()

    def on_input_changed(self, _event: Input.Changed) -> None:
        if self.loaded:
            self._render_rows()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.query_one(VirtualTable).focus()

    # -- actions -------------------------------------------------------------------------

    @property
    def selected(self) -> dict[str, Any] | None:
        key = self.query_one(VirtualTable).cursor_key
        return self.runs.get(key) if key else None

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        open_run(self, event.key)

    def action_open(self) -> None:
        if self.selected:
            open_run(self, self.selected["run_id"])

    def action_answer(self) -> None:
        run = self.selected
        if run is None:
            return
        if run["status"] != "waiting":
            self.notify("This run is not waiting for input.", severity="warning")
            return
        open_approval(self, run["run_id"])

    def action_cancel(self) -> None:
        self.control_cancel(self.selected)

    def action_retry(self) -> None:
        self.control_retry(self.selected)

    def action_delete(self) -> None:
        self.control_delete(self.selected)

    def control_done(self, run_id: str) -> None:
        self.run_worker(self._refresh(full=True), group="runs-refresh")

    def action_cycle_status(self) -> None:
        select = self.query_one("#status-filter", Select)
        values = [v for _, v in STATUS_FILTERS]
        select.value = values[(values.index(select.value) + 1) % len(values)]

    def action_cycle_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self._render_rows()

    def action_focus_filter(self) -> None:
        self.query_one("#workflow-filter", Input).focus()

    def home(self) -> VirtualTable:
        return self.query_one(VirtualTable)

    def action_focus_table(self) -> None:
        self.query_one(VirtualTable).focus()

    def context_commands(self) -> Iterator[Command]:
        run = self.selected
        if run is not None:
            label = f"{run['workflow_id']} {short_id(run['run_id'])}"
            yield (f"Open run {label}", "Steps, log, outputs", self.action_open)
            if run["status"] in ("created", "running", "waiting"):
                yield (f"Cancel run {label}", "With a reason", self.action_cancel)
            if run["status"] == "failed":
                yield (f"Retry run {label}", "From a step", self.action_retry)
            if run["status"] in ("completed", "failed", "cancelled"):
                yield (f"Delete run {label}", "Remove it for good", self.action_delete)
        for label, value in STATUS_FILTERS:
            yield (
                f"Show runs: {label.lower()}",
                "Status filter",
                partial(self._set_status, value),
            )

    def _set_status(self, value: str) -> None:
        self.query_one("#status-filter", Select).value = value
