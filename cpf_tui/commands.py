"""The command palette (ctrl+p): the app's own commands next to Textual's system ones.

Commands come from the screen under the palette (`context_commands()`: cancel/retry/delete
this run, toggle wrap, ...) and from the app (areas, every startable workflow, waiting
runs to answer). Names are built here, once per kind of command, so the same command
offered by a screen and by the app has the same name and is listed once. Themes come from
the system "Theme" command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from cpf_tui.nav import open_approval, start_workflow
from cpf_tui.work import off_thread

Command = tuple[str, str, Callable[[], Any]]


def start_name(wf_file: Any) -> str:
    """The palette name of starting a run of a workflow file."""
    return f"Start run: {wf_file.title} ({wf_file.workflow.id})"


def answer_name(run: dict[str, Any]) -> str:
    """The palette name of answering a waiting run."""
    wait = run.get("wait") or {}
    step = wait.get("step_id") or run.get("current_step_id")
    return f"Answer: {run.get('workflow_id')} · {step} ({run['run_id'][:8]})"


def scan_workflows(paths: list[Path]) -> list[Any]:
    """Every workflow file under `paths`, checked (what the Workflows area shows)."""
    from cpf_tui.workflows import check, discover

    explicit = {p.resolve() for p in paths if p.is_file()}
    files = [check(p, explicit=p in explicit) for p in discover(paths)]
    return [wf for wf in files if wf.state != "other"]


class CpfCommands(Provider):
    async def startup(self) -> None:
        app: Any = self.app
        # The Workflows area lists the files once it is opened; before that (the app
        # started in another area) the palette finds them itself.
        if not getattr(app, "workflow_files", None) and hasattr(app, "paths"):
            app.workflow_files = await off_thread(scan_workflows, list(app.paths))

    def _commands(self) -> Iterator[Command]:
        app: Any = self.app
        screen: Any = self.screen
        seen: set[str] = set()
        for name, help_text, callback in self._all(app, screen):
            key = name.casefold()
            if key not in seen:
                seen.add(key)
                yield name, help_text, callback

    def _all(self, app: Any, screen: Any) -> Iterator[Command]:
        context = getattr(screen, "context_commands", None)
        if callable(context):
            yield from context()
        yield ("Go to Workflows", "Browse workflow files", partial(app.action_area, "workflows"))
        yield ("Go to Runs", "All runs, live", partial(app.action_area, "runs"))
        yield ("Go to Waiting", "Runs waiting for input", partial(app.action_area, "waiting"))
        for row in getattr(app, "waiting", []):
            wait = row.get("wait") or {}
            yield (
                answer_name(row),
                f"Open the form for '{wait.get('event_name')}'",
                partial(open_approval, app, row["run_id"]),
            )
        for wf in getattr(app, "workflow_files", []):
            if wf.workflow is not None:
                yield (start_name(wf), str(wf.path), partial(start_workflow, app, wf))
        yield ("Help", "Keys and what this screen does", app.action_help)

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, text=name, help=help_text)
