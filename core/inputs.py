"""`--input` parsing for run and resume: inline JSON, `@path`, or `-` for stdin.

The value must be strict JSON within `core.limits` (no NaN, bounded depth and size,
valid Unicode); anything else is refused with `error_code` before a run is touched."""

from __future__ import annotations

import sys
from pathlib import PurePath
from typing import Any

from core import limits
from core.envelope import ErrorCode, ValidationError


def read_input(raw: str, *, error_code: str) -> Any:
    """Parse an `--input` value. Errors carry `error_code` (input vs event payload)."""
    text = raw
    if raw == "-":
        text = limits.read_stream(sys.stdin.buffer, what="Input on stdin", error_code=error_code)
    elif raw.startswith("@"):
        rel = raw[1:]
        if "\0" not in rel and ".." in PurePath(rel).parts:
            raise ValidationError(
                error_code, f"Input file path must not contain '..': {limits.shown(rel)}"
            )
        data = limits.read_file(
            rel,
            what="Input file",
            missing_code=ErrorCode.ERR_FILE_NOT_FOUND,
            error_code=error_code,
        )
        text = limits.decode(data, what=f"Input file {limits.shown(rel)}", error_code=error_code)
    elif limits.has_surrogate(raw):
        raise ValidationError(error_code, "Invalid JSON input: the text is not valid UTF-8")
    try:
        return limits.loads(text)
    except limits.JsonProblem as exc:
        raise ValidationError(error_code, f"Invalid JSON input: {exc}") from None
