"""Leaf-path diff between two JSON states (SnapState `diff_from_previous`, contract §6.3).

Paths join object keys with `.` and write array indexes as `[i]`; empty containers
are not leaves; a container replaced by a scalar (or back) is one `changed` entry.
"""

from __future__ import annotations

from typing import Any

_EMPTY = object()


def _is_container(v: Any) -> bool:
    return isinstance(v, dict | list)


def _leaves(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _leaves(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _leaves(v, f"{path}[{i}]", out)
    else:
        out[path] = value


def _same_scalar(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def leaf_diff(previous: Any, current: Any) -> dict[str, list[str]]:
    """Return {"added": [...], "removed": [...], "changed": [...]} leaf paths."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if a is _EMPTY:
            leaves: dict[str, Any] = {}
            _leaves(b, path, leaves)
            added.extend(leaves)
            return
        if b is _EMPTY:
            leaves = {}
            _leaves(a, path, leaves)
            removed.extend(leaves)
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k, v in b.items():
                walk(a.get(k, _EMPTY), v, f"{path}.{k}" if path else str(k))
            for k, v in a.items():
                if k not in b:
                    walk(v, _EMPTY, f"{path}.{k}" if path else str(k))
            return
        if isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                walk(a[i] if i < len(a) else _EMPTY, b[i] if i < len(b) else _EMPTY, f"{path}[{i}]")
            return
        if _is_container(a) or _is_container(b):
            changed.append(path)
            return
        if not _same_scalar(a, b):
            changed.append(path)

    walk(_EMPTY if previous is None else previous, current, "")
    return {"added": added, "removed": removed, "changed": changed}
