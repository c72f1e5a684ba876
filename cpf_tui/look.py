"""How statuses look everywhere: one icon and one theme colour per status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text

ICONS = {
    "created": "○",
    "running": "▶",
    "waiting": "‖",
    "completed": "✓",
    "failed": "✗",
    "cancelled": "⊘",
    "skipped": "·",
    "pending": "○",
}


class Palette:
    """The current theme's resolved colours (Theme fields may be None; these never are)."""

    def __init__(self, app: Any) -> None:
        v = app.theme_variables
        self.primary = v["primary"]
        self.secondary = v["secondary"]
        self.accent = v["accent"]
        self.success = v["success"]
        self.warning = v["warning"]
        self.error = v["error"]
        self.background = v["background"]
        self.foreground = v["foreground"]
        self.dark = bool(getattr(app.current_theme, "dark", True))


def palette(app: Any) -> Palette:
    return Palette(app)


def status_color(app: Any, status: str) -> str:
    theme = palette(app)
    return {
        "running": theme.accent,
        "created": theme.accent,
        "waiting": theme.warning,
        "completed": theme.success,
        "failed": theme.error,
        "cancelled": theme.foreground,
    }.get(status, theme.foreground)


def status_text(app: Any, status: str, *, label: bool = True) -> Text:
    icon = ICONS.get(status, "?")
    style = status_color(app, status)
    if status == "cancelled":
        style += " dim"
    return Text(f"{icon} {status}" if label else icon, style=style, no_wrap=True)


def short_id(run_id: str) -> str:
    return run_id[:8]


def display_path(path: str | Path) -> str:
    """A path as short as it reads unambiguously: relative to the working folder, or
    with `~` for the home folder."""
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        home = Path.home()
        return f"~/{p.relative_to(home)}" if home in p.parents else str(p)
