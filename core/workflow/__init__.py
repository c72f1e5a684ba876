"""Workflow documents: loading (`loader`), schema and checks (`validation`, `schema.json`).

`load_workflow` and `LoadedWorkflow` are re-exported lazily so importing the package
costs nothing until one of them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.workflow.loader import LoadedWorkflow, load_workflow, load_workflow_text

__all__ = ["LoadedWorkflow", "load_workflow", "load_workflow_text"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from core.workflow import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
