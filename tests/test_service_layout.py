"""The checkpoint service's one home (core/service/) keeps its layers and its arrows.

- The facade (`core.service.api.CheckpointService`) serves every public method of every
  area (keys, checkpoints, agents, webhooks, rate limit), and nothing else.
- The areas hold no HTTP and no SQL; the SQL (core/service/store/) imports no area and
  no HTTP; core/store names nothing of the service but its tables; core never imports
  cpf_tui.
- `cpf status` does not import the service (imports are a budget).
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "core" / "service"
AREAS = ("keys", "checkpoints", "agents", "webhooks", "ratelimit", "common", "api")
HTTP = ("starlette", "uvicorn", "anyio", "httpx", "core.service.routes", "core.service.app")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _hits(modules: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)}


def test_the_facade_serves_every_method_of_every_area() -> None:
    from core.service import api

    areas = {
        "keys": "core.service.keys:KeysService",
        "checkpoints": "core.service.checkpoints:CheckpointsService",
        "agents": "core.service.agents:AgentsService",
        "webhooks": "core.service.webhooks:WebhooksService",
        "rates": "core.service.ratelimit:RateLimits",
    }
    served: dict[str, set[str]] = {area: set() for area in areas}
    for name, value in vars(api.CheckpointService).items():
        if isinstance(value, api._Served):
            served[value.area].add(name)
    for area, where in areas.items():
        module, _, cls_name = where.partition(":")
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        public = {
            n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)
        }
        assert served[area] == public, (area, served[area] ^ public)


def test_areas_hold_no_http_and_no_sql() -> None:
    for name in AREAS:
        modules = _imports(SERVICE / f"{name}.py")
        assert not _hits(modules, HTTP), (name, _hits(modules, HTTP))
        sql = _hits(modules, ("sqlalchemy", "sqlmodel", "sqlite3", "psycopg"))
        assert not sql, (name, sql)


def test_the_service_sql_imports_no_area_and_no_http() -> None:
    for path in sorted((SERVICE / "store").glob("*.py")):
        modules = _imports(path)
        service = {
            m for m in _hits(modules, ("core.service",)) if not m.startswith("core.service.store")
        }
        assert not service, (path.name, service)
        assert not _hits(modules, HTTP), (path.name, _hits(modules, HTTP))


def test_core_store_names_only_the_service_tables() -> None:
    for path in sorted((ROOT / "core" / "store").glob("*.py")):
        service = _hits(_imports(path), ("core.service",))
        assert service <= {"core.service.store.tables"}, (path.name, service)


def test_core_never_imports_the_tui() -> None:
    for path in sorted((ROOT / "core").rglob("*.py")):
        assert not _hits(_imports(path), ("cpf_tui",)), path


def test_cpf_status_does_not_import_the_service(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CPF_DATABASE_URL"}
    env["CHECKPOINTFLOW_BASE_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core", "status", "--run-id", "x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert imported, proc.stderr[-500:]
    assert not [m for m in imported if m.startswith("core.service")]


@pytest.mark.parametrize("name", AREAS)
def test_an_area_imports_without_the_http_stack(name: str) -> None:
    code = (
        f"import sys, core.service.{name}\n"
        "bad = [m for m in ('starlette', 'uvicorn', 'sqlalchemy') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.strip() == ""
