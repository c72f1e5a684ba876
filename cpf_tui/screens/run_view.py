"""The run view: step timeline, live log of the selected step, outputs, events,
checkpoints (with the diff of each) and details of one run, following it live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane, Tree
from textual.widgets.tree import TreeNode

from cpf_tui import textual_fixes
from cpf_tui.clock import ago, duration, stamp
from cpf_tui.commands import answer_name
from cpf_tui.control import ACTIVE, RunControl, allowed, refusal
from cpf_tui.feed import LogFeed
from cpf_tui.hints import hint
from cpf_tui.look import ICONS, display_path, palette, short_id, status_color, status_text
from cpf_tui.nav import open_approval
from cpf_tui.screens.base import Command, CpfScreen
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.line import Line
from cpf_tui.widgets.logpane import LogPane
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.work import off_thread

textual_fixes.apply()  # this screen has tabs

FAST = 0.2  # poll period while the run is active (output reaches the screen < 0.5 s)
SLOW_EVERY = 5  # ticks between polls of a finished run (it may be retried elsewhere)


class RunScreen(CpfScreen, RunControl):
    HELP = """\
**Run view.** Left: the step timeline (every attempt, nested steps under their parent;
"All steps" shows the whole run's output). Right: the live **Log** of the selected entry
(follows new output; scroll up to pause, `G`/`end` to follow again; `/` search, `n`/`N`
next/previous match, `w` wrap), the **Outputs**, the **Events** (who answered, from
which surface), the **Checkpoints** with what changed at each, and **Details**.
`a` answers a waiting run, `c` cancels, `r` retries a failed run, `d` deletes a
finished one. The full log is always in the store: `cpf logs --run-id <id>`.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="run.back"),
        Binding("a", "answer", "Answer", id="run.answer"),
        Binding("c", "cancel", "Cancel run", id="run.cancel"),
        Binding("r", "retry", "Retry", id="run.retry"),
        Binding("d", "delete", "Delete", id="run.delete"),
        Binding("t", "focus_timeline", "Timeline", show=False, id="run.timeline"),
        Binding("l", "tab('tab-log')", "Log", show=False, id="run.log"),
        Binding("o", "tab('tab-outputs')", "Outputs", show=False, id="run.outputs"),
        Binding("e", "tab('tab-events')", "Events", show=False, id="run.events"),
        Binding("p", "tab('tab-checkpoints')", "Checkpoints", show=False, id="run.checkpoints"),
        Binding("i", "tab('tab-details')", "Details", show=False, id="run.details"),
    ]

    def __init__(self, run_id: str, *, spawned: Any = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.spawned = spawned
        self.run: dict[str, Any] | None = None
        self.attempts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.selection: int | None = None  # attempt id; None = all steps
        self.feed: LogFeed | None = None
        self.loaded = False
        self.missing = False
        self._seen_version: Any = None
        self._seen_attempts: Any = None
        self._attempt_nodes: dict[int, TreeNode[Any]] = {}
        self._pending_nodes: list[TreeNode[Any]] = []
        self._pending_shown: list[tuple[str, str]] = []
        self._plan: list[tuple[str, str]] | None = None  # the workflow's top-level steps
        self._busy = False
        self._ticks = 0
        # Held, not queried: the tab panes may not be composed yet when the run is read.
        app: Any = self.app
        self.log_pane = LogPane(max_lines=app.config.log_max_lines, id="run-log")
        self.outputs_view = Static("", id="run-outputs")
        self.events_view = Static("", id="run-events")
        self.checkpoints_view = Static("", id="run-checkpoints")
        self.details_view = Static("", id="run-details")

    def compose(self) -> ComposeResult:
        yield TopBar()
        yield Line("", id="run-head")
        with Horizontal(id="run-body"):
            tree: Tree[int | None] = Tree("All steps", data=None, id="timeline")
            tree.guide_depth = 2
            tree.root.expand()
            yield tree
            with TabbedContent(id="run-tabs"):
                with TabPane("Log", id="tab-log"):
                    yield self.log_pane
                with TabPane("Outputs", id="tab-outputs"), VerticalScroll():
                    yield self.outputs_view
                with TabPane("Events", id="tab-events"), VerticalScroll():
                    yield self.events_view
                with TabPane("Checkpoints", id="tab-checkpoints"), VerticalScroll():
                    yield self.checkpoints_view
                with TabPane("Details", id="tab-details"), VerticalScroll():
                    yield self.details_view
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(TopBar).where = f"run {short_id(self.run_id)}"
        self.log_pane.hint = f"cpf logs --run-id {self.run_id}"
        self.call_after_refresh(self.log_pane.log_view.focus)
        self._select(None, load=False)  # the first refresh loads it, after the attempts
        self.set_interval(FAST, self._tick)
        self.run_worker(self._refresh(), group="run-refresh")

    # -- polling -------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.run is None or self.run["status"] in ACTIVE

    def _tick(self) -> None:
        if not self.is_current or self._busy:
            return
        self._ticks += 1
        if self.active or self._ticks % SLOW_EVERY == 0:
            self.run_worker(self._refresh(), group="run-refresh")
        elif self._ticks % SLOW_EVERY == 1:
            self._render_head()

    async def _refresh(self) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            await self._read()
            if self.feed is not None:
                if not self.feed.loaded:
                    await self.feed.load()
                else:
                    await self.feed.poll()
        except Exception as exc:
            for head in self.query("#run-head").results(Line):  # none once torn down
                head.update(Text(f"cannot read the run: {exc}", "red"))
        finally:
            self._busy = False

    async def _read(self) -> None:
        from core import queries

        run = await off_thread(queries.get_run, self.run_id)
        if run is None:
            self._missing()
            return
        self.missing = False
        version = (run.get("version"), run.get("updated_at"), run.get("status"))
        self.run = run
        if self._plan is None:
            self._plan = await off_thread(_plan_of, run.get("workflow_path"))
        # A step that starts writes its attempt without touching the run row.
        signature = await off_thread(queries.attempts_signature, self.run_id)
        if version != self._seen_version:
            self.attempts = await off_thread(queries.attempts, self.run_id)
            self.events = await off_thread(queries.events, self.run_id)
            self.checkpoints = await off_thread(queries.checkpoints, self.run_id)
            self._seen_version = version
            self._seen_attempts = signature
            self._render_all()
            self.refresh_bindings()
        elif signature != self._seen_attempts:
            self.attempts = await off_thread(queries.attempts, self.run_id)
            self._seen_attempts = signature
            self._render_head()
            self._render_timeline()
            self._render_outputs()
        else:
            self._render_head()
        self.loaded = True

    def _missing(self) -> None:
        head = self.query_one("#run-head", Line)
        if self.spawned is not None and self.spawned.process.poll() is None:
            head.update(Text(f"Starting run {short_id(self.run_id)}…", style="italic"))
            return
        self.missing = True
        self.loaded = True
        envelope = self.spawned.envelope() if self.spawned is not None else None
        if envelope and envelope.get("error"):
            err = envelope["error"]
            head.update(
                Text(f"The run did not start: {err.get('code')}: {err.get('message')}", "red")
            )
        elif self.run is not None:
            head.update(Text(f"Run {short_id(self.run_id)} was deleted.", style="italic"))
        else:
            head.update(Text(f"No run {self.run_id} in the store.", style="italic"))

    # -- rendering -----------------------------------------------------------------------

    def _render_all(self) -> None:
        self._render_head()
        self._render_timeline()
        self._render_outputs()
        self._render_events()
        self._render_checkpoints()
        self._render_details()

    def _render_head(self) -> None:
        run = self.run
        if run is None:
            return
        now = self.now
        head = self.query_one("#run-head", Line)
        width = head.content_size.width or max(20, self.size.width - 2)
        # Each part has a rank: on a narrow terminal the highest ranks are left out first,
        # so what to press and what the run waits for stay readable.
        first: list[tuple[str | Text, int]] = [
            (status_text(self.app, run["status"]), 0),
            ("  ", 0),
            (Text(run.get("workflow_name") or run["workflow_id"], style="bold"), 0),
        ]
        if run.get("current_step_id") and run["status"] != "completed":
            first.append((f"  at {run['current_step_id']}", 1))
        end = run.get("finished_at") or (
            run.get("updated_at") if run["status"] == "waiting" else None
        )
        first += [
            (Text(f"  · started {ago(run.get('created_at'), now)}", style="dim"), 3),
            (Text(f"  · {duration(run.get('created_at'), end, now)}", style="dim"), 2),
            (Text(f"  · {short_id(run['run_id'])}", style="dim"), 4),
        ]
        text = Line.fit(first, width)
        second_parts: list[tuple[str | Text, int]] = []
        theme = palette(self.app)
        if run["status"] == "waiting":
            wait = run.get("wait") or {}
            second_parts += [
                (Text(" ‖ ", style=f"bold {theme.warning}"), 0),
                (Text("waiting for ", style=f"bold {theme.warning}"), 2),
                (Text(f"'{wait.get('event_name')}'", style="bold"), 0),
            ]
            if wait.get("risk_level"):
                second_parts.append((Text(f"  risk {wait['risk_level']}", theme.warning), 1))
            answer = hint(self.app, "run.answer", "a", "answer")
            second_parts += [("   ", 0), (Text(answer, "reverse bold"), 0)]
            second = Line.fit(second_parts, width)
            if second.plain.endswith("…"):  # too narrow even so: the key comes first
                second = Line.fit([(Text(answer, "reverse bold"), 0), *second_parts[:3]], width)
        elif run["status"] == "running":
            current = next((a for a in reversed(self.attempts) if a["status"] == "running"), None)
            if current is not None:
                second_parts.append((Text(f" ▶ {current['step_id']}", f"bold {theme.accent}"), 0))
                if current.get("attempt", 1) > 1:
                    second_parts.append((f" attempt {current['attempt']}", 1))
                since = duration(current.get("started_at"), None, now)
                second_parts.append((f" running for {since}", 0))
            second_parts.append((Text("   c cancels", style="dim"), 2))
            second = Line.fit(second_parts, width)
        elif run.get("error"):
            err = run["error"]
            second = Line.fit(
                [
                    (Text(f" {err.get('code', '')}: ", style=f"bold {theme.error}"), 0),
                    (" ".join(str(err.get("message", "")).split()), 0),
                ],
                width,
            )
        elif run["status"] == "completed":
            result = run.get("result")
            shown = json.dumps(result, ensure_ascii=False) if result is not None else "(none)"
            second = Line.fit(
                [(Text(" result ", style=f"bold {theme.success}"), 0), (shown, 0)], width
            )
        else:
            second = Text()
        head.update(Group(text, second))
        self._render_running()

    def _render_running(self) -> None:
        """Running steps' durations move on with the header's, from the same clock."""
        for a in self.attempts:
            node = self._attempt_nodes.get(a["id"])
            if node is not None and a["status"] == "running":
                node.set_label(self._attempt_label(a))

    def _attempt_label(self, a: dict[str, Any]) -> Text:
        status = a["status"]
        text = Text(no_wrap=True, overflow="ellipsis")
        style = status_color(self.app, status)
        text.append(f"{ICONS.get(status, '?')} ", style=style)
        where = self._context_tail(a)
        if where:
            text.append(f"{where} ", style="dim")
        text.append(a["step_id"], style="bold" if status in ("running", "waiting") else "")
        if a.get("attempt", 1) > 1 or self._retried(a):
            text.append(f" #{a.get('attempt', 1)}", style="dim")
        if a.get("step_kind") not in ("cli", None):
            text.append(f" {a['step_kind']}", style="dim italic")
        if status != "waiting":
            text.append(f" {duration(a.get('started_at'), a.get('finished_at'), self.now)}", "dim")
        return text

    def _context_tail(self, a: dict[str, Any]) -> str:
        """What tells nested siblings apart: `[2]` for a foreach iteration (the rest of
        the context is the tree above it)."""
        context = a.get("context") or ""
        parent = next((p for p in self.attempts if p["id"] == a.get("parent_id")), None)
        if parent is None:
            return f"{context}/" if context else ""
        above = (f"{parent['context']}/" if parent.get("context") else "") + parent["step_id"]
        return context[len(above) :] if context.startswith(above) else context

    def _retried(self, a: dict[str, Any]) -> bool:
        return any(
            b["step_id"] == a["step_id"]
            and b.get("attempt", 1) > 1
            and b.get("parent_id") == a.get("parent_id")
            for b in self.attempts
        )

    def _render_timeline(self) -> None:
        tree = self.query_one("#timeline", Tree)
        for a in self.attempts:
            node = self._attempt_nodes.get(a["id"])
            label = self._attempt_label(a)
            if node is not None:
                node.set_label(label)
                continue
            parent = self._attempt_nodes.get(a.get("parent_id") or -1) or tree.root
            parent.allow_expand = True
            if not parent.is_expanded:
                parent.expand()
            node = parent.add(label, data=a["id"], expand=True, allow_expand=False)
            self._attempt_nodes[a["id"]] = node
        tree.root.set_label(Text("All steps", style="bold"))
        self._render_pending(tree)

    def _render_pending(self, tree: Tree[Any]) -> None:
        """Steps of an active run that have not run yet, dimmed, after the others."""
        pending: list[tuple[str, str]] = []
        if self.run is not None and self.run["status"] in ACTIVE and self._plan:
            ran = {a["step_id"] for a in self.attempts if a.get("parent_id") is None}
            pending = [(sid, kind) for sid, kind in self._plan if sid not in ran]
        n = len(self._pending_nodes)
        at_end = n == 0 or all(
            a is b for a, b in zip(tree.root.children[-n:], self._pending_nodes, strict=False)
        )
        if pending == self._pending_shown and at_end:
            return
        for node in self._pending_nodes:
            node.remove()
        self._pending_nodes = []
        for sid, kind in pending:
            label = Text(f"{ICONS['pending']} {sid}", style="dim", no_wrap=True)
            if kind not in ("cli",):
                label.append(f" {kind}", style="dim italic")
            self._pending_nodes.append(tree.root.add_leaf(label, data=f"pending:{sid}"))
        self._pending_shown = pending

    def _selected_attempt(self) -> dict[str, Any] | None:
        return next((a for a in self.attempts if a["id"] == self.selection), None)

    def _render_empty_log(self) -> None:
        """What the log shows while the selection has no output: for a step that failed
        without printing anything (an `api` step that got no reply, a refused command),
        its error and the response it got, not "No output yet"."""
        a = self._selected_attempt()
        run = self.run or {}
        lines: list[str] = []
        if a is not None:
            if a.get("error_code") or a["status"] == "failed":
                lines.append(f"✗ {a.get('error_code') or 'failed'}: {a.get('error_message') or ''}")
                if a.get("outputs") is not None:
                    lines += ["", "Response / outputs:", _pretty(a["outputs"])]
            elif a["status"] in ACTIVE:
                lines.append("No output yet.")
            else:
                lines.append("This step printed nothing.")
        elif run.get("error"):
            err = run["error"]
            lines.append(f"No output. ✗ {err.get('code', 'error')}: {err.get('message', '')}")
        else:
            lines.append("No output yet.")
        view = self.log_pane.log_view
        text = "\n".join(lines)
        if text != view.empty_text:
            view.empty_text = text
            view.refresh()

    def _render_outputs(self) -> None:
        self._render_empty_log()
        view = self.outputs_view
        a = self._selected_attempt()
        if a is not None:
            title = Text(f"Outputs of {a['step_id']} (attempt {a.get('attempt', 1)})", "bold")
            body: RenderableType = (
                _json(a["outputs"]) if a.get("outputs") is not None else Text("(none)", "dim")
            )
            parts: list[RenderableType] = [title, body]
            if a.get("error_code"):
                parts.append(Text(f"\n{a['error_code']}: {a.get('error_message')}", "red"))
            extra = []
            if a.get("exit_code") is not None:
                extra.append(f"exit code {a['exit_code']}")
            if a.get("output_bytes"):
                extra.append(f"{a['output_bytes']:,} bytes of output")
            if a.get("truncated"):
                extra.append("output truncated")
            if extra:
                parts.append(Text(" · ".join(extra), style="dim"))
            view.update(Group(*parts))
            return
        run = self.run or {}
        parts = [Text("Step outputs", style="bold"), _json(run.get("step_outputs") or {})]
        if run.get("result") is not None:
            parts += [Text("\nResult", style="bold"), _json(run["result"])]
        view.update(Group(*parts))

    def _render_events(self) -> None:
        view = self.events_view
        if not self.events:
            view.update(Text("No events yet.", style="dim"))
            return
        table = Table(box=None, expand=True, header_style="bold", pad_edge=False)
        table.add_column("When", no_wrap=True)
        table.add_column("What", no_wrap=True)
        table.add_column("Step", no_wrap=True)
        table.add_column("Actor", no_wrap=True)
        table.add_column("Via", no_wrap=True)
        table.add_column("Data", ratio=1, no_wrap=True, overflow="ellipsis")
        for e in self.events:
            what = e.get("event_name") if e.get("kind") == "event" else e.get("kind")
            data = e.get("data")
            table.add_row(
                ago(e.get("created_at"), self.now),
                str(what or ""),
                str(e.get("step_id") or ""),
                str(e.get("actor") or ""),
                str(e.get("surface") or ""),
                Text(json.dumps(data, ensure_ascii=False) if data is not None else "", "dim"),
            )
        view.update(table)

    def _render_checkpoints(self) -> None:
        view = self.checkpoints_view
        if not self.checkpoints:
            view.update(Text("No checkpoints yet (one is written per step transition).", "dim"))
            return
        parts: list[RenderableType] = []
        previous: Any = None
        theme = palette(self.app)
        for cp in self.checkpoints:
            head = Text()
            head.append(f"#{cp['step']} ", style="bold")
            head.append(str(cp.get("label") or ""), style="bold")
            meta = cp.get("meta") or cp.get("metadata") or {}
            if isinstance(meta, dict) and meta.get("status"):
                head.append(f"  → {meta['status']}")
            head.append(f"  {ago(cp.get('created_at'), self.now)}", style="dim")
            head.append(f"  {cp.get('size_bytes', 0):,} B", style="dim")
            parts.append(head)
            diff = cp.get("diff_from_previous") or {}
            state = cp.get("state")
            body = Text()
            for path in diff.get("added", []):
                value = _short(_at(state, path))
                body.append(f"  + {path} = {value}\n", style=theme.success)
            for path in diff.get("changed", []):
                old, new = _short(_at(previous, path)), _short(_at(state, path))
                body.append(f"  ~ {path}: {old} → {new}\n", style=theme.warning)
            for path in diff.get("removed", []):
                body.append(f"  - {path}\n", style=theme.error)
            if not body:
                body.append("  (no change)\n", style="dim")
            parts.append(body)
            previous = state
        view.update(Group(*parts))

    def _render_details(self) -> None:
        run = self.run
        if run is None:
            return
        view = self.details_view
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        rows = [
            ("Run", run["run_id"]),
            ("Workflow", f"{run.get('workflow_name') or ''} ({run['workflow_id']})"),
            ("Version", run.get("workflow_version") or ""),
            ("File", display_path(run["workflow_path"]) if run.get("workflow_path") else ""),
            ("Status", run["status"]),
            ("Created", stamp(run.get("created_at"))),
            ("Updated", stamp(run.get("updated_at"))),
            ("Finished", stamp(run.get("finished_at"))),
        ]
        for k, v in rows:
            if v:
                table.add_row(k, str(v))
        parts: list[RenderableType] = [
            table,
            Text("\nInputs", style="bold"),
            _json(run.get("inputs") or {}),
        ]
        if run.get("error"):
            parts += [Text("\nError", style="bold"), _json(run["error"])]
        if run.get("wait"):
            parts += [Text("\nWaiting for", style="bold"), _json(run["wait"])]
        parts += [Text("\nThe same from a shell", style="bold"), Text(self._commands(), "dim")]
        view.update(Group(*parts))

    def _commands(self) -> str:
        run = self.run or {}
        rid = self.run_id
        lines = [f"cpf status --run-id {rid}", f"cpf logs --run-id {rid} --follow"]
        if run.get("status") == "waiting":
            wait = run.get("wait") or {}
            lines.append(
                f"cpf resume --run-id {rid} --event {wait.get('event_name')} --input @event.json"
            )
        if run.get("status") in ACTIVE:
            lines.append(f"cpf cancel --run-id {rid} --reason '...'")
        if run.get("status") == "failed":
            lines.append(f"cpf retry --run-id {rid}")
        return "\n".join(lines)

    # -- selection -----------------------------------------------------------------------

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Any]) -> None:
        event.stop()
        if isinstance(event.node.data, str):  # a step that has not run yet
            return
        if event.node.data != self.selection:
            self._select(event.node.data)

    def _select(self, attempt_id: int | None, *, load: bool = True) -> None:
        self.selection = attempt_id
        if self.feed is not None:
            self.feed.active = False
        pane = self.log_pane
        self.feed = LogFeed(
            pane,
            self.run_id,
            attempt_id=attempt_id,
            sections=attempt_id is None,
            attempts=self.attempts,
        )
        pane.log_view.clear()
        self._render_outputs()
        if load:
            self.run_worker(self._load_feed(self.feed), group="run-log-load")

    async def _load_feed(self, feed: LogFeed) -> None:
        await feed.load()

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return allowed(action, self.run)

    def shows_waiting(self, run_id: str) -> bool:
        return run_id == self.run_id

    def refusal(self, action: str) -> str | None:
        return refusal(action, self.run)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_answer(self) -> None:
        if reason := refusal("answer", self.run):
            self.notify(reason, severity="warning")
        else:
            open_approval(self, self.run_id)

    def action_cancel(self) -> None:
        self.control_cancel(self.run)

    def action_retry(self) -> None:
        self.control_retry(self.run)

    def action_delete(self) -> None:
        self.control_delete(self.run)

    def control_done(self, run_id: str) -> None:
        self._seen_version = None
        self.run_worker(self._refresh(), group="run-refresh")

    def action_focus_timeline(self) -> None:
        self.query_one("#timeline", Tree).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab
        if tab == "tab-log":
            self.log_pane.log_view.focus()

    def context_commands(self) -> Iterator[Command]:
        run = self.run
        if run is None:
            return
        label = f"{run['workflow_id']} {short_id(run['run_id'])}"
        if run["status"] == "waiting":
            yield (answer_name(run), "Open the form", self.action_answer)
        if run["status"] in ACTIVE:
            yield (f"Cancel run {label}", "With a reason", self.action_cancel)
        if run["status"] == "failed":
            yield (f"Retry run {label}", "From a step", self.action_retry)
        if run["status"] in ("completed", "failed", "cancelled"):
            yield (f"Delete run {label}", "Remove it for good", self.action_delete)
        view = self.log_pane.log_view
        yield ("Toggle log wrap", "Wrap long lines", view.action_toggle_wrap)
        yield ("Follow the log", "Jump to the end and follow", view.action_follow)
        for tab, name in (
            ("tab-log", "Log"),
            ("tab-outputs", "Outputs"),
            ("tab-events", "Events"),
            ("tab-checkpoints", "Checkpoints"),
            ("tab-details", "Details"),
        ):
            yield (f"Show {name}", "Run view tab", partial(self.action_tab, tab))


def _plan_of(path: str | None) -> list[tuple[str, str]]:
    """(id, kind) of the workflow's top-level steps; [] when the file cannot be read."""
    from core.envelope import CpfError
    from core.workflow.loader import load_workflow

    if not path:
        return []
    try:
        # `remember`: the file was validated when the run started (no jsonschema again).
        steps = load_workflow(path, remember=True).steps
        return [(str(s["id"]), str(s.get("kind", ""))) for s in steps]
    except (CpfError, OSError, KeyError):
        return []


def _at(state: Any, path: str) -> Any:
    """The value at a statediff leaf path (`a.b[0].c`) or None."""
    import re

    current = state
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            current = current[int(index)] if index else current[key]
        except (KeyError, IndexError, TypeError):
            return None
    return current


def _pretty(value: Any, limit: int = 4000) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> JSON:
    """Highlighted JSON that wraps long strings at the pane edge instead of cutting them."""
    view = JSON.from_data(value)
    view.text.no_wrap = False
    view.text.overflow = "fold"
    return view


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
