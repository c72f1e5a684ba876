"""Step kinds: one module per kind, one entry point each, found by `kind` name.

A kind receives a `StepContext` and returns a `StepOutcome`; it never touches the
store (the runner records attempts, output and transitions). Modules are imported
on first use so a workflow of `cli` steps never loads the `api` kind's httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from core.steps.base import StepContext, StepOutcome

Handler = Callable[[StepContext], StepOutcome]

# kind -> "module:function". New kinds plug in here; the runner has one loop for all.
KINDS: dict[str, str] = {
    "cli": "core.steps.cli:run",
    "await_event": "core.steps.await_event:run",
    "end": "core.steps.end:run",
    "api": "core.steps.api:run",
    "switch": "core.steps.switch:run",
    "foreach": "core.steps.foreach:run",
    "parallel": "core.steps.parallel:run",
    "workflow": "core.steps.workflow:run",
}

_loaded: dict[str, Handler] = {}


def handler_for(kind: str) -> Handler | None:
    if kind in _loaded:
        return _loaded[kind]
    target = KINDS.get(kind)
    if target is None:
        return None
    module, func = target.split(":")
    fn: Handler = getattr(importlib.import_module(module), func)
    _loaded[kind] = fn
    return fn


__all__ = ["KINDS", "Handler", "StepContext", "StepOutcome", "handler_for"]
