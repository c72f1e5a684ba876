"""The command palette (ctrl+p): the app's own commands next to Textual's system ones.

Commands come from the app (areas, workflows to run, waiting runs to answer, recent runs)
and from the screen under the palette (`context_commands()`: cancel/retry/delete this run,
toggle wrap, ...). Themes come from the system "Theme" command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

Command = tuple[str, str, Callable[[], Any]]


class CpfCommands(Provider):
    def _commands(self) -> Iterator[Command]:
        app: Any = self.app
        screen: Any = self.screen
        context = getattr(screen, "context_commands", None)
        if callable(context):
            yield from context()
        yield ("Go to Workflows", "Browse workflow files", partial(app.action_area, "workflows"))
        yield ("Go to Runs", "All runs, live", partial(app.action_area, "runs"))
        yield ("Go to Waiting", "Runs waiting for input", partial(app.action_area, "waiting"))
        for row in getattr(app, "waiting", []):
            wait = row.get("wait") or {}
            yield (
                f"Answer waiting run: {row.get('workflow_id')} · {wait.get('step_id')} "
                f"({row['run_id'][:8]})",
                f"Open the form for '{wait.get('event_name')}'",
                partial(app.open_approval, row["run_id"]),
            )
        for wf in getattr(app, "workflow_files", []):
            if wf.workflow is not None:
                yield (
                    f"Run workflow: {wf.title} ({wf.workflow.id})",
                    str(wf.path),
                    partial(app.start_workflow, wf),
                )
        yield (
            "Switch theme",
            "Pick a colour theme (also: theme: in the settings)",
            app.search_themes,
        )
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
