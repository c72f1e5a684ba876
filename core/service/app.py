"""The ASGI app of `cpf serve` (Starlette): routes, lifespan tasks, error envelopes.

- Exact paths only: `redirect_slashes=False`, so `/checkpoints/` is a 404, never a 307
  (httpx does not follow redirects and the SDK would choke on one, §4).
- Every response carries `X-Request-Id` (a pure ASGI wrapper, no BaseHTTPMiddleware).
- Unknown routes, wrong methods and crashes still answer in the `{"error": ...}` shape.
- The lifespan runs the webhook delivery worker and the expiry sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from core import __version__
from core.service import openapi
from core.service.api import CheckpointService
from core.service.common import Options
from core.service.delivery import DeliveryWorker, Sweeper
from core.service.ratelimit import RateLimiter
from core.service.routes import (
    BODY_TIMEOUT,
    ROUTES,
    Handlers,
    error_response,
    json_response,
)

log = logging.getLogger("cpf.serve")


@dataclass
class Settings:
    rate_limit: int = 100
    rate_window: float = 60.0
    sweep_interval: float = 60.0
    options: Options | None = None
    background: bool = True  # run the delivery worker and the sweeper
    deliver_webhooks: bool = True  # False: queue deliveries, send none (another replica does)
    body_timeout: float = BODY_TIMEOUT  # seconds to receive a request body


# A caller's own X-Request-Id is echoed only when it is a plain token: anything else
# (control bytes, non-ASCII) could not be written back as a header.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")


class _RequestId:
    """Adds `X-Request-Id` (a UUID, or the caller's own) to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                if _REQUEST_ID.fullmatch(value):
                    rid = value
                break
        rid = rid or uuid.uuid4().hex.encode()

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(svc: CheckpointService, settings: Settings | None = None) -> Any:
    settings = settings or Settings()
    limiter = RateLimiter(svc, settings.rate_limit, settings.rate_window)
    handlers = Handlers(svc, limiter, settings.body_timeout)
    routes = _probes(svc, time.monotonic())
    doc = openapi.document(ROUTES)

    async def openapi_json(_request: Request) -> Response:
        return json_response(doc)

    routes.append(StarletteRoute("/openapi.json", openapi_json, methods=["GET"]))
    # Starlette matches one route per path; group methods of the same path.
    by_path: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, {})[route.method] = handlers.endpoint(route)
    for path, methods in by_path.items():
        routes.append(StarletteRoute(path, _by_method(methods), methods=list(methods)))
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
        lifespan=_lifespan(svc, settings),
    )
    app.router.redirect_slashes = False
    return _RequestId(app)


def _probes(svc: CheckpointService, started: float) -> list[StarletteRoute]:
    """`/health` and `/ready` (no key)."""

    async def health(_request: Request) -> Response:
        store_ok = True
        try:
            await anyio.to_thread.run_sync(svc.ss.health)
        except Exception:
            store_ok = False
        body = {
            "status": "ok" if store_ok else "degraded",
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - started, 3),
            "store": "ok" if store_ok else "unavailable",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z",
        }
        return json_response(body, 200 if store_ok else 503)

    async def ready(_request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(svc.ss.health)
        except Exception:
            return json_response({"status": "not_ready", "store": "unavailable"}, 503)
        return json_response({"status": "ready"})

    return [
        StarletteRoute("/health", health, methods=["GET"]),
        StarletteRoute("/ready", ready, methods=["GET"]),
    ]


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response("NOT_FOUND", "No such route", 404)
    if exc.status_code == 405:
        return error_response(
            "METHOD_NOT_ALLOWED", "Method not allowed on this route", 405,
            headers=dict(exc.headers or {}),
        )
    return error_response("HTTP_ERROR", str(exc.detail), exc.status_code)


async def _crash(_request: Request, exc: Exception) -> Response:
    from core.envelope import PersistenceError

    if isinstance(exc, PersistenceError):
        log.error("store error: %s", exc)
        return error_response("STORE_UNAVAILABLE", "The store is unavailable", 503)
    log.exception("unhandled error", exc_info=exc)
    return error_response("INTERNAL_ERROR", "Internal server error", 500)


def _lifespan(svc: CheckpointService, settings: Settings) -> Any:
    """The background tasks of a server: the webhook delivery worker and the sweeper."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if settings.background:
            if settings.deliver_webhooks:
                worker = DeliveryWorker(svc)
                svc.on_enqueue = worker.wake
                tasks.append(asyncio.create_task(worker.run()))
            tasks.append(asyncio.create_task(Sweeper(svc, settings.sweep_interval).run()))
        try:
            yield
        finally:
            svc.on_enqueue = None
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await svc.close_async_saves()

    return lifespan


def _by_method(methods: dict[str, Any]) -> Any:
    if len(methods) == 1:
        return next(iter(methods.values()))

    async def dispatch(request: Request) -> Response:
        return await methods[request.method](request)

    return dispatch
