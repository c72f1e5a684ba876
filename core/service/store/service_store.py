"""The store of `cpf serve`: one object holding the SQL of every area of the service.

`ServiceStore` is composed of one class per area, each in its own module with its
statements: keys.py (accounts, API keys), checkpoints.py (API workflows and their
checkpoints, the read-only workflows of cpf runs, expiry), agents.py, webhooks.py
(webhooks, the outbox, the delivery log), ratelimit.py; over base.py (connections,
transactions, transient errors) and tables.py (the `svc_*` tables).

Only SQL lives here; the decisions (If-Match, expiry, what an error is) are made by the
service's areas (core/service/*.py), which call these methods inside one
`ServiceStore.write()` (or `read()`) transaction per request.

Every statement is SQLAlchemy Core on the SQLModel tables, written once. How it runs
depends on the store:

- any database: through the engine's `Store` connections (SQLAlchemy executes it);
- SQLite (the default store): compiled once to SQLite SQL and run on a per-thread
  `sqlite3` connection to the same file. A request then costs a handful of C calls
  instead of SQLAlchemy's per-statement machinery, which was most of the server's CPU
  per save. Both paths are tested (tests/test_service_store.py).

Writes of one process also take a process-wide lock before `BEGIN IMMEDIATE`: the
server's worker threads queue on a cheap mutex instead of SQLite's busy handler, which
sleeps in growing steps and wrecks tail latency. Other processes (cpf runs, another
server) still meet at SQLite's write lock (busy timeout 30 s).

Several `cpf serve` replicas may share one database. What keeps them correct is in the
database, never in a process:

- a save locks its workflow row (`SELECT ... FOR UPDATE`; on SQLite `BEGIN IMMEDIATE`
  already serializes every writer of the file) and moves the head with a compare-and-set
  on the head it read, `total = total + 1` computed in SQL;
- webhook deliveries are claimed with `FOR UPDATE SKIP LOCKED` (a conditional lease
  on SQLite), so one replica POSTs each attempt;
- the expiry sweeper takes each expired workflow with `FOR UPDATE SKIP LOCKED` and
  re-checks it, so one replica expires it and announces it once;
- the rate limit is one counter row per key, updated by one atomic upsert on the
  database's clock.

On PostgreSQL the process-wide write lock is not taken: row locks do that job, and
requests of one replica then run concurrently.

Connections (PostgreSQL and other servers): the service has its own bounded pool
(`pool_size` connections, no overflow; a request waits up to `pool_timeout` s for a
free one), so a replica never holds more than that. Errors that leave nothing written
(cannot connect, too many clients, connection reset before COMMIT, serialization
failure, deadlock) are raised as `TransientStoreError`, which the checkpoint service
retries with backoff within a deadline; an error during COMMIT is never retried (the
commit may have happened).
"""

from __future__ import annotations

from core.service.store.agents import AgentsSql
from core.service.store.base import INTEGRITY_ERRORS, PoolConfig, TransientStoreError
from core.service.store.checkpoints import CheckpointsSql
from core.service.store.keys import KeysSql
from core.service.store.ratelimit import RateLimitSql
from core.service.store.webhooks import WebhooksSql

__all__ = ["INTEGRITY_ERRORS", "PoolConfig", "ServiceStore", "TransientStoreError"]


class ServiceStore(KeysSql, CheckpointsSql, AgentsSql, WebhooksSql, RateLimitSql):
    """The service's persistence over the engine's `Store` (same database)."""
