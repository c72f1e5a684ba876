"""The engine, store, CLI and service tests again, on PostgreSQL, inside the one test command.

When `CPF_TEST_POSTGRES_URL` names a server database whose role may create databases
(`.ci/run` sets it), this runs pytest over `FILES` in a subprocess with the switch
`CPF_TEST_DATABASE_URL` (tests/storedb.py): every store those tests make is a fresh
PostgreSQL database. Skipped without PostgreSQL, and inside that run itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import storedb

ADMIN_URL = os.environ.get("CPF_TEST_POSTGRES_URL")
TESTS = Path(__file__).parent
# A bound for a loaded machine: on a quiet one the run takes a few minutes.
TIMEOUT = 1800

# Chosen for what they cover against the time they add to CI (2 cores): the engine through
# `cpf` (runs, waits, every kind, kill -9 and retry), the store, and the service. The other
# engine and CLI files pass on PostgreSQL too (run them with the switch by hand); each `cpf`
# process on PostgreSQL still imports SQLAlchemy, so they would cost CI minutes.
FILES = (
    "test_store.py",
    "test_kinds_workflow.py",
    "test_crash_safety.py",
    "test_step_groups.py",
    "test_service_store.py",
    "test_service_api.py",
    "test_service_webhooks.py",
    "test_service_hostile.py",
    "test_step_commits.py",
)

pytestmark = [
    pytest.mark.skipif(not ADMIN_URL, reason="CPF_TEST_POSTGRES_URL is not set"),
    pytest.mark.skipif(storedb.on_postgres(), reason="already the suite on PostgreSQL"),
]


def _summary(output: str) -> str:
    """The failures' summary of a pytest run (its short test summary and last line)."""
    match = re.search(r"^=+ short test summary info =+$", output, re.MULTILINE)
    tail = output[match.start() :] if match else output[-4000:]
    return tail[-8000:]


def test_engine_store_and_service_tests_pass_on_postgres() -> None:
    assert ADMIN_URL is not None
    env = dict(os.environ)
    env[storedb.SWITCH] = ADMIN_URL
    # The PostgreSQL-only modules already ran in this session: do not run them twice.
    env.pop("CPF_TEST_POSTGRES_URL", None)
    env.pop("CPF_DATABASE_URL", None)
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
        *(str(TESTS / name) for name in FILES),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            command, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        pytest.fail(f"the tests on PostgreSQL took over {TIMEOUT} s:\n{out[-4000:]}")
    assert proc.returncode == 0, (
        f"the tests on PostgreSQL failed (exit {proc.returncode}):\n"
        f"{_summary(proc.stdout)}\n{proc.stderr[-2000:]}"
    )
    # Something ran on PostgreSQL: not everything was skipped.
    assert re.search(r"\b\d+ passed\b", proc.stdout), proc.stdout[-2000:]
