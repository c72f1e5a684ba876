"""Start a run: a form generated from the workflow's `inputs` schema.

On submit the inputs are checked with the engine's validator (the one `cpf run` uses),
then a detached `cpf run` process starts the run and the run view opens and follows it.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from cpf_tui.nav import open_run
from cpf_tui.screens.base import CpfScreen
from cpf_tui.screens.dialogs import ConfirmDialog
from cpf_tui.widgets.footer import KeyFooter
from cpf_tui.widgets.formhost import make_form
from cpf_tui.widgets.topbar import TopBar
from cpf_tui.work import off_thread, track


class StartRunScreen(CpfScreen):
    HELP = """\
**Start a run.** Fill in the workflow's inputs (the form is generated from its
`inputs` schema; required fields are marked). `ctrl+s` starts the run: the inputs are
validated exactly as `cpf run` does, then the run executes in its own `cpf` process
and the run view opens. `escape` goes back (asking first if you typed something).
"""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Start run", id="form.submit", priority=True),
        Binding("escape", "back", "Back", id="form.back"),
    ]

    def __init__(self, wf_file: Any) -> None:
        super().__init__()
        self.wf_file = wf_file
        self.wf = wf_file.workflow
        self.spawned: Any = None
        self._submitting = False

    def compose(self) -> ComposeResult:
        yield TopBar()
        with Vertical(id="start-body"):
            yield Static(self._head(), id="start-head")
            yield make_form(self.wf.inputs_schema, id="inputs-form")
            with Horizontal(classes="form-buttons"):
                yield Button("Back", id="back", compact=True)
                yield Button("Start run  ctrl+s", id="submit", variant="primary", compact=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(TopBar).where = f"start {self.wf.id}"
        self.call_after_refresh(self._focus_first)
        self.run_worker(self._warm(), group="start-warm")

    async def _warm(self) -> None:
        """Import the inputs validator while the form is filled in, not on ctrl+s."""
        from importlib import import_module

        for name in ("core.payload", "jsonschema", "core.spawn"):
            await off_thread(import_module, name)

    def _focus_first(self) -> None:
        form = self.query_one("#inputs-form")
        for widget in form.query("*"):
            if widget.focusable:
                widget.focus(scroll_visible=False)
                form.scroll_home(animate=False, immediate=True)
                return
        self.query_one("#submit", Button).focus()

    def _head(self) -> Text:
        text = Text()
        text.append(f"Start {self.wf.name or self.wf.id}", style="bold")
        text.append(f"   {self.wf.id}", style="dim")
        if self.wf.description:
            text.append(f"\n{self.wf.description}")
        return text

    # -- submit --------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        elif event.button.id == "back":
            self.action_back()

    def action_submit(self) -> None:
        if not self._submitting:
            self.run_worker(self._submit(), group="submit", exclusive=True)

    async def _submit(self) -> None:
        from core import engine, queries, spawn

        form: Any = self.query_one("#inputs-form")
        payload, errors = form.collect()
        if not errors:
            errors = await off_thread(queries.check_inputs, self.wf.inputs_schema, payload)
        form.show_errors(errors)
        if errors:
            return
        self._submitting = True
        self.query_one("#submit", Button).disabled = True
        spawned = await off_thread(
            spawn.spawn_run, self.wf.path, payload, actor=engine.default_actor()
        )
        track(self, spawned, "run")
        # The run view replaces this form and follows the run from its first line.
        open_run(self, spawned.run_id, spawned=spawned, replace=self)

    def action_back(self) -> None:
        form: Any = self.query_one("#inputs-form")
        if getattr(form, "dirty", False):
            self.app.push_screen(
                ConfirmDialog("Discard the inputs?", "What you typed is lost.", confirm="Discard"),
                lambda ok: self.app.pop_screen() if ok else None,
            )
        else:
            self.app.pop_screen()


def command_for(path: Any, payload: Any) -> str:
    """The headless command doing the same (teaches the CLI)."""
    return f"cpf run -f {shlex.quote(str(path))} --input {shlex.quote(json.dumps(payload))}"
