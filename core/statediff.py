"""Leaf-path diff between two JSON states (SnapState `diff_from_previous`, contract §6.3).

Paths join object keys with `.` and write array indexes as `[i]`; empty containers
are not leaves; a container replaced by a scalar (or back) is one `changed` entry.
Identical subtrees are skipped at C speed (`==`, then the serialized texts), so
checkpointing a large state that changed a little stays cheap.
"""

from __future__ import annotations

import json
from typing import Any


def _dump(value: Any) -> bytes:
    try:
        import orjson

        return orjson.dumps(value)
    except (ImportError, TypeError):  # no orjson, or an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def same_json(a: Any, b: Any) -> bool:
    """True when two JSON values are identical, types included (1, 1.0 and true differ).

    `==` runs in C and settles most unequal pairs; when it says equal, comparing the
    serialized texts (also C) rules out the int/float/bool mix-ups `==` forgives."""
    if a is b:
        return True
    if type(a) is not type(b) or a != b:
        return False
    return _dump(a) == _dump(b)


def _leaf_paths(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _leaf_paths(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _leaf_paths(v, f"{path}[{i}]", out)
    else:
        out.append(path)


def leaf_diff(previous: Any, current: Any) -> dict[str, list[str]]:
    """Return {"added": [...], "removed": [...], "changed": [...]} leaf paths, in walk
    (key-insertion) order; `previous` None lists every leaf of `current` as added."""
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k, v in b.items():
                sub = f"{path}.{k}" if path else str(k)
                if k not in a:
                    _leaf_paths(v, sub, added)
                elif not same_json(a[k], v):
                    walk(a[k], v, sub)
            for k, v in a.items():
                if k not in b:
                    _leaf_paths(v, f"{path}.{k}" if path else str(k), removed)
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                sub = f"{path}[{i}]"
                if i >= len(a):
                    _leaf_paths(b[i], sub, added)
                elif i >= len(b):
                    _leaf_paths(a[i], sub, removed)
                elif not same_json(a[i], b[i]):
                    walk(a[i], b[i], sub)
        else:
            # A container replaced by a scalar (or the reverse), or a different scalar.
            changed.append(path)

    if previous is None:
        _leaf_paths(current, "", added)
    elif not same_json(previous, current):
        walk(previous, current, "")
    return {"added": added, "removed": removed, "changed": changed}
