"""The cpf Textual app: three areas (Workflows, Runs, Waiting) and the screens they open.

The app talks to the engine only through `core.queries`, `core.spawn` and `core.engine`
(never SQL); every call runs in a worker thread (`off_thread`) so the UI never blocks.
Runs are executed by detached `cpf` processes, so closing the app never stops a run.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import Notification, Notify
from textual.reactive import var
from textual.screen import Screen

from cpf_tui.clock import Clock, system_clock
from cpf_tui.commands import CpfCommands
from cpf_tui.config import TuiConfig, load_config
from cpf_tui.css import APP_CSS
from cpf_tui.hints import hint
from cpf_tui.keys import KeysInOrder
from cpf_tui.nav import OpenApproval, OpenRun, StartWorkflow
from cpf_tui.prebuild import build_hidden, settle_hidden, wait_quiet
from cpf_tui.work import Track, off_thread


@dataclass(frozen=True)
class Area:
    """A top-level area: a mode with its own screen stack, a key and a top-bar tab."""

    name: str
    key: str
    label: str
    screen: str  # "module:Class", imported when the app starts


AREAS = (
    Area("workflows", "1", "Workflows", "cpf_tui.screens.workflows:WorkflowsScreen"),
    Area("runs", "2", "Runs", "cpf_tui.screens.runs:RunsScreen"),
    Area("waiting", "3", "Waiting", "cpf_tui.screens.waiting:WaitingScreen"),
    Area("checkpoints", "4", "Checkpoints", "cpf_tui.screens.checkpoints:CheckpointsScreen"),
)

# Seconds the UI is left alone before each step of building a hidden screen; and how
# long no key must have been typed (keys typed fast keep their order and speed).
IDLE_SLICE = 0.05
QUIET_FOR = 0.5
# Checkpoints first: its first read opens the checkpoint store, importing the ORM in a
# thread (~1 s), while the others are built.
BUILD_ORDER = ("checkpoints", "runs", "waiting", "workflows")


class CpfApp(KeysInOrder[None]):
    CSS = APP_CSS
    TITLE = "cpf"
    COMMANDS = App.COMMANDS | {CpfCommands}
    AREAS: ClassVar[tuple[Area, ...]] = AREAS
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(a.key, f"area('{a.name}')", a.label, show=False, id=f"app.{a.name}")
            for a in AREAS
        ),
        Binding("f1,question_mark", "help", "Help", id="app.help"),
        Binding("f8", "screenshot", "Screenshot", show=False, id="app.screenshot"),
    ]

    waiting: var[list[dict[str, Any]]] = var(list, init=False)

    def __init__(
        self,
        paths: Sequence[str | Path] = (".",),
        *,
        clock: Clock | None = None,
        config: TuiConfig | None = None,
        waiting_poll: float = 1.0,
        start_area: str | None = None,
    ) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths] or [Path(".")]
        self.clock: Clock = clock or system_clock
        self.config = config if config is not None else load_config()
        self.waiting_poll = waiting_poll
        self.start_area = start_area
        self.workflow_files: list[Any] = []  # cpf_tui.workflows.WorkflowFile, once checked
        self._tracked: list[Track] = []
        self._waiting_seen: set[str] | None = None  # None until the first poll
        self._waiting_busy = False
        self._announced: dict[str, Notification] = {}  # run id -> its "needs input" toast
        self.store_error: str | None = None
        self.warmed = False  # the hidden screens are built (or their warm-up gave up)

    # -- start-up ------------------------------------------------------------------------

    def on_mount(self) -> None:
        from importlib import import_module

        def make(spec: str) -> Any:
            module, _, name = spec.partition(":")
            return getattr(import_module(module), name)()

        # Start-up pays only for the first screen; `_warm` builds the others (hidden)
        # once the first screen is up, or an area's first showing does.
        for area in self.AREAS:
            self.add_mode(area.name, partial(make, area.screen))
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        else:
            self.config.problems.append(f"unknown theme '{self.config.theme}'")
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        for problem in self.config.problems:
            self.notify(problem, title="Settings", severity="warning", timeout=8)
        self.switch_mode(self.start_area or "workflows")
        # Everything built so far lives as long as the app: keep it out of the garbage
        # collector's full passes, which otherwise pause the UI during log floods.
        self.set_timer(1.0, gc.freeze)
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.set_interval(self.waiting_poll, self._poll_waiting)
        self.set_interval(0.25, self._poll_spawned)
        self.call_later(self._poll_waiting)  # the waiting badge from the first screen on
        self._warm_ticks = 0
        self._warm_timer = self.set_interval(0.1, self._warm)

    def _warm(self) -> None:
        self._warm_ticks += 1
        if not getattr(self.screen, "loaded", True) and self._warm_ticks < 20:
            return  # the first screen is still being filled (up to 2 s): let it
        # Stopping a timer cancels its task: the warm-up itself runs in a worker (run
        # inside this callback, it died at its first await).
        self._warm_timer.stop()
        # A failed warm-up leaves the first switch to build the screen, as without it.
        self.run_worker(self._warm_up(), group="warm-up", exit_on_error=False)

    async def _warm_up(self) -> None:
        """While the user looks at the first screen: build the other areas' screens
        (hidden, their modules imported in a worker thread) and let them read their
        data, so the first switch to an area only shows it, like every later one; and
        import what the run view and the forms need."""
        try:
            await self._warm_areas()
        finally:
            self.warmed = True

    async def _warm_areas(self) -> None:
        from importlib import import_module

        quiet = partial(self.input_quiet_for, QUIET_FOR)
        for name in [a.screen.partition(":")[0] for a in self.AREAS]:
            await wait_quiet(quiet, IDLE_SLICE)
            await off_thread(import_module, name)
        for name in BUILD_ORDER:  # one at a time, the UI free in between
            await build_hidden(self, name, idle=IDLE_SLICE, data_within=0.2, quiet=quiet)
        gc.freeze()  # the screens just built live as long as the app, as at start-up
        # What the run view and the forms need. Each import waits for a pause in the
        # typing too: in a thread it still slows the UI (the GIL) while it runs.
        modules = ["cpf_tui.screens.run_view", "cpf_tui.screens.approval", "core.queries"]
        modules += ["cpf_tui.screens.start", "cpf_tui.forms.form", "core.spawn"]
        for name in modules:
            await wait_quiet(quiet, IDLE_SLICE)
            await off_thread(import_module, name)
        for name in BUILD_ORDER:  # laid out again if their data changed them
            await settle_hidden(self, name, idle=IDLE_SLICE, data_within=5.0, quiet=quiet)
        gc.freeze()  # and the modules imported meanwhile

    # -- areas and help ------------------------------------------------------------------

    def action_area(self, name: str) -> None:
        leave = getattr(self.screen, "can_leave", None)
        if callable(leave) and not leave():
            send = hint(self, "form.submit", "ctrl+s", "send")
            discard = hint(self, "form.back", "escape", "discard")
            self.notify(f"The form has unsent changes.  {send}  {discard}", severity="warning")
            return
        if self.current_mode != name:
            self.switch_mode(name)
        elif len(self.screen_stack) > 1:
            # Pressing the area key again goes back to the area's own list.
            while len(self.screen_stack) > 1:
                self.pop_screen()

    def action_help(self) -> None:
        from cpf_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen, self.focused))

    # -- opening things ------------------------------------------------------------------

    def open_run(self, run_id: str, *, spawned: Any = None, replace: Any = None) -> None:
        from cpf_tui.screens.run_view import RunScreen

        view = RunScreen(run_id, spawned=spawned)
        if replace is not None and replace is self.screen:
            # In place of the start form: the screen below is not shown (and drawn) in
            # between.
            self.switch_screen(view)
        else:
            self.push_screen(view)

    def open_approval(self, run_id: str) -> None:
        from cpf_tui.screens.approval import ApprovalScreen

        self.push_screen(ApprovalScreen(run_id))

    def start_workflow(self, wf_file: Any) -> None:
        from cpf_tui.screens.start import StartRunScreen

        self.push_screen(StartRunScreen(wf_file))

    def on_open_run(self, message: OpenRun) -> None:
        self.open_run(message.run_id, spawned=message.spawned, replace=message.replace)

    def on_open_approval(self, message: OpenApproval) -> None:
        self.open_approval(message.run_id)

    def on_start_workflow(self, message: StartWorkflow) -> None:
        self.start_workflow(message.wf_file)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Our "Help" lists the keys of the focused context: Textual's "Keys" would be a
        # second entry for the same thing.
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command

    # -- detached executors ----------------------------------------------------------------

    def track(
        self,
        spawned: Any,
        what: str,
        on_done: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        """Watch a spawned `cpf` process until it exits (and reap it)."""
        self._tracked.append(Track(spawned, what, on_done))

    def on_track(self, message: Track) -> None:
        self._tracked.append(message)

    def _poll_spawned(self) -> None:
        still = []
        for item in self._tracked:
            if item.spawned.process.poll() is None:
                still.append(item)
                continue
            envelope = item.spawned.envelope()
            if item.on_done is not None:
                item.on_done(envelope)
            else:
                self.report_envelope(item.what, envelope)
        self._tracked = still

    def report_envelope(self, what: str, envelope: dict[str, Any] | None) -> None:
        """A toast for how a spawned executor ended (errors only; success is on screen)."""
        if envelope is None:
            self.notify(f"The cpf {what} process ended without a result.", severity="error")
            return
        error = envelope.get("error") or {}
        # A step that failed shows in the run view; refusals of the command itself
        # (invalid input 10, not waiting 20, store 60, race 70, internal 90) do not.
        if envelope.get("ok") is False and envelope.get("exit_code") in (10, 20, 60, 70, 90):
            self.notify(
                f"{error.get('code', 'error')}: {error.get('message', '')}",
                title=f"cpf {what}",
                severity="error",
                timeout=10,
            )

    # -- waiting runs ----------------------------------------------------------------------

    @property
    def waiting_polled(self) -> bool:
        """True once the store answered the first poll for waiting runs (or failed to)."""
        return self._waiting_seen is not None or self.store_error is not None

    async def _poll_waiting(self) -> None:
        if self._waiting_busy:
            return
        self._waiting_busy = True
        try:
            from core import queries

            rows = await off_thread(queries.run_summaries, status="waiting")
        except Exception as exc:  # a store we cannot read: say so once, keep polling
            message = " ".join(str(exc).split())
            if message != self.store_error:
                self.store_error = message
                self.notify(message, title="Store", severity="error", timeout=10)
            return
        finally:
            self._waiting_busy = False
        self.store_error = None
        rows.sort(key=lambda r: r.get("updated_at") or "")
        ids = {r["run_id"] for r in rows}
        if self._waiting_seen is not None:
            for row in rows:
                if row["run_id"] not in self._waiting_seen:
                    self._announce(row)
        self._waiting_seen = ids
        if rows != self.waiting:
            self.waiting = rows

    def _announce(self, row: dict[str, Any]) -> None:
        if self.config.bell:
            self.bell()
        run_id = row["run_id"]
        if self._shows_waiting(self.screen, run_id):
            return  # the screen already says so (this run's view or form, the Waiting list)
        wait = row.get("wait") or {}
        step = wait.get("step_id") or row.get("current_step_id")
        name = row.get("workflow_name") or row.get("workflow_id")
        toast = Notification(
            f"{name} waits at '{step}' for '{wait.get('event_name')}'.  "
            + hint(self, "app.waiting", "3", "Waiting"),
            title="A run needs input",
            severity="warning",
            timeout=8,
        )
        self._announced[run_id] = toast
        self.post_message(Notify(toast))

    @staticmethod
    def _shows_waiting(screen: Screen[Any], run_id: str) -> bool:
        shows = getattr(screen, "shows_waiting", None)
        return bool(callable(shows) and shows(run_id))

    def _screen_changed(self, screen: Screen[Any]) -> None:
        """Withdraw the toast of a run once its view, its form or the Waiting list shows."""
        for run_id, toast in list(self._announced.items()):
            if toast.has_expired:
                del self._announced[run_id]
            elif self._shows_waiting(screen, run_id):
                del self._announced[run_id]
                self._unnotify(toast)
