"""Connection limits of `cpf serve`, below the ASGI app: uvicorn's HTTP protocol class
with a request-head deadline, a header size cap and a connection cap.

uvicorn times out only idle keep-alive connections, and only between requests it has
answered: a client that connects and sends nothing, or half a request line, or one
header byte a minute (slowloris), holds its socket forever, and enough of them exhaust
the file descriptors so that real clients get reset. Here:

- every connection must complete a request head within `header_timeout` seconds of
  connecting or of its previous response (else: 408 and close; while idle between
  requests, uvicorn's shorter keep-alive timeout closes it first);
- a request head may not exceed `max_header_bytes` (else: 431 and close);
- at most `max_connections` are open at once; one more is answered 503 and closed
  at once, so the server never runs out of descriptors.

Request bodies have their own deadline in the app (routes.BODY_TIMEOUT).

Writes are also corked: uvicorn writes a response's head and its body separately (two
send() calls, two packets, and two wake-ups of the client); the transport here gathers
what one turn of the event loop writes and sends it at the end of that turn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

MAX_HEADER_BYTES = 64 * 1024


def _canned(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Corked:
    """A transport whose writes of one event-loop turn go out as one send()."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(
    base: type[asyncio.Protocol],
    *,
    header_timeout: float,
    max_connections: int,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's `base` protocol (httptools or h11) with the limits above."""
    too_slow = _canned(
        408, "Request Timeout", "REQUEST_TIMEOUT",
        f"The request head did not arrive within {header_timeout:g} s",
    )
    too_big = _canned(
        431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE",
        f"The request head is larger than {max_header_bytes} bytes",
    )
    too_many = _canned(
        503, "Service Unavailable", "TOO_MANY_CONNECTIONS",
        "The server has too many open connections; try again",
    )

    class Guarded(base):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None
        _head_cycle: Any = None  # the request cycle when the deadline was armed
        _head_bytes = 0

        def connection_made(self, transport: Any) -> None:
            # uvicorn's set of open connections is shared by all protocol instances.
            if len(self.connections) >= max_connections:
                transport.write(too_many)
                transport.close()
                return
            super().connection_made(transport)
            self.transport = _Corked(transport, self.loop)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self.transport is not None:  # else refused in connection_made
                super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            waiting = self._head_timer is not None
            if waiting:
                self._head_bytes += len(data)
            super().data_received(data)
            if waiting and self.cycle is not self._head_cycle:
                self._disarm()  # a new request's head is complete
            elif waiting and self._head_bytes > max_header_bytes:
                self._refuse(too_big)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._head_cycle = self.cycle
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(header_timeout, self._refuse, too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, response: bytes) -> None:
            self._disarm()
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a (pipelined) request is being served: its response re-arms
            self.transport.write(response)
            self.transport.close()

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded
