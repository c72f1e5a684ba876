"""The TUI's settings file: theme, bell, log size and a `keymap:` section.

Looked up at `$CPF_TUI_CONFIG` (an empty value means "no file"), else
`$XDG_CONFIG_HOME/cpf/tui.yaml` (default `~/.config/cpf/tui.yaml`). Example::

    theme: nord
    bell: true
    log:
      max_lines: 20000
    keymap:            # binding id -> keys (comma-separated for several)
      run.cancel: ctrl+k
      app.runs: f2

A bad file never stops the app: problems are collected in `TuiConfig.problems` and shown
as a notification.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_THEME = "textual-dark"


@dataclass
class TuiConfig:
    theme: str = DEFAULT_THEME
    bell: bool = True
    log_max_lines: int = 10_000
    keymap: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    problems: list[str] = field(default_factory=list)


def config_path() -> Path | None:
    env = os.environ.get("CPF_TUI_CONFIG")
    if env is not None:
        return Path(env).expanduser() if env else None
    xdg = os.environ.get("XDG_CONFIG_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return root / "cpf" / "tui.yaml"


def load_config(path: Path | None = None, *, discover: bool = True) -> TuiConfig:
    """Read the settings file (missing file: defaults)."""
    if path is None and discover:
        path = config_path()
    cfg = TuiConfig(path=path)
    if path is None or not path.is_file():
        return cfg
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        cfg.problems.append(f"{path}: {' '.join(str(exc).split())}")
        return cfg
    if not isinstance(data, dict):
        cfg.problems.append(f"{path}: expected a mapping at the top level")
        return cfg
    _apply(cfg, data, path)
    return cfg


def _apply(cfg: TuiConfig, data: dict[str, Any], path: Path) -> None:
    theme = data.get("theme")
    if theme is not None:
        if isinstance(theme, str):
            cfg.theme = theme
        else:
            cfg.problems.append(f"{path}: theme must be a string")
    bell = data.get("bell")
    if bell is not None:
        cfg.bell = bool(bell)
    log = data.get("log") or {}
    if isinstance(log, dict) and "max_lines" in log:
        try:
            cfg.log_max_lines = max(100, int(log["max_lines"]))
        except (TypeError, ValueError):
            cfg.problems.append(f"{path}: log.max_lines must be an integer")
    keymap = data.get("keymap") or {}
    if not isinstance(keymap, dict):
        cfg.problems.append(f"{path}: keymap must map binding ids to keys")
        return
    for binding_id, keys in keymap.items():
        if isinstance(binding_id, str) and isinstance(keys, str) and keys.strip():
            cfg.keymap[binding_id] = keys.strip()
        else:
            cfg.problems.append(f"{path}: keymap.{binding_id}: expected a key string")
    unknown = set(data) - {"theme", "bell", "log", "keymap"}
    for key in sorted(unknown, key=str):
        cfg.problems.append(f"{path}: unknown setting '{key}'")
