"""The OpenAPI 3.1 document served at `/openapi.json`.

Built from the route table (core.service.routes.ROUTES) and the request schemas the
handlers validate with (checkpoints.py, agents.py, webhooks.py), so paths, methods,
bodies and parameters cannot drift from what the server does; tests check every served
route is documented.
"""

from __future__ import annotations

from typing import Any

from core import __version__

_TS = {"type": "string", "description": "ISO-8601 UTC, milliseconds, Z suffix"}
_TS_NULL = {"type": ["string", "null"], "description": "ISO-8601 UTC, milliseconds, Z suffix"}
_ETAG = {"type": "string", "description": 'Opaque, quoted ("…"); unique per checkpoint'}
_DIFF = {
    "type": "object",
    "description": "Leaf paths (a.b, list[2]) added, removed and changed against the "
    "workflow's previous head",
    "properties": {
        k: {"type": "array", "items": {"type": "string"}} for k in ("added", "removed", "changed")
    },
}

_CHECKPOINT = {
    "type": "object",
    "required": ["checkpoint_id", "workflow_id", "step", "state", "etag", "created_at"],
    "properties": {
        "checkpoint_id": {"type": "string"},
        "workflow_id": {"type": "string"},
        "step": {"type": "integer"},
        "label": {"type": ["string", "null"]},
        "state": {"type": "object"},
        "metadata": {"type": ["object", "null"]},
        "etag": _ETAG,
        "created_at": _TS,
        "expires_at": _TS_NULL,
        "diff_from_previous": _DIFF,
        "size_bytes": {"type": "integer"},
        "run_id": {"type": "string", "description": "Set on checkpoints of cpf runs"},
    },
}

_AGENT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "agent_id": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
        "capabilities": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object"},
        "last_seen_at": _TS_NULL,
        "created_at": _TS,
        "updated_at": _TS,
    },
}

_WEBHOOK = {
    "type": "object",
    "properties": {
        "webhook_id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "has_secret": {"type": "boolean"},
        "created_at": _TS,
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "existing": {
                "type": "object",
                "description": "On a 409 save of an existing step without If-Match",
                "properties": {"checkpoint_id": {"type": "string"}, "etag": _ETAG},
            },
        },
    },
    "SaveResult": {
        "type": "object",
        "required": ["checkpoint_id", "workflow_id", "step", "etag", "created_at", "size_bytes"],
        "properties": {
            "checkpoint_id": {"type": "string"},
            "workflow_id": {"type": "string"},
            "step": {"type": "integer"},
            "label": {"type": ["string", "null"]},
            "etag": _ETAG,
            "created_at": _TS,
            "expires_at": _TS,
            "diff_from_previous": _DIFF,
            "size_bytes": {
                "type": "integer",
                "description": "UTF-8 length of the compact JSON of state",
            },
        },
    },
    "Checkpoint": _CHECKPOINT,
    "WorkflowResume": {
        "type": "object",
        "required": ["workflow_id", "latest_checkpoint", "total_checkpoints"],
        "properties": {
            "workflow_id": {"type": "string"},
            "latest_checkpoint": _ref("Checkpoint"),
            "total_checkpoints": {"type": "integer"},
            "workflow_started_at": _TS,
            "last_activity_at": _TS,
            "expires_at": _TS_NULL,
            "run_id": {"type": "string"},
        },
    },
    "WorkflowReplay": {
        "type": "object",
        "required": ["workflow_id", "checkpoints", "total", "has_more"],
        "properties": {
            "workflow_id": {"type": "string"},
            "checkpoints": {"type": "array", "items": _ref("Checkpoint")},
            "total": {"type": "integer", "description": "Checkpoints in this page"},
            "total_matching": {
                "type": "integer",
                "description": "Checkpoints in the step range, all pages",
            },
            "has_more": {"type": "boolean"},
            "next_from_step": {
                "type": "integer",
                "description": "from_step of the next page (when has_more)",
            },
        },
    },
    "WorkflowList": {
        "type": "object",
        "properties": {
            "workflows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "workflow_id": {"type": "string"},
                        "latest_step": {"type": "integer"},
                        "total_checkpoints": {"type": "integer"},
                        "workflow_started_at": _TS,
                        "last_activity_at": _TS,
                        "expires_at": _TS_NULL,
                        "source": {"enum": ["api", "run"]},
                        "run_id": {"type": "string"},
                    },
                },
            },
            "total": {"type": "integer"},
            "has_more": {"type": "boolean"},
            "offset": {"type": "integer"},
        },
    },
    "Agent": _AGENT,
    "AgentList": {
        "type": "object",
        "properties": {"agents": {"type": "array", "items": _ref("Agent")}},
    },
    "Webhook": _WEBHOOK,
    "WebhookList": {
        "type": "object",
        "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
    },
    "DeliveryLog": {
        "type": "object",
        "properties": {
            "webhook_id": {"type": "string"},
            "deliveries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "delivery_id": {"type": "string"},
                        "event": {"type": "string"},
                        "status": {"enum": ["pending", "delivering", "delivered", "failed",
                                            "cancelled"]},
                        "attempts": {"type": "integer"},
                        "last_status_code": {"type": ["integer", "null"]},
                        "last_error": {"type": ["string", "null"]},
                        "created_at": _TS,
                        "next_attempt_at": _TS_NULL,
                        "delivered_at": _TS_NULL,
                        "data": {"type": "object"},
                    },
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "version": {"type": "string"},
            "uptime_seconds": {"type": "number"},
            "store": {"type": "string"},
            "timestamp": _TS,
        },
    },
}

_ERROR_TEXT = {
    400: "Invalid request: body, path id or query parameter (VALIDATION_ERROR), or a quota "
    "(MAX_AGENTS_REACHED, MAX_WEBHOOKS_REACHED)",
    401: "Missing, unknown, revoked or expired API key (UNAUTHORIZED)",
    403: "The key's account is not active (FORBIDDEN)",
    404: "Not found (NOT_FOUND, AGENT_NOT_FOUND)",
    408: "The request body did not arrive in time (REQUEST_TIMEOUT)",
    409: "Conflict (CONFLICT): the step exists, or If-Match is stale",
    413: "The request body is over 1 MiB (PAYLOAD_TOO_LARGE)",
    429: "Rate limit (RATE_LIMITED); see the Retry-After header (integer seconds)",
    503: "The store is unavailable (STORE_UNAVAILABLE): try again",
}


def _errors(route: Any) -> list[int]:
    """Every status but success a route can answer: the route's own, plus what any
    authenticated route can say (400: an unknown query parameter; 503: the store is
    down), and 408/413 for a body, 429 when rate limited."""
    codes = {*route.errors, 400, 401, 403, 503}
    if route.body_schema is not None:
        codes |= {408, 413}
    if route.rate_limited:
        codes.add(429)
    return sorted(codes)


def document(routes: list[Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "summary": "Liveness and store health (no authentication)",
                "security": [],
                "responses": {
                    "200": _json_resp("OK", "Health"),
                    "503": _json_resp("Store unavailable", "Health"),
                },
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness (no authentication)",
                "security": [],
                "responses": {
                    "200": {"description": "Ready"},
                    "503": {"description": "Not ready"},
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document"}},
            }
        },
    }
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": _op_id(r.method, r.path),
            "responses": {},
        }
        params = [*r.params, *r.headers]
        if params:
            op["parameters"] = params
        if r.body_schema is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": r.body_schema}},
            }
        if r.status == 204:
            op["responses"]["204"] = {"description": "Done"}
        else:
            op["responses"][str(r.status)] = _json_resp("OK", r.response)
        for code in _errors(r):
            op["responses"][str(code)] = _json_resp(_ERROR_TEXT[code], "Error")
        if r.rate_limited:
            op["description"] = "Rate limited per API key."
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cpf serve: SnapState checkpoint API",
            "version": __version__,
            "description": "Save, resume and replay workflow checkpoints; agents; webhooks. "
            "Compatible with the snapstate-sdk Python client. Errors are "
            '{"error": {"code", "message"}}. Webhook deliveries are signed: '
            "X-Checkpoint-Signature: sha256=<hex HMAC-SHA256(secret, body)>, with "
            "X-Checkpoint-Delivery and X-Checkpoint-Timestamp (also inside the signed body).",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "snp_… API key"}
            },
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _json_resp(text: str, schema: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ref(schema)}}}


def _op_id(method: str, path: str) -> str:
    parts = [p.strip("{}") for p in path.strip("/").split("/")]
    return method.lower() + "_" + "_".join(parts)
