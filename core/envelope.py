"""Result envelopes, exit codes and error codes: the checkpointflow-run/v1 contract.

Every CLI command returns an `Envelope`; `emit()` prints it and gives the exit code.
Errors raised anywhere in the engine are `CpfError`s carrying a code, an exit code
and optional details, turned into a failure envelope at the edge:

    CpfError                 any failure with an error code and exit code
     +-- ValidationError     exit 10 (workflow, input, event payload, unknown run)
     +-- RuntimeStateError   exit 20 (run not waiting, event mismatch)
     +-- StepFailure         exit 30 (a step failed; the run is marked failed)
     +-- PersistenceError    exit 60 (the store cannot be opened or written)
     +-- ConcurrencyError    exit 70 (a compare-and-set on the run lost a race)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

SCHEMA_VERSION = "checkpointflow-run/v1"


class ExitCode(IntEnum):
    SUCCESS = 0
    VALIDATION_ERROR = 10
    RUNTIME_ERROR = 20
    STEP_FAILED = 30
    WAITING = 40
    CANCELLED = 50
    PERSISTENCE_ERROR = 60
    CONCURRENCY_ERROR = 70
    UNSUPPORTED = 80
    INTERNAL_ERROR = 90


class ErrorCode(StrEnum):
    ERR_VALIDATION_WORKFLOW = "ERR_VALIDATION_WORKFLOW"
    ERR_VALIDATION_INPUT = "ERR_VALIDATION_INPUT"
    ERR_VALIDATION_EVENT_INPUT = "ERR_VALIDATION_EVENT_INPUT"
    ERR_FILE_NOT_FOUND = "ERR_FILE_NOT_FOUND"
    ERR_FILE_EXISTS = "ERR_FILE_EXISTS"
    ERR_YAML_PARSE = "ERR_YAML_PARSE"
    ERR_STEP_FAILED = "ERR_STEP_FAILED"
    ERR_STEP_OUTPUT_INVALID = "ERR_STEP_OUTPUT_INVALID"
    ERR_TIMEOUT = "ERR_TIMEOUT"
    ERR_UNSUPPORTED_STEP = "ERR_UNSUPPORTED_STEP"
    ERR_DUPLICATE_STEP_ID = "ERR_DUPLICATE_STEP_ID"
    ERR_PERSISTENCE = "ERR_PERSISTENCE"
    ERR_RESUME_EVENT_MISMATCH = "ERR_RESUME_EVENT_MISMATCH"
    ERR_RUN_NOT_WAITING = "ERR_RUN_NOT_WAITING"
    ERR_RUN_NOT_FOUND = "ERR_RUN_NOT_FOUND"
    ERR_INTERNAL = "ERR_INTERNAL"
    # cpf additions
    ERR_CONCURRENCY = "ERR_CONCURRENCY"
    ERR_RUN_INTERRUPTED = "ERR_RUN_INTERRUPTED"
    ERR_CANCELLED = "ERR_CANCELLED"


class CpfError(Exception):
    """A failure that maps onto an error envelope."""

    exit_code: int = ExitCode.INTERNAL_ERROR

    def __init__(
        self,
        code: str,
        message: str,
        *,
        exit_code: int | None = None,
        details: Any = None,
        step_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        if exit_code is not None:
            self.exit_code = int(exit_code)
        self.details = details
        self.step_id = step_id

    def to_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.step_id is not None:
            err["step_id"] = self.step_id
        if self.details is not None:
            err["details"] = self.details
        return err


class ValidationError(CpfError):
    exit_code = ExitCode.VALIDATION_ERROR


class RuntimeStateError(CpfError):
    exit_code = ExitCode.RUNTIME_ERROR


class StepFailure(CpfError):
    exit_code = ExitCode.STEP_FAILED


class PersistenceError(CpfError):
    exit_code = ExitCode.PERSISTENCE_ERROR

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(ErrorCode.ERR_PERSISTENCE, message, **kw)


class ConcurrencyError(CpfError):
    exit_code = ExitCode.CONCURRENCY_ERROR

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(ErrorCode.ERR_CONCURRENCY, message, **kw)


# Field order of the printed envelope (checkpointflow prints pydantic field order).
_FIELDS = (
    "schema_version",
    "request_id",
    "ok",
    "command",
    "status",
    "exit_code",
    "run_id",
    "workflow_id",
    "workflow_name",
    "workflow_description",
    "workflow_version",
    "current_step_id",
    "checkpoint_id",
    "started_at",
    "updated_at",
    "warnings",
    "result",
    "error",
    "wait",
)


@dataclass
class Envelope:
    ok: bool
    command: str
    status: str
    exit_code: int
    run_id: str | None = None
    workflow_id: str | None = None
    workflow_name: str | None = None
    workflow_description: str | None = None
    workflow_version: str | None = None
    current_step_id: str | None = None
    checkpoint_id: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    warnings: list[str] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    wait: dict[str, Any] | None = None
    request_id: str | None = None
    schema_version: str = field(default=SCHEMA_VERSION)

    @classmethod
    def success(
        cls, command: str, *, status: str = "completed", exit_code: int = 0, **kw: Any
    ) -> Envelope:
        return cls(ok=True, command=command, status=status, exit_code=int(exit_code), **kw)

    @classmethod
    def failure(cls, command: str, err: CpfError, **kw: Any) -> Envelope:
        return cls(
            ok=False,
            command=command,
            status="failed",
            exit_code=int(err.exit_code),
            error=err.to_error(),
            **kw,
        )

    def to_dict(self) -> dict[str, Any]:
        """The envelope as JSON data, `None` fields omitted (as checkpointflow does)."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = _drop_none(value) if name in ("error", "wait") else value
        return out

    def to_json(self) -> str:
        """Strict JSON (never NaN/Infinity, never a lone surrogate): a value that slipped
        past the input checks is rendered safely rather than breaking the envelope."""
        data = self.to_dict()
        try:
            text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=str)
            text.encode("utf-8")
            return text
        except (ValueError, TypeError, RecursionError, UnicodeError):
            return json.dumps(_printable(data), indent=2, ensure_ascii=False, allow_nan=False)


def _printable(value: Any, depth: int = 0) -> Any:
    """`value` as strict JSON data: non-finite numbers become null, undecodable text is
    escaped, cycles and runaway nesting are cut, anything else becomes its `str()`."""
    if depth > 200:
        return "..."
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 14_000 else "(integer too large)"
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {_printable(str(k)): _printable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v, depth + 1) for v in value]
    return _printable(str(value))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def emit(envelope: Envelope) -> int:
    """Print the envelope on stdout; return the process exit status (= exit_code)."""
    import sys

    text = envelope.to_json() + "\n"
    # UTF-8 whatever the locale says: the envelope is UTF-8 by contract.
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        out.write(text.encode("utf-8"))
    sys.stdout.flush()
    return int(envelope.exit_code)
