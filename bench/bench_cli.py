"""Compare the start-up and per-step cost of `cpf` with checkpointflow 1.10.0's CLI.

Run by hand from the repository root:

    python bench/bench_cli.py                 # 15 iterations
    python bench/bench_cli.py -n 30 --cpf /path/to/cpf
    python bench/bench_cli.py -n 9 --only per-step    # just run1 and run200
    python bench/bench_cli.py -n 3 --only per-step \
        --database-url postgresql+psycopg://u:p@host/db   # cpf on PostgreSQL vs cpf on SQLite

On first use it creates bench/.venv-checkpointflow with checkpointflow==1.10.0 from PyPI.
Both tools run the same generated workflows, alternating per iteration, each measurement in
a fresh CHECKPOINTFLOW_BASE_DIR. Exit codes are checked so a broken run is never timed as a
fast one. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CF_VERSION = "1.10.0"
CF_VENV = REPO / "bench" / ".venv-checkpointflow"
BIN = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""

RESUME_EVENT = "go"
RESUME_PAYLOAD = '{"decision": "approve"}'


class BenchError(RuntimeError):
    """A command did not behave as expected; its timing would be meaningless."""


# -- workflows ---------------------------------------------------------------------------


def steps_workflow(wf_id: str, n_steps: int) -> str:
    """A workflow with n trivial cli steps and an end step."""
    lines = [
        "schema_version: checkpointflow/v1",
        "workflow:",
        f"  id: {wf_id}",
        '  version: "1.0"',
        "  inputs:",
        "    type: object",
        "  steps:",
    ]
    for i in range(n_steps):
        lines += [f"    - id: s{i}", "      kind: cli", '      command: "true"']
    lines += ["    - id: done", "      kind: end", "      result:", "        ok: true"]
    return "\n".join(lines) + "\n"


WAIT_WORKFLOW = f"""\
schema_version: checkpointflow/v1
workflow:
  id: bench_wait
  version: "1.0"
  inputs:
    type: object
  steps:
    - id: before
      kind: cli
      command: "true"
    - id: gate
      kind: await_event
      audience: agent
      event_name: {RESUME_EVENT}
      input_schema:
        type: object
        required: [decision]
        properties:
          decision: {{type: string, enum: [approve, reject]}}
    - id: after
      kind: cli
      command: "true"
    - id: done
      kind: end
      result:
        decision: ${{steps.gate.outputs.decision}}
"""


def write_workflows(folder: Path) -> dict[str, Path]:
    files = {
        "run1": steps_workflow("bench_run1", 1),
        "run20": steps_workflow("bench_run20", 20),
        "run200": steps_workflow("bench_run200", 200),
        "validate20": steps_workflow("bench_validate20", 20),
        "wait": WAIT_WORKFLOW,
    }
    paths = {}
    for name, text in files.items():
        path = folder / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    return paths


# -- tools -------------------------------------------------------------------------------


def ensure_checkpointflow() -> Path:
    """Return the checkpointflow `cpf` executable, creating its venv when missing."""
    exe = CF_VENV / BIN / f"cpf{EXE}"
    if exe.exists() and tool_version(exe) == CF_VERSION:
        return exe
    if not (CF_VENV / BIN / f"python{EXE}").exists():
        print(f"creating {CF_VENV.relative_to(REPO)} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(CF_VENV)], check=True)
    print(f"installing checkpointflow=={CF_VERSION} from PyPI ...", file=sys.stderr)
    subprocess.run(
        [
            str(CF_VENV / BIN / f"python{EXE}"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"checkpointflow=={CF_VERSION}",
        ],
        check=True,
    )
    if tool_version(exe) != CF_VERSION:
        raise BenchError(f"{exe} does not report version {CF_VERSION}")
    return exe


def tool_version(exe: Path) -> str | None:
    try:
        proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def default_cpf() -> Path:
    return REPO / ".venv" / BIN / f"cpf{EXE}"


# -- measuring ---------------------------------------------------------------------------


# The store URL of a tool that runs on a database server (`--database-url`).
DATABASE_URLS: dict[str, str] = {}


def clean_env(base_dir: Path, tool: str = "") -> dict[str, str]:
    env = dict(os.environ)
    env["CHECKPOINTFLOW_BASE_DIR"] = str(base_dir)
    env.pop("CPF_DATABASE_URL", None)  # cpf must use the fresh base dir too
    if tool in DATABASE_URLS:
        env["CPF_DATABASE_URL"] = DATABASE_URLS[tool]
    return env


# CPU seconds (user + system) of the timed commands and the children they waited for,
# summed since measure() last reset it; untimed set-up commands do not count.
_cpu = [0.0]


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # Windows: no CPU figures
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    argv: list[str], env: dict[str, str], expect: int, *, count: bool = True
) -> tuple[float, str]:
    """Run argv; return (seconds, stdout). Raise BenchError on an unexpected exit code."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if count:
        _cpu[0] += _children_cpu() - cpu
    if proc.returncode != expect:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise BenchError(
            f"{' '.join(argv)}\n  exited {proc.returncode}, expected {expect}\n  {tail}"
        )
    return elapsed, proc.stdout


def run_id_of(stdout: str) -> str:
    try:
        run_id = json.loads(stdout)["run_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"no run_id in the waiting envelope: {stdout[:300]!r}") from exc
    return str(run_id)


Case = Callable[[str, dict[str, str]], float]


def make_cases(wf: dict[str, Path], cf_exe: str) -> dict[str, Case]:
    def version(exe: str, env: dict[str, str]) -> float:
        return timed([exe, "--version"], env, 0)[0]

    def validate(exe: str, env: dict[str, str]) -> float:
        return timed([exe, "validate", "-f", str(wf["validate20"])], env, 0)[0]

    def run(name: str) -> Case:
        def case(exe: str, env: dict[str, str]) -> float:
            return timed([exe, "run", "-f", str(wf[name])], env, 0)[0]

        return case

    def waiting_run(exe: str, env: dict[str, str]) -> str:
        """A fresh waiting run (untimed): the subject of status, inspect and resume."""
        return run_id_of(timed([exe, "run", "-f", str(wf["wait"])], env, 40, count=False)[1])

    def run_resume(exe: str, env: dict[str, str]) -> float:
        t_run, out = timed([exe, "run", "-f", str(wf["wait"])], env, 40)
        t_resume, _ = timed(resume_argv(exe, run_id_of(out)), env, 0)
        return t_run + t_resume

    def resume(exe: str, env: dict[str, str]) -> float:
        return timed(resume_argv(exe, waiting_run(exe, env)), env, 0)[0]

    def read(command: str, expect: int) -> Case:
        def case(exe: str, env: dict[str, str]) -> float:
            return timed([exe, command, "--run-id", waiting_run(exe, env)], env, expect)[0]

        return case

    def cpf_only(command: str) -> Case:
        """checkpointflow has no `runs` nor `logs`: its side times `status`, its
        cheapest read, so the ratio says how cpf's command compares with that."""

        def case(exe: str, env: dict[str, str]) -> float:
            run_id = waiting_run(exe, env)
            if exe == cf_exe:
                return timed([exe, "status", "--run-id", run_id], env, 40)[0]
            argv = [exe, command] if command == "runs" else [exe, command, "--run-id", run_id]
            return timed(argv, env, 0)[0]

        return case

    return {
        "--version": version,
        "validate (20 steps)": validate,
        "run (1 step)": run("run1"),
        "run (20 steps)": run("run20"),
        "run (200 steps)": run("run200"),
        "run + resume": run_resume,
        "resume (to completion)": resume,
        # checkpointflow exits 40 on the status/inspect of a waiting run, as on `run`.
        "status (waiting run)": read("status", 40),
        "inspect (waiting run)": read("inspect", 40),
        "runs (cf: status)": cpf_only("runs"),
        "logs (cf: status)": cpf_only("logs"),
    }


PER_STEP_CASES = ("run (1 step)", "run (200 steps)")


def select_cases(cases: dict[str, Case], only: list[str] | None) -> dict[str, Case]:
    """The cases named by --only (prefixes of case names; "per-step": run1 and run200)."""
    if not only:
        return cases
    prefixes = [p for name in only for p in PER_STEP_CASES if name == "per-step"]
    prefixes += [name for name in only if name != "per-step"]
    return {name: case for name, case in cases.items() if name.startswith(tuple(prefixes))}


def resume_argv(exe: str, run_id: str) -> list[str]:
    return [exe, "resume", "--run-id", run_id, "--event", RESUME_EVENT, "--input", RESUME_PAYLOAD]


def measure(
    tools: dict[str, str],
    cases: dict[str, Case],
    iterations: int,
    warmup: int,
    scratch: Path,
    fresh: bool = False,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]]]:
    """(times, cpu): [case][tool] = wall seconds, and CPU seconds of the timed commands,
    per iteration. Tools alternate who goes first.

    By default each tool keeps one store for the whole session (as a user does); with
    `fresh`, every command gets a new base dir and pays for creating its store."""
    times: dict[str, dict[str, list[float]]] = {c: {t: [] for t in tools} for c in cases}
    cpu: dict[str, dict[str, list[float]]] = {c: {t: [] for t in tools} for c in cases}
    names = list(tools)
    counter = 0
    for it in range(warmup + iterations):
        order = names if it % 2 == 0 else names[::-1]
        for case_name, case in cases.items():
            for tool in order:
                counter += 1
                _cpu[0] = 0.0
                if fresh:
                    base = scratch / f"base{counter}"
                    base.mkdir()
                    try:
                        elapsed = case(tools[tool], clean_env(base, tool))
                    finally:
                        shutil.rmtree(base, ignore_errors=True)
                else:
                    base = scratch / f"store-{tool}"
                    base.mkdir(exist_ok=True)
                    elapsed = case(tools[tool], clean_env(base, tool))
                if it >= warmup:
                    times[case_name][tool].append(elapsed)
                    cpu[case_name][tool].append(_cpu[0])
        done = it + 1 - warmup
        if done > 0:
            print(f"iteration {done}/{iterations} done", file=sys.stderr)
    return times, cpu


def spawn_times(cpf: Path, wf: Path, iterations: int, scratch: Path) -> list[float]:
    """The TUI's "Starting run…" wait: from spawning the executor as `core.spawn` does
    (`python -m core run --run-id ID --input -`, own session) until its run row is
    visible in the store. cpf only (checkpointflow has no spawned executor)."""
    import sqlite3
    import uuid

    python = cpf.parent / f"python{EXE}"
    base = scratch / "store-spawn"
    base.mkdir(exist_ok=True)
    env = clean_env(base)
    db = base / "cpf.db"
    out = []
    for _ in range(iterations + 1):  # the first one creates the store: untimed
        run_id = uuid.uuid4().hex
        argv = [str(python), "-m", "core", "run", "-f", str(wf), "--run-id", run_id]
        argv += ["--surface", "tui", "--input", "-"]
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(b"{}")
        proc.stdin.close()
        seen = None
        while seen is None and time.perf_counter() - start < 30:
            if db.exists():
                with contextlib.suppress(sqlite3.Error):
                    conn = sqlite3.connect(db, timeout=5)
                    try:
                        row = conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,))
                        if row.fetchone():
                            seen = time.perf_counter() - start
                    finally:
                        conn.close()
            if seen is None:
                if proc.poll() is not None and proc.returncode not in (0, 40):
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise BenchError(f"spawned executor exited {proc.returncode}: {err[-800:]}")
                time.sleep(0.002)
        proc.wait()
        if seen is None:
            raise BenchError("the spawned executor's run row never appeared")
        out.append(seen)
    return out[1:]


# -- report ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


def report(
    times: dict[str, dict[str, list[float]]],
    versions: dict[str, str],
    n: int,
    cpu: dict[str, dict[str, list[float]]] | None = None,
) -> str:
    a, b = versions  # the timed tool first, the one it is compared with second
    out = [
        f"{a} {versions[a]} vs {b} {versions[b]}, "
        f"{n} iterations, Python {platform.python_version()}, {platform.platform()}",
        "",
        *table(times, "median ms", a, b),
    ]
    if cpu is not None:
        # CPU time moves less than wall time on a busy machine: a second opinion.
        out += ["", "CPU time (user + system, the command and its children):", ""]
        out += table(cpu, "median CPU ms", a, b)
    return "\n".join(out)


def table(data: dict[str, dict[str, list[float]]], what: str, a: str, b: str) -> list[str]:
    med = {c: {t: statistics.median(v) for t, v in per.items()} for c, per in data.items()}
    out = [f"| case | {a} {what} | {b} {what} | {a} / {b} |", "| --- | ---: | ---: | ---: |"]
    for case, m in med.items():
        out.append(f"| {case} | {ms(m[a])} | {ms(m[b])} | {ratio(m[a], m[b])} |")
    if "run (200 steps)" not in med or "run (1 step)" not in med:
        return out
    per_step = {
        tool: (med["run (200 steps)"][tool] - med["run (1 step)"][tool]) / 199 for tool in (a, b)
    }
    out.append(
        f"| per-step overhead ((run200 - run1) / 199) | {ms(per_step[a])} | "
        f"{ms(per_step[b])} | {ratio(per_step[a], per_step[b])} |"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--iterations", type=int, default=15, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--cpf", type=Path, default=None, help="cpf executable to time")
    parser.add_argument(
        "--only",
        action="append",
        metavar="CASE",
        help="time only cases whose name starts with CASE (repeatable); 'per-step' "
        "selects the two runs the per-step overhead comes from, and skips the spawn row",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="time cpf on this database (CPF_DATABASE_URL, e.g. postgresql+psycopg://...) "
        "against cpf on SQLite, instead of checkpointflow; runs accumulate in it",
    )
    parser.add_argument(
        "--fresh-store",
        action="store_true",
        help="a new base dir (and store) for every command instead of one per tool",
    )
    parser.add_argument(
        "--checkpointflow",
        type=Path,
        default=None,
        help=f"checkpointflow cpf executable (default: bench/.venv-checkpointflow, "
        f"created with checkpointflow=={CF_VERSION})",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be >= 1 and --warmup >= 0")

    cpf = (args.cpf or default_cpf()).resolve()
    if not cpf.exists():
        parser.error(f"cpf not found at {cpf} (install the project venv or pass --cpf)")
    try:
        if args.database_url:
            # The same cpf on the database server and on SQLite, side by side.
            cf = Path("")
            DATABASE_URLS["cpf-db"] = args.database_url
            tools = {"cpf-db": str(cpf), "cpf": str(cpf)}
        else:
            cf = args.checkpointflow.resolve() if args.checkpointflow else ensure_checkpointflow()
            tools = {"cpf": str(cpf), "checkpointflow": str(cf)}
        versions = {name: tool_version(Path(exe)) or "?" for name, exe in tools.items()}
        with tempfile.TemporaryDirectory(prefix="cpf-bench-") as tmp:
            scratch = Path(tmp)
            wf_dir = scratch / "workflows"
            wf_dir.mkdir()
            cf_exe = str(cf) if cf.name else ""
            cases = select_cases(make_cases(write_workflows(wf_dir), cf_exe), args.only)
            if not cases:
                parser.error(f"no case matches --only {args.only}")
            times, cpu = measure(
                tools, cases, args.iterations, args.warmup, scratch, fresh=args.fresh_store
            )
            spawn = (
                None
                if args.only or args.database_url
                else spawn_times(cpf, wf_dir / "wait.yaml", args.iterations, scratch)
            )
    except BenchError as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"benchmark aborted: {exc}", file=sys.stderr)
        return 1
    print("store: " + ("fresh per command" if args.fresh_store else "one per tool, kept"))
    print(report(times, versions, args.iterations, cpu if os.name == "posix" else None))
    if spawn is not None:
        print(
            f'\nexecutor spawn (TUI "Starting run…" until the run row exists), cpf: '
            f"median {ms(statistics.median(spawn))} ms, max {ms(max(spawn))} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
