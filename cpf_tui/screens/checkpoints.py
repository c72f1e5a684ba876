"""Checkpoints: the checkpoint workflows of an account (saved through `cpf serve` and the
SnapState SDK), each workflow's checkpoints, and the selected checkpoint's state and diff.

Runs of the account `local` are checkpoint workflows too (one checkpoint per committed
step transition); they are listed beside the API workflows, marked `run`, read-only.

Everything is read through the engine's checkpoint API (`core.service.api`:
`list_workflows`, `replay`, `get`, `list_keys`), never SQL, and never `resume` (which
announces `workflow.resumed` to the account's webhooks: looking is not resuming). Every
call runs in a worker thread. The list is polled twice a second; a workflow's
checkpoints are read again only when its head, count or last activity changed, and
states are kept as their stored JSON text until one is shown.

Wiring: one entry in `cpf_tui.app.AREAS` (mode, key and top-bar tab):
`Area("checkpoints", "4", "Checkpoints", "cpf_tui.screens.checkpoints:CheckpointsScreen")`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Select, Static

from cpf_tui.clock import ago, parse, stamp
from cpf_tui.look import palette, short_id
from cpf_tui.screens.base import Command, CpfScreen
from cpf_tui.screens.run_view import _at, _short
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.line import Line
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.widgets.vtable import Column, Row, VirtualTable
from cpf_tui.work import off_thread

LOCAL = "local"  # core.service.common.LOCAL_ACCOUNT: the account of cpf runs
POLL = 0.5  # seconds between polls of the workflow list (changes show within a second)
ACCOUNTS_EVERY = 10  # polls between re-reads of the account list
PAGE = 1000  # core.service.common.REPLAY_MAX_LIMIT: the largest page list/replay return
PRETTY_LIMIT = 256 * 1024  # states bigger than this are shown as plain indented text
PLAIN_LINES = 2000  # ... and cut after this many lines

WORKFLOW_COLUMNS = [
    Column("kind", "Kind", 4),
    Column("workflow", "Workflow", 14, stretch=True),
    Column("agent", "Agent", 12, drop=2),
    Column("count", "Cps", 5, justify="right", drop=3),
    Column("head", "Head", 6, justify="right"),
    Column("activity", "Activity", 8, drop=1),
    Column("expires", "Expires", 8, drop=4),
]


def checkpoint_columns(width: int) -> list[Column]:
    """The checkpoint table's columns; the etag gets its full 16 characters when there
    is room (the detail pane always shows it whole)."""
    etag = 16 if width >= 60 else 8
    return [
        Column("step", "Step", 5, justify="right"),
        Column("label", "Label", 8, stretch=True),
        Column("created", "Created", 8, drop=2),
        Column("size", "Size", 7, justify="right", drop=1),
        Column("etag", "Etag", etag),
    ]


# -- reading (worker threads) --------------------------------------------------------------


def _service(svc: Any) -> Any:
    if svc is not None:
        return svc
    from core.service.api import service

    return service()


def read_accounts(svc: Any, current: str) -> list[str]:
    """`local`, the current account, and every account with an API key that has at
    least one live checkpoint workflow (`local` first, then by name)."""
    svc = _service(svc)
    names = {k["account"] for k in svc.list_keys()} - {LOCAL, current}
    found = [n for n in sorted(names) if svc.list_workflows(n, limit=1)["workflows"]]
    return [LOCAL, *([current] if current != LOCAL else []), *found]


def read_workflows(
    svc: Any, account: str, agents: dict[tuple[str, str], tuple[Any, str | None]]
) -> list[dict[str, Any]]:
    """Every live workflow of `account`, most recent activity first, each with the agent
    of its head checkpoint (`agents` caches it by workflow while the head is the same)."""
    from core.service.checkpoints import checkpoint_id_for
    from core.service.common import ApiError

    svc = _service(svc)
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = svc.list_workflows(account, limit=PAGE, offset=offset)
        rows.extend(page["workflows"])
        if not page["has_more"]:
            break
        offset += len(page["workflows"])
    for row in rows:
        row["account"] = account
        if row.get("source") == "run":
            row["agent"] = None
            continue
        key = (account, row["workflow_id"])
        sig = signature(row)
        hit = agents.get(key)
        if hit is None or hit[0] != sig:
            agent = None
            try:
                head = svc.get(account, checkpoint_id_for(row["workflow_id"], row["latest_step"]))
                meta = head.get("metadata") or {}
                agent = meta.get("agent_id") if isinstance(meta, dict) else None
            except ApiError:  # expired or deleted since it was listed
                pass
            hit = (sig, agent if isinstance(agent, str) else None)
            agents[key] = hit
        row["agent"] = hit[1]
    return rows


def read_checkpoints(svc: Any, account: str, workflow_id: str) -> list[dict[str, Any]]:
    """All live checkpoints of one workflow by step, states as their JSON text."""
    svc = _service(svc)
    out: list[dict[str, Any]] = []
    from_step: int | None = None
    while True:
        page = svc.replay(account, workflow_id, from_step=from_step, limit=PAGE, raw=True)
        out.extend(page["checkpoints"])
        if not page["has_more"]:
            return out
        from_step = page["next_from_step"]


def signature(wf: dict[str, Any]) -> tuple[Any, ...]:
    """What changes when a workflow gets, loses or replaces a checkpoint."""
    return (
        wf["workflow_id"],
        wf.get("latest_step"),
        wf.get("total_checkpoints"),
        wf.get("last_activity_at"),
        wf.get("expires_at"),
    )


# -- formatting ----------------------------------------------------------------------------


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def until(ts: str | None, now: Any) -> str:
    """How long after `now`: `in 12s`, `in 5m`, `in 3h`, `in 6d`; `expired`; `never`."""
    when = parse(ts)
    if when is None:
        return "never"
    s = (when - now).total_seconds()
    if s <= 0:
        return "expired"
    if s < 60:
        return f"in {int(s)}s"
    if s < 3600:
        return f"in {int(s // 60)}m"
    if s < 86400:
        return f"in {int(s // 3600)}h"
    return f"in {int(s // 86400)}d"


def bare_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def parsed_state(cp: dict[str, Any]) -> Any:
    """A checkpoint's state (read raw: parsed here, once, when it is needed)."""
    if "_state" not in cp:
        state = cp.get("state")
        cp["_state"] = json.loads(state) if isinstance(state, str) else state
    return cp["_state"]


def previous_of(cps: list[dict[str, Any]], cp: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint `cp` was diffed against when it was saved: the one written just
    before it (the workflow's head then), which is the previous step when steps are
    written in order."""
    created = cp.get("created_at") or ""
    earlier = [c for c in cps if c is not cp and (c.get("created_at") or "") < created]
    if earlier:
        return max(earlier, key=lambda c: (c.get("created_at") or "", c["step"]))
    lower = [c for c in cps if c["step"] < cp["step"]]
    return max(lower, key=lambda c: c["step"]) if lower else None


# -- the screen ----------------------------------------------------------------------------


class CheckpointTable(VirtualTable):
    """The checkpoint list: its etag column widens when the table is wide enough."""

    def on_resize(self, event: events.Resize) -> None:
        # VirtualTable's own on_resize runs after this one (Textual calls both).
        columns = checkpoint_columns(event.size.width)
        if columns != self.columns:
            self.columns = columns


class CheckpointsScreen(CpfScreen):
    AREA = "checkpoints"
    HELP = """\
**Checkpoints** shows the checkpoint workflows of one account: those saved through
`cpf serve` (the SnapState API) and, for the account `local`, every `cpf` run (marked
`run`: read-only, one checkpoint per step transition). Top: the workflows, most recent
activity first, with their agent, number of checkpoints, head step, last activity and
expiry. Bottom left: the selected workflow's checkpoints by step (label, created, size,
etag). Bottom right: the selected checkpoint's metadata, its diff from the previous
checkpoint (`+` added, `~` changed, `-` removed) and its state. Refreshed within a
second. `a` / `A` switch to the next / previous account that has workflows; `w`, `p`,
`s` focus the workflows, the checkpoints, the state; `enter` moves right, `escape` left;
`o` opens a run in the run view. The same from a shell: `cpf keys list`, and the SDK's
`replay()` with the account's key.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "account(1)", "Account", id="checkpoints.account"),
        Binding("A", "account(-1)", "Prev account", show=False, id="checkpoints.account_prev"),
        Binding("w", "focus_workflows", "Workflows", show=False, id="checkpoints.workflows"),
        Binding("p", "focus_checkpoints", "Checkpoints", id="checkpoints.list"),
        Binding("s", "focus_state", "State", id="checkpoints.state"),
        Binding("o", "open_run", "Open run", id="checkpoints.open_run"),
        Binding("r", "reload", "Reload", show=False, id="checkpoints.reload"),
        Binding("escape", "back", "Back", id="checkpoints.back"),
    ]

    def __init__(self, account: str = LOCAL, *, service: Any = None) -> None:
        super().__init__()
        self.account = account
        self.service = service  # a core.service.api.CheckpointService; default service()
        self.accounts: list[str] = [account] if account == LOCAL else [LOCAL, account]
        self.workflows: dict[str, dict[str, Any]] = {}
        self.checkpoints: list[dict[str, Any]] = []
        self.loaded = False  # the first list (and the selected workflow's checkpoints) read
        self.error: str | None = None
        self._agents: dict[tuple[str, str], tuple[Any, str | None]] = {}
        self._listed: list[dict[str, Any]] | None = None
        self._cp_sig: tuple[Any, ...] | None = None  # (account, signature) shown below
        self._loading: tuple[Any, ...] | None = None  # ... and the one being read
        self._shown: tuple[Any, ...] | None = None  # what the detail pane shows
        self._busy = False
        self._ticks = 0
        self.detail = Static("", id="cp-state")
        self.detail_content: RenderableType = ""  # what the detail pane shows

    def compose(self) -> ComposeResult:
        yield TopBar()
        with Horizontal(id="cp-bar"):
            yield Select(
                [(a, a) for a in self.accounts],
                value=self.account,
                allow_blank=False,
                compact=True,
                id="cp-account",
            )
            yield Line("", id="cp-info")
        yield VirtualTable(
            WORKFLOW_COLUMNS,
            empty_text=self._workflows_empty_text(),
            formatter=self._workflow_cells,
            id="cp-workflows",
        )
        with Horizontal(id="cp-lower"):
            yield CheckpointTable(
                checkpoint_columns(46),
                empty_text="No workflow selected.",
                formatter=self._checkpoint_cells,
                id="cp-checkpoints",
            )
            with VerticalScroll(id="cp-detail"):
                yield self.detail
        yield KeyFooter()

    def on_mount(self) -> None:
        self._render_info()
        self._where()
        self.workflow_table.focus()
        self.set_interval(POLL, self._tick)
        self._kick()

    def on_screen_resume(self) -> None:
        self._kick()

    # -- widgets -------------------------------------------------------------------------

    @property
    def workflow_table(self) -> VirtualTable:
        return self.query_one("#cp-workflows", VirtualTable)

    @property
    def checkpoint_table(self) -> VirtualTable:
        return self.query_one("#cp-checkpoints", VirtualTable)

    @property
    def selected_workflow(self) -> dict[str, Any] | None:
        key = self.workflow_table.cursor_key
        return self.workflows.get(key) if key else None

    @property
    def selected_checkpoint(self) -> dict[str, Any] | None:
        key = self.checkpoint_table.cursor_key
        return next((c for c in self.checkpoints if str(c["step"]) == key), None)

    def _where(self) -> None:
        self.query_one(TopBar).where = f"account {self.account}"  # the tab says Checkpoints

    # -- polling -------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self.is_current or self._busy:
            return
        self._ticks += 1
        self._kick()

    def _kick(self) -> None:
        # The method, not a coroutine: a worker cancelled before it starts leaves nothing.
        self.run_worker(self._refresh, group="checkpoints-refresh", exclusive=True)

    async def _refresh(self) -> None:
        self._busy = True
        try:
            account = self.account
            if self._ticks % ACCOUNTS_EVERY == 0 or len(self.accounts) <= 1:
                accounts = await off_thread(read_accounts, self.service, account)
                if account == self.account:
                    self._set_accounts(accounts)
            rows = await off_thread(read_workflows, self.service, account, self._agents)
            if account != self.account:
                return  # switched meanwhile: the next refresh reads the new account
            if rows != self._listed:
                self._listed = rows
                self.workflows = {r["workflow_id"]: r for r in rows}
                self._render_workflows()
            else:
                self.workflow_table.refresh_cells()  # times move on
                self.checkpoint_table.refresh_cells()
            await self._load_checkpoints()
            self.error = None
            self.loaded = True
        except Exception as exc:  # the store went away: keep showing what we have
            self.error = " ".join(str(exc).split())
            self.workflow_table.empty_text = self._workflows_empty_text()
            self._render_info()
        finally:
            self._busy = False

    async def _load_checkpoints(self) -> None:
        """Read the selected workflow's checkpoints when they changed (or it did)."""
        wf = self.selected_workflow
        if wf is None:
            if self._cp_sig is not None or not self.loaded:
                self._cp_sig = None
                self.checkpoints = []
                self._render_checkpoints()
            return
        sig = (self.account, signature(wf))
        if sig == self._cp_sig:
            return
        self._loading = sig
        try:
            cps = await off_thread(read_checkpoints, self.service, self.account, wf["workflow_id"])
        finally:
            self._loading = None
        current = self.selected_workflow
        if current is None or (self.account, signature(current)) != sig:
            return  # the selection moved on: the next refresh reads that one
        self._cp_sig = sig
        self.checkpoints = cps
        self._render_checkpoints()

    def _set_accounts(self, accounts: list[str]) -> None:
        if accounts == self.accounts:
            return
        self.accounts = accounts
        select = self.query_one("#cp-account", Select)
        with self.prevent(Select.Changed):
            select.set_options([(a, a) for a in accounts])
            select.value = self.account
        self._render_info()

    # -- rendering -----------------------------------------------------------------------

    def _workflows_empty_text(self) -> str:
        # The first read opens the checkpoint store (its ORM is imported then): the
        # screen shows at once and says so meanwhile.
        if self._listed is None and self.error is None:
            return f"Reading the checkpoint workflows of account {self.account}…"
        return f"No checkpoint workflows in account {self.account}."

    def _render_workflows(self) -> None:
        table = self.workflow_table
        table.empty_text = self._workflows_empty_text()
        table.set_rows([Row(k, wf) for k, wf in self.workflows.items()])
        self._render_info()

    def _render_info(self) -> None:
        info = Text(no_wrap=True, overflow="ellipsis")
        if self.error:
            info.append(f"store error: {self.error}", style="red")
        elif self._listed is None:
            info.append("reading…", style="italic")
        else:
            runs = sum(1 for w in self.workflows.values() if w.get("source") == "run")
            n = len(self.workflows)
            info.append(f"{n:,} workflow{'' if n == 1 else 's'}")
            if runs:
                info.append(f" ({runs:,} run{'' if runs == 1 else 's'})")
            others = len(self.accounts) - 1
            if others > 0:
                more = f"{others} other account{'' if others == 1 else 's'}"
                info.append(f"  · {more} (a)", style="dim")
        self.query_one("#cp-info", Line).update(info)

    def _workflow_cells(self, wf: dict[str, Any]) -> tuple[Any, ...]:
        now = self.now
        theme = palette(self.app)
        is_run = wf.get("source") == "run"
        kind = Text("run", style=f"bold {theme.accent}") if is_run else Text("api", style="dim")
        if is_run:
            agent: Any = Text("cpf", style="dim italic")
        else:
            agent = wf.get("agent") or ""
        expires = until(wf.get("expires_at"), now)
        when = parse(wf.get("expires_at"))
        soon = when is not None and (when - now).total_seconds() < 3600
        return (
            kind,
            wf["workflow_id"],
            agent,
            f"{wf.get('total_checkpoints', 0):,}",
            str(wf.get("latest_step", "")),
            ago(wf.get("last_activity_at"), now),
            Text(expires, style=theme.warning) if soon else Text(expires, style="dim"),
        )

    def _checkpoint_cells(self, cp: dict[str, Any]) -> tuple[Any, ...]:
        width = next(c.width for c in self.checkpoint_table.columns if c.key == "etag")
        return (
            str(cp["step"]),
            cp.get("label") or "",
            ago(cp.get("created_at"), self.now),
            human_size(cp.get("size_bytes")),
            Text(bare_etag(cp.get("etag"))[:width], style="dim"),
        )

    def _render_checkpoints(self) -> None:
        table = self.checkpoint_table
        wf = self.selected_workflow
        table.empty_text = (
            "No workflow selected." if wf is None else "No live checkpoints in this workflow."
        )
        table.set_rows([Row(str(c["step"]), c) for c in self.checkpoints])
        self._render_detail()

    def _render_detail(self) -> None:
        cp = self.selected_checkpoint
        wf = self.selected_workflow
        which = None if cp is None else (self.account, cp["checkpoint_id"], cp.get("etag"))
        key = (self._cp_sig, which, wf is None)
        if key == self._shown:
            return
        moved = self._shown is None or self._shown[1] != which
        self._shown = key
        if cp is None:
            text = "Select a workflow." if wf is None else "Select a checkpoint."
            self.detail_content = Text(text, style="dim italic")
        else:
            self.detail_content = self._detail(cp, wf)
        self.detail.update(self.detail_content)
        if moved and cp is not None:
            self.query_one("#cp-detail", VerticalScroll).scroll_home(animate=False)

    def _detail(self, cp: dict[str, Any], wf: dict[str, Any] | None) -> RenderableType:
        theme = palette(self.app)
        now = self.now
        head = Text()
        head.append(f"{cp['checkpoint_id']}", style="bold")
        if cp.get("label"):
            head.append(f"  {cp['label']}", style=f"bold {theme.accent}")
        facts = Text(style="dim")
        facts.append(f"etag {cp.get('etag')}\n")
        facts.append(f"created {stamp(cp.get('created_at'))} ({ago(cp.get('created_at'), now)})\n")
        facts.append(f"step {cp['step']} · {cp.get('size_bytes', 0):,} B")
        facts.append(f" · expires {until(cp.get('expires_at'), now)}")
        parts: list[RenderableType] = [head, facts]
        if wf is not None and wf.get("source") == "run":
            parts.append(
                Text(f"checkpoint of cpf run {short_id(wf['workflow_id'])} (read-only)", "italic")
            )
        meta = cp.get("metadata")
        if meta:
            parts.append(Text.assemble(("metadata ", "bold"), (_short(meta, 200), "dim")))
        parts.append(self._diff(cp))
        parts.append(Text("State", style="bold"))
        parts.append(self._state(cp))
        return Group(*parts)

    def _diff(self, cp: dict[str, Any]) -> Text:
        theme = palette(self.app)
        diff = cp.get("diff_from_previous") or {}
        added, changed = diff.get("added") or [], diff.get("changed") or []
        removed = diff.get("removed") or []
        previous = previous_of(self.checkpoints, cp)
        state = parsed_state(cp)
        old = parsed_state(previous) if previous is not None else None
        out = Text()
        out.append("\nDiff from previous", style="bold")
        if previous is not None:
            out.append(f" (step {previous['step']})", style="dim")
        else:
            out.append(" (none: the first)", style="dim")
        out.append("  ")
        out.append(f"+{len(added)}", style=theme.success)
        out.append(f" ~{len(changed)}", style=theme.warning)
        out.append(f" -{len(removed)}", style=theme.error)
        out.append("\n")
        for path in added:
            out.append(f"+ {path} = {_short(_at(state, path))}\n", style=theme.success)
        for path in changed:
            if previous is not None:
                line = f"~ {path}: {_short(_at(old, path))} → {_short(_at(state, path))}\n"
            else:
                line = f"~ {path} → {_short(_at(state, path))}\n"
            out.append(line, style=theme.warning)
        for path in removed:
            was = f" (was {_short(_at(old, path))})" if previous is not None else ""
            out.append(f"- {path}{was}\n", style=theme.error)
        if not (added or changed or removed):
            out.append("(no change)\n", style="dim")
        return out

    def _state(self, cp: dict[str, Any]) -> RenderableType:
        raw = cp.get("state")
        if (cp.get("size_bytes") or 0) <= PRETTY_LIMIT:
            view = JSON(raw, indent=2) if isinstance(raw, str) else JSON.from_data(raw, indent=2)
            view.text.no_wrap = False  # long strings wrap at the pane edge, never cut
            view.text.overflow = "fold"
            return view
        lines = json.dumps(parsed_state(cp), indent=2, ensure_ascii=False).splitlines()
        text = Text("\n".join(lines[:PLAIN_LINES]))
        if len(lines) > PLAIN_LINES:
            text.append(f"\n… {len(lines) - PLAIN_LINES:,} more lines", style="dim italic")
        return text

    # -- events --------------------------------------------------------------------------

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        event.stop()
        if event.table.id == "cp-workflows":
            wf = self.selected_workflow
            sig = None if wf is None else (self.account, signature(wf))
            if sig is None or sig not in (self._cp_sig, self._loading):
                if self._cp_sig is not None:
                    self._cp_sig = None
                    self.checkpoints = []
                    self._render_checkpoints()
                self._kick()
            self.refresh_bindings()
        else:
            self._render_detail()

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        event.stop()
        if event.table.id == "cp-workflows":
            self.checkpoint_table.focus()
        else:
            self.query_one("#cp-detail", VerticalScroll).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str) and event.value != self.account:
            self.switch_account(event.value)

    # -- actions -------------------------------------------------------------------------

    def switch_account(self, account: str) -> None:
        """Show another account's workflows (from the start: nothing of the old one)."""
        self.account = account
        if account not in self.accounts:
            self._set_accounts([*self.accounts, account])
        select = self.query_one("#cp-account", Select)
        if select.value != account:
            with self.prevent(Select.Changed):
                select.value = account
        self.workflows = {}
        self._listed = None
        self._cp_sig = None
        self._loading = None
        self.checkpoints = []
        self.loaded = False
        self._render_workflows()
        self._render_checkpoints()
        self._where()
        self._kick()

    def action_account(self, delta: int) -> None:
        if len(self.accounts) < 2:
            self.notify("No other account has checkpoint workflows.", severity="information")
            return
        index = self.accounts.index(self.account) if self.account in self.accounts else 0
        self.switch_account(self.accounts[(index + delta) % len(self.accounts)])

    def action_focus_workflows(self) -> None:
        self.workflow_table.focus()

    def action_focus_checkpoints(self) -> None:
        self.checkpoint_table.focus()

    def action_focus_state(self) -> None:
        self.query_one("#cp-detail", VerticalScroll).focus()

    def action_back(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "cp-detail":
            self.checkpoint_table.focus()
        elif focused is not self.workflow_table:
            self.workflow_table.focus()
        elif len(self.app.screen_stack) > 1 and self.app.screen is self:
            self.app.pop_screen()

    def action_reload(self) -> None:
        self._listed = None
        self._cp_sig = None
        self._kick()

    def action_open_run(self) -> None:
        wf = self.selected_workflow
        opener = getattr(self.app, "open_run", None)
        if wf is None or wf.get("source") != "run" or opener is None:
            self.notify("The selected workflow is not a cpf run.", severity="warning")
            return
        opener(wf.get("run_id") or wf["workflow_id"])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_run":
            wf = self.selected_workflow
            is_run = wf is not None and wf.get("source") == "run"
            return is_run and callable(getattr(self.app, "open_run", None))
        if action == "account":
            return len(self.accounts) > 1 or None  # dimmed while there is no other
        if action == "back":  # left one pane, or back to the screen below
            return self.focused is not self.workflow_table or self.pushed
        return True

    def context_commands(self) -> Iterator[Command]:
        wf = self.selected_workflow
        if wf is not None and wf.get("source") == "run" and self.check_action("open_run", ()):
            yield (
                f"Open run {short_id(wf['workflow_id'])}",
                "Steps, log, outputs",
                self.action_open_run,
            )
        for account in self.accounts:
            if account != self.account:
                yield (
                    f"Show checkpoints of account {account}",
                    "Checkpoint workflows",
                    partial(self.switch_account, account),
                )
        yield ("Reload checkpoints", "Read everything again", self.action_reload)
