"""Navigation requests from screens to the app, as messages.

The app owns the screen stack and imports the screens; screens ask for another screen by
posting one of these to the app (never by importing `cpf_tui.app`). They are posted to
the app itself, so a screen may close right after asking.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump


class OpenRun(Message):
    """Open the run view of `run_id` (`spawned`: the process starting it, if any) over
    the current screen, or in place of `replace` when that is the current screen."""

    def __init__(self, run_id: str, spawned: Any = None, replace: Any = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.spawned = spawned
        self.replace = replace


class OpenApproval(Message):
    """Open the answer form of a waiting run."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class StartWorkflow(Message):
    """Open the inputs form of a workflow file (`cpf_tui.workflows.WorkflowFile`)."""

    def __init__(self, wf_file: Any) -> None:
        super().__init__()
        self.wf_file = wf_file


def open_run(node: MessagePump, run_id: str, *, spawned: Any = None, replace: Any = None) -> None:
    node.app.post_message(OpenRun(run_id, spawned, replace))


def open_approval(node: MessagePump, run_id: str) -> None:
    node.app.post_message(OpenApproval(run_id))


def start_workflow(node: MessagePump, wf_file: Any) -> None:
    node.app.post_message(StartWorkflow(wf_file))
