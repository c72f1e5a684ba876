"""`--input` parsing for run and resume: inline JSON, `@path`, or `-` for stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePath
from typing import Any

from core.envelope import ErrorCode, ValidationError


def read_input(raw: str, *, error_code: str) -> Any:
    """Parse an `--input` value. Errors carry `error_code` (input vs event payload)."""
    text = raw
    if raw == "-":
        text = sys.stdin.read()
    elif raw.startswith("@"):
        rel = raw[1:]
        if ".." in PurePath(rel).parts:
            raise ValidationError(error_code, f"Input file path must not contain '..': {rel}")
        path = Path(rel)
        if not path.is_file():
            raise ValidationError(ErrorCode.ERR_FILE_NOT_FOUND, f"Input file not found: {rel}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(error_code, f"Cannot read input file {rel}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(error_code, f"Invalid JSON input: {exc}") from exc
