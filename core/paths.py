"""Where cpf keeps things: the base directory, the store URL, run artifact folders."""

from __future__ import annotations

import os
from pathlib import Path


def base_dir() -> Path:
    """`$CHECKPOINTFLOW_BASE_DIR`, else `~/.checkpointflow` (not created here)."""
    env = os.environ.get("CHECKPOINTFLOW_BASE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".checkpointflow"


def database_url() -> str:
    """`$CPF_DATABASE_URL` (any SQLAlchemy URL), else the SQLite file `<base>/cpf.db`."""
    url = os.environ.get("CPF_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{base_dir() / 'cpf.db'}"


def run_dir(run_id: str) -> Path:
    return base_dir() / "runs" / run_id
