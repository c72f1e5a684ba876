"""Seeded hostile-input fuzzing of every `cpf` command; prints bad outcomes by kind.

Run by hand from the repository root (each case is one real `cpf` subprocess):

    .venv/bin/python bench/fuzz_cli.py                  # 300 cases, seed 1
    .venv/bin/python bench/fuzz_cli.py -n 1000 --seed 7 --show 5

A case is one command with hostile argv (non-UTF-8 bytes, lone surrogates, huge or
non-finite numbers, deep nesting, huge strings), hostile files (deep or recursive YAML,
tags, /dev/zero, FIFOs, 5,000-character names) or hostile stdin. Bad outcomes:

    exit90       the process exited 90 (ERR_INTERNAL) or with an undocumented status
    traceback    a Python traceback on stderr
    non_utf8     stdout is not strict UTF-8
    invalid_json stdout is not exactly one strict JSON object (NaN, two envelopes, ...)
    hang         no exit within --timeout seconds (/dev/zero, a FIFO, ...)
    left_run     a refused `run` (exit 10) left a run row behind
    stuck        a run stays `running` after its executor exited

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

DOCUMENTED = {0, 2, 10, 20, 30, 40, 50, 60, 70, 80}
TEXT_COMMANDS = {"guide", "logs", "--version"}  # print text, not an envelope, on success

OK_WF = b"""schema_version: checkpointflow/v1
workflow:
  id: okwf
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


def wf(steps: str, inputs: str = "{type: object}") -> bytes:
    head = f"schema_version: checkpointflow/v1\nworkflow:\n  id: fz\n  inputs: {inputs}\n"
    return (head + "  steps:\n" + steps).encode()


def deep_list(n: int) -> bytes:
    return wf(f"    - id: e\n      kind: end\n      result: {'[' * n}1{']' * n}\n")


def paren_if(n: int) -> bytes:
    cond = "(" * n + "true" + ")" * n
    return wf(
        f"    - id: a\n      kind: cli\n      command: 'true'\n      if: '{cond}'\n"
        "    - id: e\n      kind: end\n"
    )


def recursive_alias() -> bytes:
    return b"""schema_version: checkpointflow/v1
workflow: &w
  id: rec
  inputs: {type: object}
  steps:
    - id: e
      kind: end
      result: *w
"""


def alias_bomb(levels: int) -> bytes:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    body = "\n".join("  " + line for line in lines)
    return (
        "schema_version: checkpointflow/v1\nx:\n" + body + "\nworkflow:\n  id: bomb\n"
        "  inputs: {type: object}\n  steps:\n    - id: e\n      kind: end\n"
        f"      result: *a{levels - 1}\n"
    ).encode()


def foreach_steps() -> bytes:
    return wf(
        "    - id: loop\n      kind: foreach\n      items: [1, 2, 3]\n      body:\n"
        "        - id: inner\n          kind: end\n          result: ${steps}\n"
        "    - id: e\n      kind: end\n"
    )


def env_from_input() -> bytes:
    return wf(
        "    - id: a\n      kind: cli\n      command: 'echo {}'\n      env:\n"
        "        X: ${inputs.x}\n    - id: e\n      kind: end\n"
    )


def output_json(stdout: str) -> bytes:
    return wf(
        f"    - id: a\n      kind: cli\n      command: {json.dumps(f'printf %s {stdout}')}\n"
        "    - id: e\n      kind: end\n      result: ${steps.a.outputs}\n"
    )


def deep_template(n: int) -> bytes:
    return wf(f"    - id: e\n      kind: end\n      result: '{'${' * n}inputs{'}' * n}'\n")


WEIRD_DOCS: list[Callable[[random.Random], bytes]] = [
    lambda r: deep_list(r.choice([120, 500, 990, 5000])),
    lambda r: paren_if(r.choice([50, 200, 1000])),
    lambda r: recursive_alias(),
    lambda r: alias_bomb(r.choice([5, 7, 9])),
    lambda r: foreach_steps(),
    lambda r: env_from_input(),
    lambda r: output_json(r.choice(["'{\"a\": NaN}'", "'{\"a\": 1e999}'", "'[[[[[[[[1]]]]]]]]'"])),
    lambda r: deep_template(r.choice([10, 300])),
    lambda r: wf(
        "    - id: e\n      kind: end\n      result: " + "9" * r.choice([4301, 20000]) + "\n"
    ),
    lambda r: wf("    - id: e\n      kind: end\n      result: .nan\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: -.inf\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: !!binary aGVsbG8=\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: !!set {a, b}\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: !!python/object:os.system {}\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: {? [a, b] : 1}\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: {1: a, 2: b}\n"),
    lambda r: wf("    - id: e\n      kind: end\n      result: 2024-01-01\n"),
    lambda r: wf("    - id: e\n      kind: end\n      id: again\n"),
    lambda r: wf('    - id: e\n      kind: end\n      result: "\\ud800"\n'),
    lambda r: wf('    - id: e\n      kind: end\n      result: "a\\0b"\n'),
    lambda r: b"\xef\xbb\xbf" + OK_WF,
    lambda r: OK_WF.replace(b"okwf", b"ok\xffwf"),
    lambda r: OK_WF + b"\x00",
    lambda r: bytes(r.randrange(256) for _ in range(r.choice([10, 1000]))),
    lambda r: b"- " * r.choice([100, 3000]) + b"x",
    lambda r: b"{" * r.choice([100, 3000]),
    lambda r: OK_WF.replace(b"id: okwf", b"id: " + b"w" * 200_000),
]


def weird_json(r: random.Random) -> bytes:
    return r.choice(
        [
            b'{"a": ' + b"9" * r.choice([4301, 50000]) + b"}",
            b'{"a": NaN}',
            b'{"a": Infinity}',
            b'{"a": -Infinity}',
            b'{"a": 1e999}',
            b'"\\ud800"',
            b'{"a": "\\udfff"}',
            b'{"\\ud800": 1}',
            b"[" * r.choice([150, 1000, 100_000]),
            b"[" * 150 + b"]" * 150,
            b'{"a":' * 300 + b"1" + b"}" * 300,
            b'{"x": "\\u0000"}',
            b'{"x": "a\\u0000b"}',
            b'{"x": "' + b"y" * 3_000_000 + b'"}',
            b"\xff\xfe",
            b'{"a": "\xff"}',
            b"",
            b"null",
            b'{"a": 1, "a": 2}',
            b"@/dev/zero",
            b"@/dev/stdin",
            b"@" + b"n" * 5000,
            b"@" + b"\xff.json",
            b"@.",
            b"@/etc",
            b"-",
            b"{}",
        ]
    )


def weird_id(r: random.Random) -> bytes:
    return r.choice(
        [
            b"\xff",
            b"\xc3",
            b"abc\xed\xa0\x80",
            b"x" * 5000,
            b"'; drop table runs; --",
            b"../../etc/passwd",
            b"%",
            b"",
            b"0" * 32,
            b"\x1b[31mred",
            "é".encode(),
        ]
    )


def weird_number(r: random.Random) -> bytes:
    return r.choice(
        [
            b"99999999999999999999",
            b"-1",
            b"0",
            b"1e3",
            b"nan",
            b"9" * 5000,
            b"-99999999999999999999",
        ]
    )


class Fuzzer:
    def __init__(self, cpf: str, root: Path, timeout: float) -> None:
        self.cpf = cpf
        self.root = root
        self.timeout = timeout
        self.base = root / "base"
        self.env = {**os.environ, "CHECKPOINTFLOW_BASE_DIR": str(self.base)}
        self.env.pop("CPF_DATABASE_URL", None)
        (root / "ok.yaml").write_bytes(OK_WF)
        self.fifo = root / "fifo"
        os.mkfifo(self.fifo)
        self.waiting = self.start_waiting()

    def start_waiting(self) -> str:
        proc = subprocess.run(
            [self.cpf, "run", "-f", "ok.yaml"], cwd=self.root, env=self.env, capture_output=True
        )
        return json.loads(proc.stdout)["run_id"]

    def run_count(self) -> int:
        db = self.base / "cpf.db"
        if not db.exists():
            return 0
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from runs").fetchone()[0])

    def stuck_runs(self) -> int:
        db = self.base / "cpf.db"
        if not db.exists():
            return 0
        with sqlite3.connect(db) as conn:
            return int(
                conn.execute("select count(*) from runs where status = 'running'").fetchone()[0]
            )

    def doc_path(self, r: random.Random, i: int) -> bytes:
        kind = r.random()
        if kind < 0.7:
            name = f"case{i}.yaml"
            (self.root / name).write_bytes(r.choice(WEIRD_DOCS)(r))
            return name.encode()
        return r.choice(
            [
                b"/dev/zero",
                str(self.fifo).encode(),
                b".",
                b"n" * 5000,
                b"\xff.yaml",
                b"missing.yaml",
                b"/dev/null",
                b"ok.yaml",
            ]
        )

    def case(self, r: random.Random, i: int) -> tuple[str, list[bytes], bytes]:
        """(command, argv after `cpf`, stdin) of case i."""
        cmd = r.choice(
            [
                "validate",
                "run",
                "run",
                "run",
                "resume",
                "status",
                "inspect",
                "cancel",
                "delete",
                "retry",
                "runs",
                "logs",
                "init",
                "guide",
                "tick",
                "continue",
                "keys",
            ]
        )
        some_id = r.choice([weird_id(r), self.waiting.encode()])
        stdin = r.choice([b"", weird_json(r), b"\xff\xfe\x00"])
        if cmd == "validate":
            return cmd, [b"validate", b"-f", self.doc_path(r, i)], stdin
        if cmd == "run":
            argv = [b"run", b"-f", self.doc_path(r, i), b"--input", weird_json(r)]
            if r.random() < 0.2:
                argv += [b"--actor", weird_id(r)]
            return cmd, argv, stdin
        if cmd == "resume":
            ev = r.choice([b"go", weird_id(r)])
            return (
                cmd,
                [b"resume", b"--run-id", some_id, b"--event", ev, b"--input", weird_json(r)],
                stdin,
            )
        if cmd in ("status", "inspect", "delete", "continue"):
            return cmd, [cmd.encode(), b"--run-id", some_id], stdin
        if cmd == "cancel":
            return cmd, [b"cancel", b"--run-id", some_id, b"--reason", weird_id(r)], stdin
        if cmd == "retry":
            return cmd, [b"retry", b"--run-id", some_id, b"--from-step", weird_id(r)], stdin
        if cmd == "runs":
            argv = [b"runs"]
            if r.random() < 0.6:
                argv += [b"--limit", weird_number(r)]
            if r.random() < 0.5:
                argv += [b"--workflow", weird_id(r)]
            return cmd, argv, stdin
        if cmd == "logs":
            return cmd, [b"logs", b"--run-id", some_id, b"--step", weird_id(r)], stdin
        if cmd == "init":
            target = r.choice(
                [
                    b"n" * 5000,
                    b"\xff.yaml",
                    b"/dev/zero",
                    str(self.fifo).encode(),
                    b"nodir/x.yaml",
                    b".",
                    b"new%d.yaml" % i,
                ]
            )
            return (
                cmd,
                [b"init", b"--file", target, *([b"--force"] if r.random() < 0.5 else [])],
                stdin,
            )
        if cmd == "keys":
            action = r.choice(
                [
                    [b"create", b"--account", weird_id(r)],
                    [b"list", b"--account", weird_id(r)],
                    [b"revoke", b"--key-id", weird_id(r)],
                ]
            )
            return cmd, [b"keys", *action], stdin
        return cmd, [cmd.encode()], stdin

    def judge(self, cmd: str, argv: list[bytes], stdin: bytes) -> list[str]:
        before = self.run_count()
        try:
            proc = subprocess.run(
                [self.cpf.encode(), *argv],
                input=stdin,
                capture_output=True,
                cwd=self.root,
                env=self.env,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return ["hang"]
        bad = []
        if proc.returncode not in DOCUMENTED:
            bad.append("exit90")
        if b"Traceback (most recent call last)" in proc.stderr:
            bad.append("traceback")
        try:
            text = proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            return [*bad, "non_utf8"]
        wants_envelope = proc.returncode != 2 and not (
            cmd in TEXT_COMMANDS and proc.returncode == 0
        )
        if wants_envelope and not strict_envelope(text):
            bad.append("invalid_json")
        if cmd == "run" and proc.returncode == 10 and self.run_count() != before:
            bad.append("left_run")
        if self.stuck_runs():
            bad.append("stuck")
            with sqlite3.connect(self.base / "cpf.db") as conn:
                conn.execute("update runs set status = 'failed' where status = 'running'")
        return bad


def _refuse(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def strict_envelope(text: str) -> bool:
    try:
        data = json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or "exit_code" not in data:
        return False
    return not any("\ud800" <= ch <= "\udfff" for ch in json.dumps(data, ensure_ascii=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument("--cpf", default=str(Path(sys.executable).parent / "cpf"))
    ap.add_argument("--show", type=int, default=3, help="examples to print per kind")
    opts = ap.parse_args()
    rng = random.Random(opts.seed)
    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    bad_cases = 0
    with tempfile.TemporaryDirectory(prefix="cpf-fuzz-") as tmp:
        fz = Fuzzer(opts.cpf, Path(tmp), opts.timeout)
        for i in range(opts.cases):
            cmd, argv, stdin = fz.case(rng, i)
            kinds = fz.judge(cmd, argv, stdin)
            bad_cases += bool(kinds)
            if (i + 1) % 25 == 0:
                print(f"  ... {i + 1} cases, {bad_cases} bad", file=sys.stderr, flush=True)
            for kind in kinds:
                counts[kind] += 1
                if len(examples[kind]) < opts.show:
                    shown = " ".join(repr(a)[2:-1][:80] for a in argv)
                    examples[kind].append(f"cpf {shown}  (stdin {stdin[:40]!r})")
    print(f"cases: {opts.cases}  seed: {opts.seed}  bad cases: {bad_cases}")
    for kind in ("exit90", "traceback", "non_utf8", "invalid_json", "hang", "left_run", "stuck"):
        print(f"  {kind:13s} {counts[kind]}")
        for ex in examples[kind]:
            print(f"      {ex}")
    return 1 if bad_cases else 0


if __name__ == "__main__":
    raise SystemExit(main())
