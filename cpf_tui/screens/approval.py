"""Answer a waiting run: prompt and summary (markdown) beside the log of the step before,
and a form generated from the step's `input_schema`.

Submitting validates with `queries.check_event` (the validator `cpf resume` uses; errors
go to their fields and to a summary), asks for the step id when `risk_level` is high,
then resumes the run in a detached `cpf resume` process with actor = the OS user and
surface `tui`. The run view then follows the run.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Button, Markdown, Static

from cpf_tui.clock import ago
from cpf_tui.feed import LogFeed
from cpf_tui.look import palette, short_id
from cpf_tui.nav import open_run
from cpf_tui.screens.base import CpfScreen
from cpf_tui.screens.dialogs import ConfirmDialog, TypeToConfirmDialog
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.formhost import make_form
from cpf_tui.widgets.line import Line
from cpf_tui.widgets.logpane import LogPane
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.work import off_thread, track


class ApprovalScreen(CpfScreen):
    HELP = """\
**Answer a waiting run.** The prompt and summary of the waiting step are shown beside
the output of the step before it. Fill in the form (generated from the step's
`input_schema`; the raw-JSON editor covers anything the form cannot express) and press
`ctrl+s`. The answer is validated exactly as `cpf resume` does; problems appear at their
field and in a summary, and nothing is sent. Steps with `risk_level: high` ask you to
type the step id. `escape` leaves (asking first if you changed something). Your OS user
is recorded as the actor, with surface `tui`.
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Submit", id="form.submit", priority=True),
        Binding("escape", "back", "Back", id="form.back"),
        Binding("ctrl+l", "focus_log", "Log", show=False, id="form.log"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.feed: LogFeed | None = None
        self.loaded = False
        self._submitting = False

    def compose(self) -> ComposeResult:
        yield TopBar()
        yield Line("", id="answer-head")
        with Horizontal(id="answer-context"):
            with VerticalScroll(id="answer-prompt"):
                yield Markdown("", id="answer-markdown")
            app: Any = self.app
            yield LogPane(
                max_lines=app.config.log_max_lines,
                empty_text="(no output from the step before)",
                id="answer-log",
            )
        with Vertical(id="answer-form-area"):
            yield Vertical(id="form-slot")
            with Horizontal(classes="form-buttons"):
                yield Static("", id="answer-command", classes="command-hint")
                yield Button("Back", id="back", compact=True)
                yield Button("Submit  ctrl+s", id="submit", variant="primary", compact=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(TopBar).where = f"answer run {short_id(self.run_id)}"
        self.run_worker(self._load(), group="answer-load")
        self.set_interval(0.5, self._tick)

    async def _load(self) -> None:
        try:
            await self._load_run()
        except NoMatches:
            if self in self.app.screen_stack:
                raise
            # Left before it was built (escape typed right after enter): nothing to show.

    async def _load_run(self) -> None:
        from core import queries

        run = await off_thread(queries.get_run, self.run_id)
        if run is None or run["status"] != "waiting":
            self.loaded = True
            state = "not found" if run is None else run["status"]
            self.query_one("#answer-head", Line).update(
                Text(f"Run {short_id(self.run_id)} is not waiting (it is {state}).", "bold")
            )
            self.query_one("#submit", Button).disabled = True
            return
        self.run = run
        wait = run.get("wait") or {}
        attempts = await off_thread(queries.attempts, self.run_id)
        before = _step_before(attempts, wait.get("step_id"))
        self._render_head()
        md = []
        if wait.get("summary"):
            summary = str(wait["summary"])
            md.append(summary if "\n" in summary else f"**{summary}**")
        if wait.get("prompt"):
            md.append(str(wait["prompt"]))
        await self.query_one("#answer-markdown", Markdown).update(
            "\n\n".join(md) or "*(no prompt)*"
        )
        pane = self.query_one("#answer-log", LogPane)
        pane.log_view.wrap = True  # a narrow pane: no sideways scrolling
        if before is not None:
            pane.border_title = f"output of {before['step_id']}"
            self.feed = LogFeed(pane, self.run_id, attempt_id=before["id"])
            await self.feed.load()
        else:
            pane.border_title = "no step before"
        form = make_form(wait.get("input_schema") or {}, id="answer-form")
        await self.query_one("#form-slot", Vertical).mount(form)
        self.query_one("#answer-command", Static).update(
            Text(
                f"$ cpf resume --run-id {self.run_id} --event {wait.get('event_name')} "
                "--input @event.json",
                style="dim",
                no_wrap=True,
                overflow="ellipsis",
            )
        )
        self.call_after_refresh(self._ready)

    def _ready(self) -> None:
        form = self.query_one("#answer-form")
        for widget in form.query("*"):
            if widget.focusable:
                widget.focus(scroll_visible=False)
                break
        form.scroll_home(animate=False, immediate=True)  # the first label stays in view
        self.loaded = True

    def _render_head(self) -> None:
        run = self.run
        if run is None:
            return
        wait = run.get("wait") or {}
        theme = palette(self.app)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("Answer ", style="bold")
        text.append(f"'{wait.get('event_name')}'", style=f"bold {theme.accent}")
        text.append(f"  {run['workflow_id']} · step {wait.get('step_id')}")
        text.append(f"  · waiting {ago(run.get('updated_at'), self.now).removesuffix(' ago')}")
        text.append(f"  · for {wait.get('audience') or 'user'}", style="dim")
        if wait.get("risk_level"):
            risk = wait["risk_level"]
            style = f"bold {theme.error}" if risk == "high" else theme.warning
            text.append(f"  risk: {risk}", style=style)
        if wait.get("timeout_at"):
            text.append(f"  · times out {wait['timeout_at']}", style="dim")
        self.query_one("#answer-head", Line).update(text)

    async def _tick(self) -> None:
        """Follow the log of the step before; notice when the run stops waiting."""
        if not self.is_current or not self.loaded or self.run is None or self._submitting:
            return
        from core import queries

        if self.feed is not None:
            await self.feed.poll()
        run = await off_thread(queries.get_run, self.run_id)
        if self not in self.app.screen_stack or self.run is None:
            return  # left, or answered, while the store was read
        if run is None or run["status"] != "waiting" or run.get("version") != self.run["version"]:
            state = "deleted" if run is None else run["status"]
            self.run = None
            self.query_one("#submit", Button).disabled = True
            self.query_one("#answer-head", Line).update(
                Text(
                    f"This run is no longer waiting for this answer (now {state}): "
                    "someone else answered or cancelled it.",
                    style=f"bold {palette(self.app).warning}",
                )
            )

    # -- submit --------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        elif event.button.id == "back":
            self.action_back()

    def action_submit(self) -> None:
        if self.run is not None and not self._submitting:
            self.run_worker(self._submit(), group="submit", exclusive=True)

    async def _submit(self) -> None:
        from core import engine, queries, spawn

        run = self.run
        assert run is not None
        wait = run.get("wait") or {}
        form: Any = self.query_one("#answer-form")
        payload, errors = form.collect()
        if not errors:
            errors = await off_thread(queries.check_event, run, payload)
        form.show_errors(errors)
        if errors:
            return
        if wait.get("risk_level") == "high":
            step = str(wait.get("step_id"))
            ok = await self.app.push_screen_wait(
                TypeToConfirmDialog(
                    "High-risk step",
                    f"Type the step id [b]{step}[/b] to send this answer:\n{_short_json(payload)}",
                    step,
                    confirm="Send answer",
                )
            )
            if not ok:
                return
        self._submitting = True
        self.query_one("#submit", Button).disabled = True
        spawned = await off_thread(
            spawn.spawn_resume,
            self.run_id,
            wait["event_name"],
            payload,
            actor=engine.default_actor(),
        )
        app = self.app
        track(self, spawned, "resume")
        app.notify(
            f"Answer sent to {run['workflow_id']} ({short_id(self.run_id)}).",
            title="Resumed",
        )
        # Back to the run (under this screen when opened from the run view).
        from cpf_tui.screens.run_view import RunScreen

        app.pop_screen()
        below = app.screen
        if isinstance(below, RunScreen) and below.run_id == self.run_id:
            below.control_done(self.run_id)
        else:
            open_run(self, self.run_id, spawned=spawned)

    def action_back(self) -> None:
        form: Any = self.query("#answer-form")
        dirty = bool(form) and getattr(form.first(), "dirty", False)
        if dirty and not self._submitting:
            self.app.push_screen(
                ConfirmDialog(
                    "Discard your answer?",
                    "The run keeps waiting; what you entered is lost.",
                    confirm="Discard",
                    danger=True,
                ),
                lambda ok: self.app.pop_screen() if ok else None,
            )
        else:
            self.app.pop_screen()

    def shows_waiting(self, run_id: str) -> bool:
        return run_id == self.run_id

    def action_focus_log(self) -> None:
        self.query_one("#answer-log", LogPane).log_view.focus()


def _step_before(attempts: list[dict[str, Any]], waiting_step: str | None) -> dict[str, Any] | None:
    """The last attempt that ran before the waiting one, at the same level."""
    waiting = [a for a in attempts if a["step_id"] == waiting_step and a["status"] == "waiting"]
    anchor = waiting[-1] if waiting else None
    earlier = [
        a
        for a in attempts
        if a["step_id"] != waiting_step
        and (anchor is None or a["seq"] < anchor["seq"])
        and (anchor is None or a.get("parent_id") == anchor.get("parent_id"))
    ]
    return earlier[-1] if earlier else None


def _short_json(payload: Any, limit: int = 200) -> str:
    from rich.markup import escape

    text = json.dumps(payload, ensure_ascii=False)
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")
