"""Key hints in one wording ("a: answer", "3: Waiting"), with the key that is bound now
(a keymap in the settings may have changed it), so no hint names a key that does not
do what it says."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding


def key_for(app: Any, binding_id: str, default: str) -> str:
    """The key bound to `binding_id`, as the footer shows it."""
    keymap: dict[str, str] = getattr(app, "_keymap", None) or {}
    keys = keymap.get(binding_id) or default
    return str(app.get_key_display(Binding(keys.split(",")[0].strip(), "")))


def hint(app: Any, binding_id: str, default: str, what: str) -> str:
    """`key: what`, the one wording of every key hint outside the footer."""
    return f"{key_for(app, binding_id, default)}: {what}"
