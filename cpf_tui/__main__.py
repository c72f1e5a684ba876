"""`cpf-tui [PATH ...]` and `python -m cpf_tui [PATH ...]` (what `cpf tui` runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cpf-tui",
        description="Browse workflows and runs, watch output live, answer waiting runs.",
    )
    parser.add_argument("paths", nargs="*", default=["."], help="workflow files or folders")
    parser.add_argument("--theme", help="a Textual theme name (e.g. nord, textual-light)")
    parser.add_argument(
        "--area", choices=["workflows", "runs", "waiting"], help="what to show first"
    )
    parser.add_argument("--config", help="settings file (default: ~/.config/cpf/tui.yaml)")
    args = parser.parse_args(argv)

    from cpf_tui.config import load_config

    config = load_config(Path(args.config).expanduser() if args.config else None)
    if args.config and not Path(args.config).expanduser().is_file():
        print(f"cpf-tui: settings file not found: {args.config}", file=sys.stderr)
        return 2
    if args.theme:
        config.theme = args.theme

    from cpf_tui.app import CpfApp

    app = CpfApp(args.paths, config=config, start_area=args.area)
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
