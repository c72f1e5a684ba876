"""SQLModel tables of the cpf store.

Tables are declared once here; `core.store.store` reads and writes them through
SQLAlchemy Core statements on `Model.__table__` (the hot path of a step costs two
small transactions, and the ORM unit-of-work would triple that).

Timestamps are ISO-8601 UTC strings with microseconds: they sort as text, read the
same on SQLite and PostgreSQL, and go into envelopes unchanged.
"""

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# A change to a table needs a revision: `python -m core.store.migrate revision -m "..."`
# (see core/store/migrate.py); the schema version is the head revision's number.


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


def _fk_run() -> Any:
    return Field(
        sa_column=Column(String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False)
    )


class Meta(SQLModel, table=True):
    __tablename__ = "cpf_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status", "status"),
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_workflow_id", "workflow_id"),
    )

    run_id: str = Field(primary_key=True, max_length=64)
    account: str = Field(default="local", max_length=128)
    workflow_id: str
    workflow_name: str | None = None
    workflow_description: str | None = None
    workflow_version: str | None = None
    workflow_path: str
    workflow_hash: str
    status: str = Field(max_length=16)
    current_step_id: str | None = None
    # What the run waits for: event_name, step_id, input_schema, audience, prompt,
    # summary (interpolated), risk_level, timeout_at.
    wait: dict[str, Any] | None = _json()
    inputs: dict[str, Any] | None = _json()
    step_outputs: dict[str, Any] | None = _json()
    result: Any = _json()
    error: dict[str, Any] | None = _json()
    # Compare-and-set counter: every state change is `... WHERE version = :seen`.
    version: int = 0
    # The process executing the run (core.liveness): "host:pid:start-ticks:host-instance"
    # for display and the local pid check; its random id, which its lease renewals
    # match; the lease's end in database time (set by SQL only). `heartbeat_at` is the
    # executor's own clock: shown, and read only for rows without a lease.
    executor: str | None = None
    executor_id: str | None = None
    lease_expires_at: str | None = None
    heartbeat_at: str | None = None
    attempt_seq: int = 0
    checkpoint_step: int = -1
    created_at: str
    updated_at: str
    finished_at: str | None = None


class StepAttempt(SQLModel, table=True):
    __tablename__ = "step_attempts"
    __table_args__ = (Index("ix_step_attempts_run", "run_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = _fk_run()
    seq: int
    step_id: str
    step_kind: str
    attempt: int = 1
    # Nested records (foreach iterations, parallel branches, sub-workflow steps) point here.
    parent_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("step_attempts.id", ondelete="CASCADE")),
    )
    # The nested context the attempt ran in ("loop[2]", "fan", "deploy"); None at top level.
    context: str | None = None
    status: str = Field(max_length=16)
    exit_code: int | None = None
    error_code: str | None = None
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    outputs: Any = _json()
    stdout_path: str | None = None
    stderr_path: str | None = None
    # The step's process group: `pid` is its id, `proc` "host:pgid:leader-start-ticks",
    # committed before the command may run, so a group left by a dead executor is
    # found and stopped (and never confused with a group that reused the number).
    pid: int | None = None
    proc: str | None = None
    output_bytes: int = 0
    truncated: bool = False
    started_at: str
    finished_at: str | None = None


class OutputChunk(SQLModel, table=True):
    __tablename__ = "output_chunks"
    __table_args__ = (Index("ix_output_chunks_run", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = _fk_run()
    attempt_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("step_attempts.id", ondelete="CASCADE"), nullable=False
        )
    )
    step_id: str
    stream: str = Field(max_length=8)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run", "run_id", "created_at"),)

    event_id: str = Field(primary_key=True, max_length=64)
    run_id: str = _fk_run()
    step_id: str | None = None
    # "event" (a resume payload), "cancel", "retry", "timeout".
    kind: str = Field(default="event", max_length=16)
    event_name: str | None = None
    data: Any = _json()
    actor: str | None = None
    surface: str | None = Field(default=None, max_length=16)
    created_at: str


class Checkpoint(SQLModel, table=True):
    """A SnapState checkpoint: runs write one per committed step transition
    (account `local`, workflow_id = run id, label = step id)."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("account", "workflow_id", "step", name="uq_checkpoint_step"),
        Index("ix_checkpoints_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    checkpoint_id: str
    account: str = Field(default="local", max_length=128)
    workflow_id: str = Field(max_length=128)
    run_id: str | None = Field(
        default=None,
        sa_column=Column(String(64), ForeignKey("runs.run_id", ondelete="CASCADE")),
    )
    # Up to MAX_STEP (2**53 - 1): 64 bits on every database (PostgreSQL's INTEGER is 32).
    step: int = Field(sa_type=BigInteger)
    label: str | None = None
    state: Any = _json(nullable=False)
    meta: Any = Field(default=None, sa_column=Column("metadata", JSON))
    etag: str
    diff_from_previous: Any = _json()
    size_bytes: int
    created_at: str
    expires_at: str | None = None


TABLES = [Meta, Run, StepAttempt, OutputChunk, Event, Checkpoint]


def load_all_tables() -> None:
    """Define every table of the store's one schema in `SQLModel.metadata`: the engine's
    (above) and the checkpoint service's (`core/service/store/tables.py`).

    The database has one schema (one version, one DDL, one upgrade path), so this is the
    one place where core/store names a module of the service: its table definitions,
    never its logic. Called only where the whole schema is created or compiled, so a
    `cpf run` does not pay for defining the service's tables."""
    import core.service.store.tables  # noqa: F401
