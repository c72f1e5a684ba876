"""Regenerate the README pictures of the TUI: SVG (Textual's own export) and PNG.

    .venv/bin/python screenshots/make_screenshots.py            # 120x36, into screenshots/
    .venv/bin/python screenshots/make_screenshots.py --size 160x50 --out /tmp/shots

The app runs headless on a demo store seeded with fixed ids and times and a frozen clock
(tests/tui_seed.py, the data of the snapshot tests), so the pictures only change when the
screens do. The Workflows picture browses the repository's `examples/`.

PNG: `rsvg-convert` (Debian: apt-get install librsvg2-bin fonts-firacode), else `cairosvg`
(pip), else PNGs are skipped with a note. Textual writes spaces as U+00A0 and librsvg
drops them at the start of a text run, so a copy of the SVG with plain spaces (and
xml:space="preserve") is what gets converted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


async def capture(out: Path, size: tuple[int, int]) -> list[Path]:
    from tui_seed import IDS, NOW, screen_ready, wait_until

    from cpf_tui.app import CpfApp
    from cpf_tui.clock import frozen
    from cpf_tui.config import TuiConfig
    from cpf_tui.screens.approval import ApprovalScreen
    from cpf_tui.screens.run_view import RunScreen
    from cpf_tui.screens.runs import RunsScreen
    from cpf_tui.screens.workflows import WorkflowsScreen

    saved: list[Path] = []
    app = CpfApp(["examples"], clock=frozen(NOW), config=TuiConfig(), start_area="workflows")

    def save(name: str) -> None:
        path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))
        saved.append(path)

    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: screen_ready(app, WorkflowsScreen), what="workflows")
        screen: Any = app.screen
        approval = (ROOT / "examples" / "approval.yaml").resolve()
        if approval in screen.file_nodes:
            screen.query_one("#wf-tree").move_cursor(screen.file_nodes[approval])
        await pilot.pause(0.3)
        save("workflows")

        await pilot.press("2")
        await wait_until(pilot, lambda: screen_ready(app, RunsScreen), what="runs")
        await pilot.pause(0.3)
        save("runs")

        app.open_run(IDS["streaming"])
        await wait_until(pilot, lambda: screen_ready(app, RunScreen), what="run view")
        view: Any = app.screen
        await wait_until(pilot, lambda: view.feed is not None and view.feed.loaded, what="log")
        await pilot.pause(0.3)
        save("run-live-log")

        app.open_approval(IDS["approval"])
        await wait_until(pilot, lambda: screen_ready(app, ApprovalScreen), what="approval")
        await pilot.pause(0.3)
        save("approval-form")
    return saved


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
    parser.add_argument("--size", default="120x36", help="terminal COLSxROWS (default 120x36)")
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="output folder")
    parser.add_argument("--png-width", type=int, default=1400)
    args = parser.parse_args()
    cols, rows = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="cpf-shots-") as tmp:
        os.environ["CHECKPOINTFLOW_BASE_DIR"] = str(Path(tmp) / "base")
        os.environ.pop("CPF_DATABASE_URL", None)
        os.environ["CPF_TUI_CONFIG"] = ""
        import tui_seed

        tui_seed.seed(Path(tmp) / "flows")
        os.chdir(ROOT)  # the Workflows picture shows "examples/..."
        svgs = asyncio.run(capture(out, (cols, rows)))

    missing_png = False
    for svg in svgs:
        png = to_png(svg, args.png_width)
        missing_png |= png is None
        print(svg.relative_to(out.parent) if out.parent in svg.parents else svg)
        if png is not None:
            print(png.relative_to(out.parent) if out.parent in png.parents else png)
    if missing_png:
        print("no SVG->PNG converter: apt-get install librsvg2-bin, or pip install cairosvg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
