"""Webhook delivery: signing, and the worker that drains the outbox.

Events are written to the outbox (`svc_webhook_deliveries`) in the same transaction as
the change they announce (core.service.webhooks). This worker leases due rows, POSTs them,
and records each attempt; failures are retried with backoff, then given up. Every
attempt is visible in the delivery log (`GET /webhooks/{id}/deliveries`).

What a receiver gets (documented in docs/service.md):

    POST <url>
    Content-Type: application/json
    User-Agent: cpf-serve/<version> (CheckpointService/1.0)
    X-Checkpoint-Event: checkpoint.saved
    X-Checkpoint-Delivery: dlv_...         same on every retry of one event
    X-Checkpoint-Timestamp: 1764151908     unix seconds of this attempt
    X-Checkpoint-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>   (if a secret is set)

    {"event": ..., "webhook_id": ..., "delivery_id": ..., "attempt": 1,
     "timestamp": "<ISO of this attempt>", "sent_at": <same unix seconds>, "data": {...}}

The signature covers the body, and the body repeats the delivery id and the timestamp,
so a receiver that checks the signature can trust both: refuse old timestamps and
delivery ids it has already processed, and captured deliveries cannot be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import anyio

from core import __version__, netguard
from core.service.api import CheckpointService

log = logging.getLogger("cpf.serve.webhooks")

# Seconds to wait before attempt 2, 3, ...; after the last one the delivery is given up.
BACKOFF = (1, 5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600)
MAX_ATTEMPTS = len(BACKOFF) + 1
TIMEOUT = 5.0
LEASE = 60.0
POLL = 1.0
CONCURRENCY = 8

# Targets on loopback, private, link-local... networks are refused unless this is set
# (local development and tests), at registration and again at every delivery.
ALLOW_PRIVATE_ENV = "CPF_WEBHOOK_ALLOW_PRIVATE"
OPT_IN_HINT = (
    "; start cpf serve with --allow-private-webhooks (or CPF_WEBHOOK_ALLOW_PRIVATE=1) to allow it"
)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_request(delivery: dict[str, Any], now: float | None = None) -> tuple[bytes, dict]:
    """Body and headers of one attempt of a delivery."""
    now = time.time() if now is None else now
    attempt = int(delivery["attempts"]) + 1
    iso = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
    payload = {
        "event": delivery["event"],
        "webhook_id": delivery["webhook_id"],
        "delivery_id": delivery["delivery_id"],
        "attempt": attempt,
        "timestamp": iso,
        "sent_at": int(now),
        "data": delivery["data"],
    }
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"cpf-serve/{__version__} (CheckpointService/1.0)",
        "X-Checkpoint-Event": delivery["event"],
        "X-Checkpoint-Delivery": delivery["delivery_id"],
        "X-Checkpoint-Timestamp": str(int(now)),
    }
    if delivery.get("secret"):
        headers["X-Checkpoint-Signature"] = sign(delivery["secret"], body)
    return body, headers


def allow_private() -> bool:
    """`cpf serve --allow-private-webhooks` sets this variable for its own process."""
    return netguard.env_flag(ALLOW_PRIVATE_ENV)


def check_target(url: str) -> netguard.Target:
    """Resolve once and check the webhook URL's addresses (raises netguard.Refused)."""
    return netguard.check_url(url, allow_private=allow_private(), hint=OPT_IN_HINT)


async def post(client: Any, delivery: dict[str, Any]) -> tuple[int | None, str | None]:
    """One attempt: (HTTP status, error). A refused target is a failed attempt."""
    url = delivery["url"]
    try:
        # getaddrinfo blocks: resolve in a worker thread, then connect to what it checked.
        target = await anyio.to_thread.run_sync(check_target, url)
    except netguard.Refused as exc:
        return None, f"refused: {exc}"[:500]
    body, headers = build_request(delivery)
    try:
        with netguard.pinned(target):
            resp = await client.post(url, content=body, headers=headers)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    status = resp.status_code
    return status, None if 200 <= status < 300 else f"HTTP {status}"


class DeliveryWorker:
    """Drains the outbox while the server runs (one asyncio task)."""

    def __init__(self, svc: CheckpointService) -> None:
        self.svc = svc
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem = asyncio.Semaphore(CONCURRENCY)
        self._inflight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Thread-safe: called by the checkpoint service after it enqueued deliveries."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        import httpx

        self._loop = asyncio.get_running_loop()
        # Every connection goes to an address checked for this delivery (core.netguard).
        async with httpx.AsyncClient(
            timeout=TIMEOUT,
            follow_redirects=False,
            trust_env=False,
            transport=netguard.async_transport(),
        ) as client:
            while True:
                try:
                    batch = await anyio.to_thread.run_sync(self.svc.claim_deliveries, LEASE)
                except Exception:  # the store may be busy or briefly unavailable
                    log.exception("claiming webhook deliveries failed")
                    batch = []
                for delivery in batch:
                    await self._sem.acquire()
                    task = asyncio.create_task(self._deliver(client, delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if batch:
                    continue
                wait = POLL
                try:
                    due = await anyio.to_thread.run_sync(self.svc.seconds_to_next_delivery)
                    if due is not None:
                        wait = min(wait, due)
                except Exception:
                    log.exception("reading the outbox failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.01))

    async def _deliver(self, client: Any, delivery: dict[str, Any]) -> None:
        try:
            status: int | None = None
            error: str | None = None
            if not delivery.get("url"):
                error = "webhook was deleted"
            else:
                status, error = await post(client, delivery)
            ok = error is None
            attempt = int(delivery["attempts"]) + 1
            retry_in = None
            if not ok and delivery.get("url") and attempt < MAX_ATTEMPTS:
                retry_in = float(BACKOFF[attempt - 1])
            await anyio.to_thread.run_sync(
                lambda: self.svc.finish_delivery(
                    delivery, ok=ok, status_code=status, error=error, retry_in=retry_in
                )
            )
        except Exception:
            log.exception("recording a webhook delivery failed")
        finally:
            self._sem.release()
            # A finished attempt may have made the next due time earlier than the poll.
            self._wake.set()


class Sweeper:
    """Purges expired checkpoints and workflows every `interval` seconds."""

    def __init__(self, svc: CheckpointService, interval: float) -> None:
        self.svc = svc
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self.svc.sweep)
            except Exception:
                log.exception("expiry sweep failed")
            await asyncio.sleep(self.interval)
