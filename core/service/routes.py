"""HTTP handlers of the SnapState API: parse the request, call `core.service.api`, answer.

Each request costs one hop to a worker thread, where it is authenticated, rate limited,
checked for size, parsed and served, in that order (so a bad key gets 401 before any
body detail, §3). The body is read on the event loop first, but never more than the
limit: a bigger one is not read at all.

Every error is `{"error": {"code", "message"}}` (plus `existing` on a 409 save).
"""

from __future__ import annotations

import json
import logging
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.envelope import PersistenceError
from core.service.agents import AGENT_ID_PATTERN, AGENT_PATCH_SCHEMA, AGENT_SCHEMA
from core.service.api import CheckpointService
from core.service.auth import bearer_key
from core.service.auth import principal as authenticate
from core.service.checkpoints import (
    CHECKPOINT_ID_PATTERN,
    SAVE_SCHEMA,
    WORKFLOW_ID_PATTERN,
    KeyedSave,
    RawJSON,
)
from core.service.common import MAX_OFFSET, MAX_STEP, REPLAY_MAX_LIMIT, ApiError
from core.service.keys import Principal
from core.service.ratelimit import RateLimited, RateLimiter
from core.service.webhooks import WEBHOOK_ID_PATTERN, WEBHOOK_SCHEMA

MAX_BODY_BYTES = 1024 * 1024
# Nesting levels of a request body: far beyond any real state, well below what the
# standard parser, the diff and the renderers can recurse through; and exactly what
# orjson writes, so its writer can check it in C.
MAX_JSON_DEPTH = 254
# Seconds a client may take to send a request body (cpf serve --body-timeout).
BODY_TIMEOUT = 30.0

THREADS = 8
# Saves up to this size are served on the event loop (PostgreSQL): parsing and diffing
# a larger body there would stall every other request.
ASYNC_SAVE_MAX_BYTES = 64 * 1024

log = logging.getLogger("cpf.serve")

STATUS = {
    "VALIDATION_ERROR": 400,
    "MAX_AGENTS_REACHED": 400,
    "MAX_WEBHOOKS_REACHED": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "AGENT_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "STORE_UNAVAILABLE": 503,
}

_TOO_LARGE = object()
_TOO_SLOW = object()
# Digits -> "1", anything else -> "0": a run of 19 digits is then a plain bytes.find.
_DIGITS = bytes(0x31 if 0x30 <= i <= 0x39 else 0x30 for i in range(256))
_LONG_RUN = b"1" * 19


def _fragment(value: Any) -> Any:
    if isinstance(value, RawJSON):
        return orjson.Fragment(value.encode())
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _parsed(value: Any) -> Any:
    """`value` with every RawJSON parsed (exactly: Python ints have no size limit)."""
    if isinstance(value, RawJSON):
        return json.loads(value)
    if isinstance(value, dict):
        return {k: _parsed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_parsed(v) for v in value]
    return value


def render(data: Any) -> bytes:
    """Compact UTF-8 JSON; stored states (RawJSON) are spliced in without parsing."""
    try:
        return orjson.dumps(data, default=_fragment, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
    except TypeError:
        # An integer beyond 64 bits or nesting past orjson's 254 levels, anywhere in
        # the response: the standard library writes both. RawJSON is a str to it, so
        # the states are parsed first (else they would come out as JSON strings).
        return json.dumps(_parsed(data), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        render(data), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(
    code: str,
    message: str,
    status: int | None = None,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if extra:
        body.update(extra)
    return json_response(body, status or STATUS.get(code, 400), headers)


@dataclass
class Ctx:
    """What a handler gets: the caller, the path and query, the parsed body."""

    principal: Principal
    path: dict[str, Any]
    query: Any
    headers: Any
    body: Any = None


@dataclass
class Route:
    method: str
    path: str
    op: Callable[[CheckpointService, Ctx], Any]
    summary: str
    status: int = 200
    rate_limited: bool = True
    body_schema: dict[str, Any] | None = None
    response: str = "Object"  # a schema name in openapi.py
    errors: tuple[int, ...] = ()
    params: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    # The key check and the operation's reads in one store round trip, where the store
    # can (PostgreSQL): (svc, key, path params) -> (principal, answer) or None (general).
    one_trip: Callable[[CheckpointService, str, dict[str, str]], Any] | None = None


# -- operations (run in a worker thread) -------------------------------------------------


def _save(svc: CheckpointService, c: Ctx) -> Any:
    return svc.save(
        c.principal.account,
        c.body,
        ttl_header=c.headers.get("x-checkpoint-ttl"),
        if_match=c.headers.get("if-match"),
    )


# The range of every integer query parameter (also the OpenAPI minimum/maximum).
INT_PARAMS: dict[str, tuple[int, int]] = {
    "limit": (1, REPLAY_MAX_LIMIT),
    "offset": (0, MAX_OFFSET),
    "from_step": (0, MAX_STEP),
    "to_step": (0, MAX_STEP),
}
_INT_RE = re.compile(r"-?[0-9]{1,20}")


def _int_query(query: Any, allowed: tuple[str, ...]) -> dict[str, int | None]:
    unknown = sorted(set(query.keys()) - set(allowed))
    if unknown:
        raise ApiError(
            "VALIDATION_ERROR",
            f"Unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}",
        )
    out: dict[str, int | None] = {}
    for name in allowed:
        values = query.getlist(name)
        if not values:
            out[name] = None
            continue
        if len(values) > 1:
            raise ApiError("VALIDATION_ERROR", f"Query parameter {name} given more than once")
        low, high = INT_PARAMS[name]
        text = values[0].strip()
        # Range-checked here, before it reaches SQL (a 64-bit column) or int() of
        # thousands of digits.
        if not _INT_RE.fullmatch(text) or not low <= int(text) <= high:
            raise ApiError(
                "VALIDATION_ERROR",
                f"{name} must be an integer from {low} to {high}, got {values[0][:40]!r}",
            )
        out[name] = int(text)
    return out


def _replay(svc: CheckpointService, c: Ctx) -> Any:
    q = _int_query(c.query, ("from_step", "to_step", "limit"))
    return svc.replay(
        c.principal.account,
        c.path["workflow_id"],
        from_step=q["from_step"],
        to_step=q["to_step"],
        limit=q["limit"],
        raw=True,
    )


def _list_workflows(svc: CheckpointService, c: Ctx) -> Any:
    q = _int_query(c.query, ("limit", "offset"))
    return svc.list_workflows(
        c.principal.account,
        limit=100 if q["limit"] is None else q["limit"],
        offset=q["offset"] or 0,
    )


def _deliveries(svc: CheckpointService, c: Ctx) -> Any:
    q = _int_query(c.query, ("limit",))
    return svc.webhook_deliveries(
        c.principal.account, c.path["webhook_id"], limit=100 if q["limit"] is None else q["limit"]
    )


def _register_webhook(svc: CheckpointService, c: Ctx) -> Any:
    # The body's shape first, then where its URL points: no loopback, private or
    # link-local targets unless the server allows them (checked again at delivery).
    # A name that does not resolve now is accepted; its deliveries will fail clearly.
    from core import netguard
    from core.service import delivery
    from core.service.common import check_body

    check_body(WEBHOOK_SCHEMA, c.body)
    try:
        delivery.check_target(c.body["url"])
    except netguard.Unresolvable:
        pass
    except netguard.Refused as exc:
        raise ApiError("VALIDATION_ERROR", f"webhook url refused: {exc}") from None
    return svc.register_webhook(c.principal.account, c.body)


def _no_query(op: Callable[[CheckpointService, Ctx], Any]) -> Callable[..., Any]:
    def run(svc: CheckpointService, c: Ctx) -> Any:
        if c.query:
            _int_query(c.query, ())
        return op(svc, c)

    return run


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query_param(name: str, description: str) -> dict[str, Any]:
    low, high = INT_PARAMS[name]
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": low, "maximum": high},
    }


def _id_param(name: str, description: str, pattern: str) -> dict[str, Any]:
    param = _path_param(name, description)
    param["schema"]["pattern"] = pattern
    return param


# Path ids are ASCII (the SDK puts them raw into the path): a workflow id outside its
# pattern is a 400; an agent, webhook or checkpoint id outside its pattern cannot
# exist, so it is a 404.
_WF = _id_param("workflow_id", "A workflow id (1-128 of A-Z a-z 0-9 _ . : -)", WORKFLOW_ID_PATTERN)
_AGENT = _id_param("agent_id", "An agent id (1-255 of A-Z a-z 0-9 _ -)", AGENT_ID_PATTERN)
_HOOK = _id_param("webhook_id", "A webhook id (wh_...)", WEBHOOK_ID_PATTERN)
_LIMIT = _query_param("limit", "Page size, 1-1000 (default 100)")

ROUTES: list[Route] = [
    Route(
        "POST",
        "/checkpoints",
        _save,
        "Save the state of one workflow step",
        status=201,
        body_schema=SAVE_SCHEMA,
        response="SaveResult",
        errors=(400, 401, 403, 409, 413, 429),
        headers=[
            {
                "name": "X-Checkpoint-TTL",
                "in": "header",
                "required": False,
                "description": "Seconds to keep this checkpoint (and the workflow); "
                "anything but a positive integer means the default (7 days).",
                "schema": {"type": "string"},
            },
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": "On an existing step: the step's etag (idempotent re-save). "
                "On a new step: the etag of the workflow's head (compare-and-swap).",
                "schema": {"type": "string"},
            },
        ],
    ),
    Route(
        "GET",
        "/checkpoints/{checkpoint_id}",
        _no_query(lambda s, c: s.get(c.principal.account, c.path["checkpoint_id"], raw=True)),
        "Fetch one checkpoint",
        response="Checkpoint",
        errors=(401, 403, 404, 429),
        params=[
            _id_param(
                "checkpoint_id", "A checkpoint id (cp_<workflow>_<step>)", CHECKPOINT_ID_PATTERN
            )
        ],
    ),
    Route(
        "GET",
        "/workflows",
        _list_workflows,
        "List the account's workflows, most recently active first",
        response="WorkflowList",
        errors=(400, 401, 403, 429),
        params=[_LIMIT, _query_param("offset", "Rows to skip (default 0)")],
    ),
    Route(
        "GET",
        "/workflows/{workflow_id}/resume",
        _no_query(lambda s, c: s.resume(c.principal.account, c.path["workflow_id"], raw=True)),
        "The latest checkpoint of a workflow and its summary",
        response="WorkflowResume",
        errors=(400, 401, 403, 404, 429),
        params=[_WF],
        one_trip=lambda s, key, path: s.resume_keyed(key, path["workflow_id"]),
    ),
    Route(
        "GET",
        "/workflows/{workflow_id}/replay",
        _replay,
        "A workflow's checkpoints by step, one page at a time",
        response="WorkflowReplay",
        errors=(400, 401, 403, 429),
        params=[
            _WF,
            _query_param("from_step", "First step (inclusive)"),
            _query_param("to_step", "Last step (inclusive)"),
            _LIMIT,
        ],
    ),
    Route(
        "DELETE",
        "/workflows/{workflow_id}",
        _no_query(lambda s, c: s.delete_workflow(c.principal.account, c.path["workflow_id"])),
        "Delete a workflow and all its checkpoints",
        status=204,
        response="",
        errors=(400, 401, 403, 404, 409, 429),
        params=[_WF],
    ),
    Route(
        "POST",
        "/agents",
        lambda s, c: s.register_agent(c.principal.account, c.body),
        "Register an agent, or update the fields sent",
        status=201,
        rate_limited=False,
        body_schema=AGENT_SCHEMA,
        response="Agent",
        errors=(400, 401, 403),
    ),
    Route(
        "GET",
        "/agents",
        _no_query(lambda s, c: s.list_agents(c.principal.account)),
        "List the account's agents",
        rate_limited=False,
        response="AgentList",
        errors=(401, 403),
    ),
    Route(
        "GET",
        "/agents/{agent_id}",
        _no_query(lambda s, c: s.get_agent(c.principal.account, c.path["agent_id"])),
        "One agent",
        rate_limited=False,
        response="Agent",
        errors=(401, 403, 404),
        params=[_AGENT],
    ),
    Route(
        "PATCH",
        "/agents/{agent_id}",
        lambda s, c: s.patch_agent(c.principal.account, c.path["agent_id"], c.body),
        "Update some fields of an agent",
        rate_limited=False,
        body_schema=AGENT_PATCH_SCHEMA,
        response="Agent",
        errors=(400, 401, 403, 404),
        params=[_AGENT],
    ),
    Route(
        "DELETE",
        "/agents/{agent_id}",
        _no_query(lambda s, c: s.delete_agent(c.principal.account, c.path["agent_id"])),
        "Delete an agent",
        status=204,
        rate_limited=False,
        response="",
        errors=(401, 403, 404),
        params=[_AGENT],
    ),
    Route(
        "POST",
        "/webhooks",
        _register_webhook,
        "Register a webhook",
        status=201,
        body_schema=WEBHOOK_SCHEMA,
        response="Webhook",
        errors=(400, 401, 403, 429),
    ),
    Route(
        "GET",
        "/webhooks",
        _no_query(lambda s, c: s.list_webhooks(c.principal.account)),
        "List the account's webhooks (never their secrets)",
        response="WebhookList",
        errors=(401, 403, 429),
    ),
    Route(
        "GET",
        "/webhooks/{webhook_id}",
        _no_query(lambda s, c: s.get_webhook(c.principal.account, c.path["webhook_id"])),
        "One webhook",
        response="Webhook",
        errors=(401, 403, 404, 429),
        params=[_HOOK],
    ),
    Route(
        "DELETE",
        "/webhooks/{webhook_id}",
        _no_query(lambda s, c: s.delete_webhook(c.principal.account, c.path["webhook_id"])),
        "Delete a webhook (its pending deliveries are cancelled)",
        status=204,
        response="",
        errors=(401, 403, 404, 429),
        params=[_HOOK],
    ),
    Route(
        "GET",
        "/webhooks/{webhook_id}/deliveries",
        _deliveries,
        "The delivery log of a webhook, newest first",
        response="DeliveryLog",
        errors=(400, 401, 403, 404, 429),
        params=[_HOOK, _LIMIT],
    ),
]


class Handlers:
    """Binds the routes to one checkpoint service and rate limiter."""

    def __init__(
        self, svc: CheckpointService, limiter: RateLimiter, body_timeout: float = BODY_TIMEOUT
    ) -> None:
        self.svc = svc
        self.limiter = limiter
        self.body_timeout = body_timeout
        # Few threads: the work is Python under one GIL and writes queue on one lock
        # anyway; more threads only add switching. Created lazily inside the loop.
        self._threads: anyio.CapacityLimiter | None = None

    def endpoint(self, route: Route) -> Callable[[Request], Any]:
        has_body = route.body_schema is not None
        is_save = route.op is _save

        async def handler(request: Request) -> Response:
            raw: Any = None
            if has_body:
                # A body trickled in slowly would hold a connection and a request slot
                # forever: it gets body_timeout seconds in all.
                with anyio.move_on_after(self.body_timeout):
                    raw = await _read_body(request)
                if raw is None:
                    return error_response(
                        "REQUEST_TIMEOUT",
                        f"The request body did not arrive within {self.body_timeout:g} s",
                        headers={"Connection": "close"},
                    )
            keyed = None
            if (
                is_save
                and isinstance(raw, bytes)
                and len(raw) <= ASYNC_SAVE_MAX_BYTES
                and self.svc.async_save()
            ):
                keyed = await self._save_keyed_async(route, request, raw)
                if isinstance(keyed, Response):
                    return keyed
            if self._threads is None:
                self._threads = anyio.CapacityLimiter(THREADS)
            return await anyio.to_thread.run_sync(
                self._serve, route, request, raw, keyed, limiter=self._threads
            )

        handler.__name__ = f"{route.method.lower()}_{route.path}"
        return handler

    def _serve(
        self, route: Route, request: Request, raw: Any, keyed: KeyedSave | None = None
    ) -> Response:
        """Serve a request in a worker thread; `keyed`: what the event loop's attempt
        at a one-round-trip save left to do."""
        try:
            if keyed is None and route.op is _save and self.svc.one_trip_save():
                keyed = self._save_keyed(route, request, raw)
            if keyed is not None and keyed.outcome != "auth":
                return self._keyed_answer(route, request, keyed)
            who, answer = self._principal(route, request)
            if route.rate_limited:
                self.limiter.check(who.key_id)
            if answer is not None:
                return self._answer(route, answer())
            body = None
            if route.body_schema is not None:
                body = _parse_body(raw)
            ctx = Ctx(who, request.path_params, request.query_params, request.headers, body)
            result = route.op(self.svc, ctx)
        except ApiError as err:
            return error_response(err.code, err.message, extra=err.extra)
        except UnicodeEncodeError:
            # A lone surrogate (\ud800) parses as JSON but is not storable text.
            return error_response(
                "VALIDATION_ERROR", "The request contains a lone UTF-16 surrogate"
            )
        except PersistenceError as err:
            log.error("store error: %s", err.message)
            return error_response("STORE_UNAVAILABLE", "The store is unavailable: try again")
        except RateLimited as exc:
            return self._rate_limited(exc.retry_after)
        return self._answer(route, result)

    def _principal(
        self, route: Route, request: Request
    ) -> tuple[Principal, Callable[[], Any] | None]:
        """The request's principal (its 401/403 raised), and the answer when the route's
        reads came with the key check in one round trip (`Route.one_trip`)."""
        header = request.headers.get("authorization")
        if route.one_trip is not None and not request.query_params and self.svc.one_trip_save():
            keyed = route.one_trip(self.svc, bearer_key(header), request.path_params)
            if keyed is not None:
                return keyed  # type: ignore[no-any-return]
        return authenticate(self.svc, header), None

    def _rate(self, route: Route) -> tuple[int, float] | None:
        if route.rate_limited and self.limiter.limit > 0:
            return (self.limiter.limit, self.limiter.window)
        return None

    def _keyed_args(self, route: Route, request: Request, raw: Any) -> dict[str, Any]:
        """The arguments of `save_keyed`: the key, the parsed body (its 400/413 raised
        here), the TTL and If-Match headers, the rate limit."""
        headers = request.headers
        return {
            "raw_key": bearer_key(headers.get("authorization")),
            "body": _parse_body(raw),
            "ttl_header": headers.get("x-checkpoint-ttl"),
            "if_match": headers.get("if-match"),
            "rate": self._rate(route),
        }

    def _save_keyed(self, route: Route, request: Request, raw: Any) -> KeyedSave:
        """A save in one store round trip (key, rate limit and save together). Its
        outcome "auth" sends the request down the general path: a body that is not a
        valid save, or a key that does not pass (authenticated first: 401 before 400)."""
        try:
            return self.svc.save_keyed(**self._keyed_args(route, request, raw))
        except (ApiError, UnicodeEncodeError):
            return KeyedSave("auth")

    async def _save_keyed_async(
        self, route: Route, request: Request, raw: bytes
    ) -> Response | KeyedSave:
        """`_save_keyed` on the event loop: the response when it is one, else what the
        worker thread does next (the general save, or the general path)."""
        try:
            keyed = await self.svc.save_keyed_async(**self._keyed_args(route, request, raw))
        except (ApiError, UnicodeEncodeError):
            return KeyedSave("auth")
        except PersistenceError as err:
            log.error("store error: %s", err.message)
            return error_response("STORE_UNAVAILABLE", "The store is unavailable: try again")
        if keyed.outcome == "saved":
            return self._answer(route, keyed.record)
        if keyed.outcome == "rate":
            return self._rate_limited(keyed.retry_after)
        return keyed

    def _keyed_answer(self, route: Route, request: Request, keyed: KeyedSave) -> Response:
        if keyed.outcome == "rate":
            raise RateLimited(keyed.retry_after)
        if keyed.outcome == "saved":
            return self._answer(route, keyed.record)
        assert keyed.principal is not None and keyed.save is not None
        if_match = request.headers.get("if-match")
        return self._answer(route, self.svc.save_general(keyed.principal, keyed.save, if_match))

    def _rate_limited(self, retry_after: int) -> Response:
        return error_response(
            "RATE_LIMITED",
            f"Rate limit exceeded: at most {self.limiter.limit} requests per "
            f"{self.limiter.window:g} s per API key",
            headers={"Retry-After": str(retry_after)},
        )

    @staticmethod
    def _answer(route: Route, result: Any) -> Response:
        if route.status == 204:
            return Response(status_code=204)
        headers = None
        if isinstance(result, dict):
            etag = result.get("etag") or (result.get("latest_checkpoint") or {}).get("etag")
            if isinstance(etag, str):
                headers = {"ETag": etag}
        return json_response(result, route.status, headers)


async def _read_body(request: Request) -> Any:
    """The body bytes, or _TOO_LARGE without reading past the limit."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > MAX_BODY_BYTES:
                return _TOO_LARGE
        except ValueError:
            return _TOO_LARGE
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return _TOO_LARGE
        chunks.append(chunk)
    return b"".join(chunks)


# A JSON string (escapes included); what is left outside strings is structure.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# Opening brackets -> 1, closing -> -1 (as signed bytes), everything else deleted.
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKET = bytes(i for i in range(256) if i not in b"[{]}")


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests deeper than `limit` (checked before parsing: the
    standard parser recurses, and 10,000 levels end in RecursionError)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep
    structure = _JSON_STRING.sub(b"", raw).translate(_DEPTH_STEP, _NOT_BRACKET)
    return max(accumulate(array("b", structure)), default=0) > limit


def _parse_body(raw: Any) -> Any:
    if raw is _TOO_LARGE:
        raise ApiError(
            "PAYLOAD_TOO_LARGE",
            f"The request body is larger than {MAX_BODY_BYTES} bytes (1 MiB)",
        )
    if not raw:
        raise ApiError("VALIDATION_ERROR", "The request body must be a JSON object")
    # Depth: few brackets cannot nest deep (the common case, no check at all); else
    # orjson's own writer refuses nesting past MAX_JSON_DEPTH in C, and the byte scan
    # decides only on the rare bodies the standard parser reads.
    many = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    try:
        # orjson is several times faster on large states, but reads integers beyond
        # 64 bits as floats: any run of 19+ digits sends the body to the exact parser.
        if raw.translate(_DIGITS).find(_LONG_RUN) < 0:
            try:
                data = orjson.loads(raw)  # refuses more than 1024 levels itself
            except orjson.JSONDecodeError:
                pass  # let the standard parser word the error
            else:
                if many and _ORJSON_DEPTH_CHECK:
                    try:
                        orjson.dumps(data)
                    except TypeError:
                        _too_deep()
                elif many and json_too_deep(raw):
                    _too_deep()
                return data
        if many and json_too_deep(raw):
            _too_deep()
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("VALIDATION_ERROR", f"The request body is not valid JSON: {exc}") from exc


def _too_deep() -> None:
    raise ApiError(
        "VALIDATION_ERROR",
        f"The request body nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects",
    )


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _orjson_refuses_past_max_depth() -> bool:
    """Whether orjson.dumps writes exactly MAX_JSON_DEPTH levels and no more (254 in
    orjson 3); if a future orjson differs, the byte scan does the job instead."""
    try:
        orjson.dumps(_nested(MAX_JSON_DEPTH))
    except TypeError:
        return False
    try:
        orjson.dumps(_nested(MAX_JSON_DEPTH + 1))
    except TypeError:
        return True
    return False


_ORJSON_DEPTH_CHECK = _orjson_refuses_past_max_depth()


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser would accept them.
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value
