"""Regression tests: each hostile CLI case measured in issue 8 gets a clean envelope,
a documented exit code and leaves nothing half-written (property in tests/hostile.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import CPF
from hostile import ENV_WF as START
from hostile import TIMEOUT, Store, check


class Bytes:
    """`cpf` with bytes argv and stdin, in one store and working folder."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.store = Store(Path(env["CHECKPOINTFLOW_BASE_DIR"]), env.get("CPF_DATABASE_URL"))

    def __call__(self, *argv: bytes | str, stdin: bytes = b"", ok: set[int] | None = None) -> Any:
        args = [a if isinstance(a, bytes) else os.fsencode(a) for a in argv]
        proc = subprocess.run(
            [os.fsencode(CPF), *args],
            input=stdin,
            capture_output=True,
            cwd=self.root,
            env=self.env,
            timeout=TIMEOUT,
        )
        env = check(proc, args[0].decode("utf-8", "replace"))
        if ok is not None:
            assert proc.returncode in ok, (proc.returncode, env)
        assert self.store.running() == 0
        return env


@pytest.fixture
def cpfb(workdir: Path, cpf_env: dict[str, str]) -> Bytes:
    (workdir / "start.yaml").write_text(START)
    return Bytes(workdir, cpf_env)


def _wf(workdir: Path, text: str, name: str = "wf.yaml") -> str:
    (workdir / name).write_text(text)
    return name


def _end(result: str) -> str:
    return (
        "schema_version: checkpointflow/v1\nworkflow:\n  id: e\n  inputs: {type: object}\n"
        f"  steps:\n    - id: e\n      kind: end\n      result: {result}\n"
    )


# -- depth ----------------------------------------------------------------------------------


def test_if_wrapped_in_200_parentheses(cpfb: Bytes, workdir: Path) -> None:
    cond = "(" * 200 + "true" + ")" * 200
    name = _wf(
        workdir,
        "schema_version: checkpointflow/v1\nworkflow:\n  id: p\n  inputs: {type: object}\n"
        f"  steps:\n    - id: a\n      kind: cli\n      command: 'true'\n      if: '{cond}'\n",
    )
    env = cpfb("validate", "-f", name, ok={0})
    assert any("nested more than" in w for w in env["warnings"])
    env = cpfb("run", "-f", name, ok={30})
    assert "nested more than" in env["error"]["message"]
    assert cpfb.store.status(env["run_id"]) == "failed"


@pytest.mark.parametrize("depth", [65, 990])
def test_deep_yaml_list(cpfb: Bytes, workdir: Path, depth: int) -> None:
    name = _wf(workdir, _end("[" * depth + "]" * depth))
    env = cpfb("validate", "-f", name, ok={10})
    assert env["error"]["code"] == "ERR_YAML_PARSE"
    assert "nested more than 64 levels" in env["error"]["message"]


def test_yaml_at_the_depth_limit_runs(cpfb: Bytes, workdir: Path) -> None:
    """60 levels (+ the document's own 4) still work end to end."""
    name = _wf(workdir, _end("[" * 58 + "1" + "]" * 58))
    env = cpfb("run", "-f", name, ok={0})
    assert env["result"] is not None


def test_recursive_yaml_alias(cpfb: Bytes, workdir: Path) -> None:
    name = _wf(
        workdir,
        "schema_version: checkpointflow/v1\nworkflow: &w\n  id: rec\n  inputs: {type: object}\n"
        "  steps:\n    - id: e\n      kind: end\n      result: *w\n",
    )
    for command in ("validate", "run"):
        env = cpfb(command, "-f", name, ok={10})
        assert env["error"]["code"] == "ERR_YAML_PARSE"
        assert "contains itself" in env["error"]["message"]
    assert cpfb.store.runs() == 0


def test_yaml_alias_bomb(cpfb: Bytes, workdir: Path) -> None:
    lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "schema_version: checkpointflow/v1\nx:\n" + "\n".join(lines) + "\n" + _end("*a8")[34:]
    env = cpfb("validate", "-f", _wf(workdir, text), ok={10})
    assert "more than" in env["error"]["message"]


def test_input_with_100000_nested_brackets(cpfb: Bytes) -> None:
    env = cpfb("run", "-f", "start.yaml", "--input", "[" * 100_000, ok={10})
    assert env["error"]["code"] == "ERR_VALIDATION_INPUT"
    deep = "[" * 70 + "]" * 70
    env = cpfb("run", "-f", "start.yaml", "--input", deep, ok={10})
    assert "nested more than 64" in env["error"]["message"]
    assert cpfb.store.runs() == 0


# -- numbers --------------------------------------------------------------------------------


def test_integer_of_4301_digits(cpfb: Bytes, workdir: Path) -> None:
    env = cpfb("run", "-f", "start.yaml", "--input", '{"a": ' + "9" * 4301 + "}", ok={10})
    assert "4300 digits" in env["error"]["message"]
    env = cpfb("validate", "-f", _wf(workdir, _end("9" * 4400)), ok={10})
    assert env["error"]["code"] == "ERR_YAML_PARSE"
    assert cpfb.store.runs() == 0


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -1e999}', "NaN"])
def test_non_finite_input_is_not_json(cpfb: Bytes, text: str) -> None:
    env = cpfb("run", "-f", "start.yaml", "--input", text, ok={10})
    assert env["error"]["code"] == "ERR_VALIDATION_INPUT"
    assert cpfb.store.runs() == 0


@pytest.mark.parametrize("value", [".nan", "-.inf", "!!float 1e999"])
def test_non_finite_yaml_values_are_refused(cpfb: Bytes, workdir: Path, value: str) -> None:
    env = cpfb("run", "-f", _wf(workdir, _end(value)), ok={10})
    assert "not a JSON number" in env["error"]["message"]


def test_cli_step_printing_nan_gives_no_outputs(cpfb: Bytes, workdir: Path) -> None:
    text = (
        "schema_version: checkpointflow/v1\nworkflow:\n  id: n\n  inputs: {type: object}\n"
        "  steps:\n    - id: a\n      kind: cli\n      command: 'echo {\"a\": NaN}'\n"
        "    - id: e\n      kind: end\n      result: {got: '${steps.a.outputs}'}\n"
    )
    cpfb("run", "-f", _wf(workdir, text), ok={0, 30})  # strict JSON out, whichever it is


@pytest.mark.parametrize(
    "limit",
    ["99999999999999999999", "-1", "1e3", "nan", "\u0663", "9" * 5000],
    ids=["20 digits", "negative", "float", "nan", "arabic digit", "5000 digits"],
)
def test_runs_limit_is_bounded(cpfb: Bytes, limit: str) -> None:
    env = cpfb("runs", "--limit", limit, ok={10})
    assert "--limit must be a whole number" in env["error"]["message"]


def test_runs_limit_in_range_works(cpfb: Bytes) -> None:
    assert cpfb("runs", "--limit", "0", ok={0})["result"] == {"runs": []}
    cpfb("runs", "--limit", "1000000", ok={0})


# -- bytes ----------------------------------------------------------------------------------


def test_lone_surrogate_in_input_leaves_no_run(cpfb: Bytes) -> None:
    for text in ('"\\ud800"', '{"x": "\\udfff"}', '{"\\ud800": 1}'):
        env = cpfb("run", "-f", "start.yaml", "--input", text, ok={10})
        assert "not valid Unicode" in env["error"]["message"]
    assert cpfb.store.runs() == 0


@pytest.mark.parametrize(
    "argv",
    [
        [b"status", b"--run-id", b"\xff"],
        [b"inspect", b"--run-id", b"abc\xc3"],
        [b"logs", b"--run-id", b"\xff"],
        [b"cancel", b"--run-id", b"\xff", b"--reason", b"x"],
        [b"resume", b"--run-id", b"0" * 32, b"--event", b"\xff", b"--input", b"{}"],
        [b"validate", b"-f", b"\xff.yaml"],
        [b"run", b"-f", b"start.yaml", b"--actor", b"\xed\xa0\x80"],
        [b"runs", b"--workflow", b"\xff"],
        [b"init", b"--file", b"\xff.yaml"],
        [b"keys", b"list", b"--account", b"\xc3"],
    ],
)
def test_non_utf8_argv_is_refused_by_name(cpfb: Bytes, argv: list[bytes]) -> None:
    env = cpfb(*argv, ok={10})
    assert env["error"]["code"] == "ERR_VALIDATION_INPUT"
    assert "is not valid UTF-8" in env["error"]["message"]
    assert cpfb.store.runs() == 0
    assert not any(p.name.startswith("\udcff") for p in cpfb.root.iterdir())


@pytest.mark.parametrize("value", ["a\\u0000b", "\\u0000"])
def test_nul_reaching_env_fails_the_step(cpfb: Bytes, value: str) -> None:
    env = cpfb("run", "-f", "start.yaml", "--input", '{"x": "' + value + '"}', ok={30})
    assert env["error"]["code"] == "ERR_STEP_FAILED"
    assert "NUL" in env["error"]["message"]
    assert cpfb.store.status(env["run_id"]) == "failed"


def test_binary_stdin_input(cpfb: Bytes) -> None:
    env = cpfb("run", "-f", "start.yaml", "--input", "-", stdin=b"\xff\xfe{}", ok={10})
    assert "not valid UTF-8" in env["error"]["message"]
    assert cpfb.store.runs() == 0


# -- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "fifo"])
def test_non_regular_files_are_refused_without_blocking(cpfb: Bytes, path: str) -> None:
    if path == "fifo":
        os.mkfifo(cpfb.root / "fifo")
    env = cpfb("validate", "-f", path, ok={10})
    assert "not a regular file" in env["error"]["message"]
    env = cpfb("run", "-f", "start.yaml", "--input", "@" + path, ok={10})
    assert "not a regular file" in env["error"]["message"]
    env = cpfb("init", "--file", path, "--force", ok={10})
    assert "Not a regular file" in env["error"]["message"]


def test_file_larger_than_the_limit(cpfb: Bytes) -> None:
    with open(cpfb.root / "big.json", "wb") as fh:
        fh.truncate(8 * 1024 * 1024 + 1)
    env = cpfb("run", "-f", "start.yaml", "--input", "@big.json", ok={10})
    assert "larger than" in env["error"]["message"]
    env = cpfb("run", "-f", "start.yaml", "--input", "-", stdin=b" " * (8 * 1024 * 1024 + 1))
    assert env["exit_code"] == 10 and "larger than" in env["error"]["message"]


@pytest.mark.parametrize("n", [256, 5000])
def test_long_file_names(cpfb: Bytes, n: int) -> None:
    name = "n" * n
    assert cpfb("validate", "-f", name, ok={10})["error"]["code"] == "ERR_VALIDATION_WORKFLOW"
    assert cpfb("run", "-f", "start.yaml", "--input", "@" + name, ok={10})
    assert cpfb("init", "--file", name, ok={10})["error"]["code"] == "ERR_VALIDATION_INPUT"


def test_directory_as_workflow(cpfb: Bytes) -> None:
    env = cpfb("validate", "-f", ".", ok={10})
    assert env["error"]["message"].startswith("Expected a file, got a directory")


# -- state ----------------------------------------------------------------------------------


def test_foreach_result_of_steps_ends_cleanly(cpfb: Bytes, workdir: Path) -> None:
    text = (
        "schema_version: checkpointflow/v1\nworkflow:\n  id: fe\n  inputs: {type: object}\n"
        "  steps:\n    - id: loop\n      kind: foreach\n      items: ${inputs.items}\n"
        "      body:\n        - id: inner\n          kind: end\n          result: ${steps}\n"
        "    - id: e\n      kind: end\n      result: ${steps}\n"
    )
    env = cpfb("run", "-f", _wf(workdir, text), "--input", '{"items": [1, 2, 3]}', ok={0, 30})
    status = cpfb("status", "--run-id", env["run_id"], ok={0, 30})
    assert status["status"] in ("completed", "failed")
    assert (status.get("error") or {}).get("code") != "ERR_RUN_INTERRUPTED"


def test_value_too_deep_to_store_fails_the_step(cpfb: Bytes, workdir: Path) -> None:
    """60 levels of input inside 10 levels of result: the step fails, the run is stored
    failed with a clear error (never left running)."""
    text = _end("{a: {b: {c: {d: {e: {f: {g: {h: {i: '${inputs}'}}}}}}}}}")
    payload = '{"x": ' + "[" * 58 + "1" + "]" * 58 + "}"
    env = cpfb("run", "-f", _wf(workdir, text), "--input", payload, ok={30})
    assert env["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"
    assert "cannot be stored" in env["error"]["message"]
    assert cpfb.store.status(env["run_id"]) == "failed"
    status = cpfb("status", "--run-id", env["run_id"], ok={30})
    assert status["error"]["code"] == "ERR_STEP_OUTPUT_INVALID"


def test_inputs_round_trip_strict_json(cpfb: Bytes) -> None:
    """Unicode, big (but allowed) integers and escapes survive into the envelope."""
    payload = '{"x": "é ✓ \\u001b", "n": ' + "9" * 4000 + ', "f": 1.5e300}'
    env = cpfb("run", "-f", "start.yaml", "--input", payload, ok={0})
    assert env["result"]["x"] == "é ✓ \x1b"
    assert env["result"]["n"] == int("9" * 4000)
