"""Hostile inputs for the CLI property tests, and the property every `cpf` call must hold.

The property (`check`): the process ends (no hang), exits with a documented status (never
90 or 1), prints no traceback, writes strict UTF-8 on stdout, and, unless it is a usage
error (exit 2) or a successful text command (`guide`, `logs`), prints exactly one strict
JSON envelope (no NaN/Infinity, no lone surrogate) whose exit_code is the exit status
and whose error message is one line.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

DOCUMENTED = {0, 2, 10, 20, 30, 40, 50, 60, 70, 80}
TEXT_COMMANDS = {"guide", "logs"}
TIMEOUT = 60.0

# A run that waits, and one whose cli step takes `inputs.x` through `env:`.
WAIT_WF = """schema_version: checkpointflow/v1
workflow:
  id: waiter
  inputs: {type: object}
  steps:
    - id: ask
      kind: await_event
      audience: user
      event_name: go
      input_schema: {type: object}
    - id: done
      kind: end
      result: {ok: true}
"""

ENV_WF = """schema_version: checkpointflow/v1
workflow:
  id: envwf
  inputs: {type: object}
  steps:
    - id: a
      kind: cli
      command: 'echo "$X" > /dev/null'
      env:
        X: ${inputs.x}
    - id: done
      kind: end
      result: ${inputs}
"""


def examples(ci: int) -> int:
    """The CI budget, or the loaded profile's when bigger (`--hypothesis-profile=deep`)."""
    loaded = settings.default.max_examples
    return loaded if loaded > 100 else ci


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            v.encode("utf-8")  # raises on a lone surrogate
        elif isinstance(v, dict):
            for k, item in v.items():
                k.encode("utf-8")
                stack.append(item)
        elif isinstance(v, list):
            stack.extend(v)


def check(proc: subprocess.CompletedProcess[bytes], command: str) -> dict[str, Any] | None:
    """Assert the property; return the envelope (None for usage errors and text output)."""
    shown = f"argv={proc.args!r}\nstdout={proc.stdout[:2000]!r}\nstderr={proc.stderr[-2000:]!r}"
    assert proc.returncode in DOCUMENTED, f"exit {proc.returncode}\n{shown}"
    assert b"Traceback (most recent call last)" not in proc.stderr, shown
    text = proc.stdout.decode("utf-8")  # strict: raises on bytes that are not UTF-8
    if proc.returncode == 2 or (command in TEXT_COMMANDS and proc.returncode == 0):
        return None
    data = json.loads(text, parse_constant=_refuse_constant)  # exactly one JSON document
    assert isinstance(data, dict), shown
    _no_surrogates(data)
    assert data["schema_version"] == "checkpointflow-run/v1", shown
    assert data["exit_code"] == proc.returncode, shown
    if not data["ok"] and data.get("error"):
        message = data["error"]["message"]
        assert message and "\n" not in message, shown
        assert data["error"]["code"] != "ERR_INTERNAL", shown
    return data


class Store:
    """Reads the store directly, to see what a refused command left behind: the SQLite
    file of the base dir, or the database at `url` (the suite on PostgreSQL)."""

    def __init__(self, base: Path, url: str | None = None) -> None:
        self.db = base / "cpf.db"
        self.url = url

    def _row(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.url is not None:
            import psycopg

            libpq = "postgresql://" + self.url.split("://", 1)[1]
            with psycopg.connect(libpq) as conn:
                row = conn.execute(sql.replace("?", "%s"), params).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]
        if not self.db.exists():
            return None
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def runs(self) -> int:
        return int(self._row("select count(*) from runs") or 0)

    def running(self) -> int:
        sql = "select count(*) from runs where status in ('running', 'created')"
        return int(self._row(sql) or 0)

    def status(self, run_id: str) -> str:
        return str(self._row("select status from runs where run_id = ?", (run_id,)))


# -- strategies ----------------------------------------------------------------------------

# Bytes for one argv element (argv cannot hold NUL): invalid UTF-8, encoded surrogates,
# control characters, very long text, and plain text.
argv_bytes = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
    st.sampled_from(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x1b[2J", b"\xef\xbb\xbf", "é✓".encode(), b"-"]
    ),
    st.integers(200, 6000).map(lambda n: b"x" * n),
    st.text(max_size=30).map(lambda s: s.encode("utf-8")).filter(lambda b: b"\0" not in b),
)


def _nested(n: int, open_: str, close: str, middle: str = "1") -> str:
    return open_ * n + middle + close * n


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json_tree = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)

# Text given to --input: JSON-ish documents that are hostile in depth, numbers or bytes.
payload = st.one_of(
    _json_tree.map(lambda v: json.dumps({"v": v}).encode()),  # NaN/Infinity spelled out
    st.integers(4200, 6000).map(lambda n: b'{"a": ' + b"9" * n + b"}"),
    st.integers(40, 150_000).map(lambda n: _nested(n, "[", "]").encode()),
    st.integers(40, 3000).map(lambda n: ("[" * n).encode()),
    st.integers(40, 500).map(lambda n: _nested(n, '{"a":', "}").encode()),
    st.sampled_from(["\\ud800", "\\udfff", "a\\udc80b", "\\u0000", "x\\u0000y"]).map(
        lambda s: ('{"x": "' + s + '"}').encode()
    ),
    st.sampled_from([b'{"a": 1e999}', b'{"a": -1e400}', b"NaN", b"[Infinity]", b"\xff\xfe"]),
    st.binary(max_size=60).filter(lambda b: b"\0" not in b),
)

_HEAD = "schema_version: checkpointflow/v1\nworkflow:\n  id: hostile\n  inputs: {type: object}\n"


def _end(result: str) -> str:
    return _HEAD + f"  steps:\n    - id: e\n      kind: end\n      result: {result}\n"


def _alias_bomb(levels: int) -> str:
    lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return (
        "schema_version: checkpointflow/v1\nx:\n"
        + "\n".join(lines)
        + "\nworkflow:\n  id: bomb\n  inputs: {type: object}\n  steps:\n"
        + f"    - id: e\n      kind: end\n      result: *a{levels - 1}\n"
    )


_RECURSIVE = (
    "schema_version: checkpointflow/v1\nworkflow: &w\n  id: rec\n  inputs: {type: object}\n"
    "  steps:\n    - id: e\n      kind: end\n      result: *w\n"
)


def _paren_if(n: int) -> str:
    return (
        _HEAD + "  steps:\n    - id: a\n      kind: cli\n      command: 'true'\n"
        f"      if: '{_nested(n, '(', ')', 'true')}'\n    - id: e\n      kind: end\n"
    )


def _template(n: int) -> str:
    return _end("'" + _nested(n, "${", "}", "inputs") + "'")


# Whole workflow documents (bytes): deep, recursive, exploding, tagged, non-JSON, not UTF-8.
document = st.one_of(
    st.integers(60, 1200).map(lambda n: _end(_nested(n, "[", "]")).encode()),
    st.integers(60, 400).map(lambda n: _end(_nested(n, "{a: ", "}")).encode()),
    st.integers(30, 1000).map(lambda n: _paren_if(n).encode()),
    st.integers(30, 400).map(lambda n: _template(n).encode()),
    st.integers(5, 9).map(lambda n: _alias_bomb(n).encode()),
    st.just(_RECURSIVE.encode()),
    st.sampled_from(
        [
            ".nan",
            "-.inf",
            "!!binary aGVsbG8=",
            "!!set {a, b}",
            "!!python/object:os.system {}",
            "{? [a, b] : 1}",
            "9" * 4400,
            '"\\ud800"',
            '"a\\0b"',
            "&x [*x]",
            "2024-01-01",
            "!!float 1e999",
        ]
    ).map(lambda r: _end(r).encode()),
    st.binary(max_size=200),
    st.binary(max_size=40).map(lambda b: _end("ok").encode() + b),
)

# Numbers for --limit: out of range, negative, not numbers at all.
number_flag = st.one_of(
    st.integers(-(10**30), 10**30).map(lambda n: str(n).encode()),
    st.sampled_from([b"1e3", b"nan", b"0x10", b" 5", b"\xff", b"9" * 5000, b"\xd9\xa3"]),
)
