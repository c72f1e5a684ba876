"""Regenerate the README pictures of the TUI from the shipped examples, run for real.

    .venv/bin/python screenshots/make_screenshots.py             # into screenshots/
    .venv/bin/python screenshots/make_screenshots.py --out /tmp/shots

1. A temporary store is filled by the real `cpf` CLI running `examples/*.yaml` (hello,
   approval twice — one left waiting, one approved with `cpf resume` — foreach, parallel,
   switch, subworkflow, flaky_retry, streaming, and api against a local `http.server`).
2. Only then are ids and times pinned, so the pictures change only when the screens do:
   every run id is replaced by a fixed one (everywhere it appears, output included) and
   every timestamp is shifted so the first run starts at 2026-01-15 10:00 UTC; the app's
   clock is frozen 30 s after the last write. Durations stay the ones measured.
3. The app runs headless (Textual's `run_test`) at 80x24 and 120x36 and saves Workflows,
   Runs, the approval form and a run view following `examples/streaming.yaml` while it
   streams (a fresh real run, captured mid-stream; its id and times are the real ones).

Files: `<screen>-80x24.svg/png` and `<screen>.svg/png` (120 columns, the README's).
PNG: `rsvg-convert` (Debian: apt-get install librsvg2-bin), else `cairosvg` (pip), else
PNGs are skipped with a note. Textual writes spaces as U+00A0 and librsvg drops them at
the start of a text run, so a copy of the SVG with plain spaces (and xml:space="preserve")
is what gets converted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CPF = str(Path(sys.executable).parent / "cpf")
START = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00")
SIZES = {"80x24": (80, 24), "": (120, 36)}

# (example, --input, what to do after) in the order they run.
RUNS: list[tuple[str, dict[str, Any] | None, str]] = [
    ("hello.yaml", {"name": "Ada", "number": 7}, ""),
    ("approval.yaml", {"change": "bump openssl", "environment": "staging"}, "approve"),
    ("foreach.yaml", None, ""),
    ("parallel.yaml", None, ""),
    ("switch.yaml", {"env": "prod"}, ""),
    ("subworkflow.yaml", {"version": "2.1.0"}, ""),
    ("flaky_retry.yaml", None, ""),
    ("streaming.yaml", None, ""),
    ("api.yaml", {"base_url": "http://127.0.0.1:{port}"}, ""),
    ("approval.yaml", {"change": "rotate the TLS keys", "environment": "production"}, ""),
]


def cpf(*args: str) -> dict[str, Any]:
    proc = subprocess.run([CPF, *args], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def run_examples() -> list[str]:
    """Run the examples with the real CLI; returns the run ids in order."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=ROOT / "examples",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ids = []
    try:
        time.sleep(0.5)  # the server binds
        for name, inputs, then in RUNS:
            args = ["run", "-f", f"examples/{name}"]
            if inputs is not None:
                args += ["--input", json.dumps(inputs).replace("{port}", str(port))]
            env = cpf(*args)
            if "run_id" not in env:
                raise SystemExit(f"{name}: {env}")
            if then == "approve":
                event = Path(tempfile.mkdtemp()) / "event.json"
                event.write_text(json.dumps({"decision": "approve", "comment": "looks right"}))
                env = cpf(
                    "resume", "--run-id", env["run_id"], "--event", "change_review",
                    "--input", f"@{event}",
                )  # fmt: skip
            print(f"  {name}: {env['status']}")
            ids.append(env["run_id"])
    finally:
        server.terminate()
        server.wait()
    return ids


def pin(base: Path, ids: list[str]) -> datetime:
    """Fixed run ids and times in the store (see the module docstring); returns the time
    the app's clock is frozen at."""
    db = sqlite3.connect(base / "cpf.db")
    # Stable ids that look like the store's own (uuid4 hex), one per example run.
    fixed = {
        old: hashlib.sha256(f"{RUNS[n][0]}#{n}".encode()).hexdigest()[:32]
        for n, old in enumerate(ids)
    }
    tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
    stamps: list[datetime] = []
    for table in tables:
        for row in db.execute(f"select * from {table}"):
            for value in row:
                if isinstance(value, str):
                    stamps += [datetime.fromisoformat(m) for m in STAMP.findall(value)]
    shift = START - min(stamps)

    def moved(text: str) -> str:
        text = STAMP.sub(
            lambda m: (datetime.fromisoformat(m.group()) + shift).strftime(
                "%Y-%m-%dT%H:%M:%S.%f+00:00"
            ),
            text,
        )
        for old, new in fixed.items():
            text = text.replace(old, new)
        return text

    for table in tables:
        columns = [r[1] for r in db.execute(f"pragma table_info({table})")]
        rows = db.execute(f"select rowid, * from {table}").fetchall()
        for rowid, *values in rows:
            new = [moved(v) if isinstance(v, str) else v for v in values]
            if new != values:
                sets = ", ".join(f'"{c}" = ?' for c in columns)
                db.execute(f"update {table} set {sets} where rowid = ?", [*new, rowid])
    db.commit()
    db.close()
    for old, new in fixed.items():
        folder = base / "runs" / old
        if folder.exists():
            folder.rename(base / "runs" / new)
    return max(stamps) + shift + timedelta(seconds=30)


async def capture_store(out: Path, size: tuple[int, int], suffix: str, now: datetime) -> list[Path]:
    """Workflows, Runs and the approval form of the pinned store."""
    from cpf_tui.app import CpfApp
    from cpf_tui.clock import frozen
    from cpf_tui.config import TuiConfig
    from cpf_tui.screens.approval import ApprovalScreen
    from cpf_tui.screens.runs import RunsScreen
    from cpf_tui.screens.workflows import WorkflowsScreen

    saved: list[Path] = []
    app = CpfApp(["examples"], clock=frozen(now), config=TuiConfig(), start_area="workflows")

    def save(name: str) -> None:
        filename = f"{name}-{suffix}.svg" if suffix else f"{name}.svg"
        saved.append(Path(app.save_screenshot(filename=filename, path=str(out))))

    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: ready(app, WorkflowsScreen))
        screen: Any = app.screen
        approval = (ROOT / "examples" / "approval.yaml").resolve()
        screen.query_one("#wf-tree").move_cursor(screen.file_nodes[approval])
        await pilot.pause(0.3)
        save("workflows")

        await pilot.press("2")
        await until(pilot, lambda: ready(app, RunsScreen))
        await pilot.pause(0.3)
        save("runs")

        waiting = [r for r in app.waiting if r["workflow_id"] == "approval"]
        app.open_approval(waiting[0]["run_id"])  # type: ignore[attr-defined]
        await until(pilot, lambda: ready(app, ApprovalScreen))
        await pilot.pause(0.5)
        steady(app)
        save("approval-form")
    return saved


async def capture_live(out: Path, size: tuple[int, int], suffix: str) -> list[Path]:
    """The run view of a fresh `examples/streaming.yaml` run, while it streams."""
    from core import queries
    from core.spawn import spawn_run
    from cpf_tui.app import CpfApp
    from cpf_tui.config import TuiConfig
    from cpf_tui.screens.run_view import RunScreen
    from cpf_tui.widgets.logview import LogView

    app = CpfApp(["examples"], config=TuiConfig(), start_area="runs")
    filename = f"run-live-log-{suffix}.svg" if suffix else "run-live-log.svg"
    async with app.run_test(size=size) as pilot:
        for _ in range(3):  # on a busy machine the run may end before it is caught
            spawned = spawn_run(str(ROOT / "examples" / "streaming.yaml"), {}, actor=None)
            app.open_run(spawned.run_id, spawned=spawned)  # type: ignore[attr-defined]
            await until(pilot, lambda: ready(app, RunScreen))

            def ticks() -> int:
                view = app.screen.query_one(LogView)
                return sum(line.startswith("tick") for line in view.lines())

            await until(pilot, lambda s=spawned: ticks() >= 12 or s.process.poll() is not None)
            await pilot.pause(0.2)
            live = (queries.get_run(spawned.run_id) or {}).get("status") == "running"
            if live:
                path = Path(app.save_screenshot(filename=filename, path=str(out)))
            spawned.process.wait(timeout=60)
            if live:
                return [path]
            app.pop_screen()
    raise SystemExit("the streaming run always ended before it could be captured")


def ready(app: Any, cls: type) -> bool:
    screen = app.screen
    loaded = isinstance(screen, cls) and getattr(screen, "loaded", True)
    return loaded and bool(screen.query("FooterKey"))


def steady(app: Any) -> None:
    from textual.widgets import Input, TextArea

    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    for widget in app.screen.query(TextArea):
        widget.cursor_blink = False


async def until(pilot: Any, predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {predicate}")
        await pilot.pause(0.05)


def to_png(svg: Path, width: int) -> Path | None:
    png = svg.with_suffix(".png")
    text = svg.read_text(encoding="utf-8").replace("&#160;", " ")
    text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    try:
        if shutil.which("rsvg-convert"):
            subprocess.run(["rsvg-convert", "-w", str(width), tmp.name, "-o", str(png)], check=True)
            return png
        try:
            import cairosvg  # type: ignore[import-not-found]
        except ImportError:
            return None
        cairosvg.svg2png(url=tmp.name, write_to=str(png), output_width=width)
        return png
    finally:
        os.unlink(tmp.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="output folder")
    parser.add_argument("--png-width", type=int, default=1400, help="PNG width of 120 columns")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    svgs: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="cpf-shots-") as tmp:
        base = Path(tmp) / "base"
        os.environ["CHECKPOINTFLOW_BASE_DIR"] = str(base)
        os.environ.pop("CPF_DATABASE_URL", None)
        os.environ["CPF_TUI_CONFIG"] = ""
        os.chdir(ROOT)  # the pictures show "examples/..."
        print("running the examples:")
        now = pin(base, run_examples())
        for suffix, size in SIZES.items():
            svgs += asyncio.run(capture_store(out, size, suffix, now))
        for suffix, size in SIZES.items():
            svgs += asyncio.run(capture_live(out, size, suffix))

    missing_png = False
    for svg in svgs:
        cols = int(svg.stem.rsplit("-", 1)[-1].split("x")[0]) if "x" in svg.stem else 120
        png = to_png(svg, args.png_width * cols // 120)
        missing_png |= png is None
        print(svg.relative_to(out.parent) if out.parent in svg.parents else svg)
    if missing_png:
        print("no SVG->PNG converter: apt-get install librsvg2-bin, or pip install cairosvg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
