"""`cpf serve` and `cpf keys`: called by core.cli with the parsed arguments.

`cpf keys create --account A` prints an envelope whose `result.api_key` is the new key
(shown once; the store keeps only its SHA-256). `cpf keys list [--account A]` never
shows a key, only its id and first 12 characters. `cpf keys revoke --key-id K` takes
effect at once, for running servers too (keys are checked on every request).

Environment knobs of `cpf serve` (seconds): CPF_RATE_LIMIT_WINDOW (60),
CPF_SWEEP_INTERVAL (expiry sweeper period, 60), CPF_DEFAULT_TTL (604800),
CPF_MAX_TTL (ten years). Webhook targets on loopback, private or link-local networks
are refused unless CPF_WEBHOOK_ALLOW_PRIVATE=1 or `--allow-private-webhooks` is given;
`--no-webhook-delivery` queues deliveries without sending any (a replica with no egress).

Connection limits are flags (see core.service.guard): --header-timeout (10 s to send a
request head), --body-timeout (30 s for a body), --keep-alive-timeout (5 s idle between
requests), --max-connections (default: 1000, or fewer when the file limit is lower).
On a database server (PostgreSQL): CPF_SERVE_POOL_SIZE
(connections per server process, 10), CPF_SERVE_POOL_TIMEOUT (seconds a request waits
for a free connection, 30), CPF_SERVE_RETRY_DEADLINE (seconds within which transient
store errors are retried, 10).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core.envelope import CpfError, Envelope, emit


def main(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return serve(args)
    return keys(args)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        sys.stderr.write(f"cpf serve: ignoring {name}={raw!r} (not a number)\n")
        return default
    return value if value > 0 else default


def keys(args: argparse.Namespace) -> int:
    from core.service.api import service
    from core.service.common import ApiError

    try:
        svc = service()
        if args.keys_command == "create":
            result = svc.create_key(args.account)
        elif args.keys_command == "list":
            result = {"keys": svc.list_keys(args.account)}
        else:
            result = svc.revoke_key(args.key_id)
    except ApiError as err:
        code = "ERR_KEY_NOT_FOUND" if err.code == "NOT_FOUND" else "ERR_VALIDATION_INPUT"
        return emit(Envelope.failure("keys", CpfError(code, err.message, exit_code=10)))
    except CpfError as err:
        return emit(Envelope.failure("keys", err))
    return emit(Envelope.success("keys", result=result))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core.service.api import service
    from core.service.app import Settings, create_app
    from core.service.common import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, Options

    if not 0 <= args.port <= 65535:
        sys.stderr.write(f"cpf serve: invalid port {args.port}\n")
        return 2
    if args.rate_limit < 0:
        sys.stderr.write("cpf serve: --rate-limit must be >= 0 (0 disables it)\n")
        return 2
    from core import netguard
    from core.service.delivery import ALLOW_PRIVATE_ENV

    if getattr(args, "allow_private_webhooks", False):
        # The flag is the environment variable, for this process: one switch to read.
        os.environ[ALLOW_PRIVATE_ENV] = "1"
    for flag in ("header_timeout", "body_timeout", "keep_alive_timeout"):
        value = getattr(args, flag)
        if not 0 < value <= 3600:  # also refuses nan
            sys.stderr.write(f"cpf serve: --{flag.replace('_', '-')} must be in (0, 3600] s\n")
            return 2
    max_connections = args.max_connections or _default_max_connections()
    if not 1 <= max_connections <= 1_000_000:
        sys.stderr.write("cpf serve: --max-connections must be 1-1000000\n")
        return 2
    defaults = Options()
    options = Options(
        default_ttl=int(_env_float("CPF_DEFAULT_TTL", DEFAULT_TTL_SECONDS)),
        max_ttl=int(_env_float("CPF_MAX_TTL", MAX_TTL_SECONDS)),
        pool_size=max(1, int(_env_float("CPF_SERVE_POOL_SIZE", defaults.pool_size))),
        pool_timeout=_env_float("CPF_SERVE_POOL_TIMEOUT", defaults.pool_timeout),
        retry_deadline=_env_float("CPF_SERVE_RETRY_DEADLINE", defaults.retry_deadline),
    )
    try:
        svc = service(options)
    except CpfError as err:
        return emit(Envelope.failure("serve", err))
    settings = Settings(
        rate_limit=args.rate_limit,
        rate_window=_env_float("CPF_RATE_LIMIT_WINDOW", 60.0),
        sweep_interval=_env_float("CPF_SWEEP_INTERVAL", 60.0),
        options=options,
        body_timeout=args.body_timeout,
        deliver_webhooks=not args.no_webhook_delivery,
    )
    app = create_app(svc, settings)
    sys.stderr.write(
        f"cpf serve: SnapState API on http://{args.host}:{args.port} "
        f"(rate limit {args.rate_limit}/{settings.rate_window:g}s per key; Ctrl-C stops)\n"
    )
    if netguard.env_flag(ALLOW_PRIVATE_ENV):
        sys.stderr.write(
            "cpf serve: webhooks may target loopback, private and link-local addresses\n"
        )
    sys.stderr.flush()
    from core.service.guard import guarded_protocol

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop=_loop(),
        http=guarded_protocol(
            _http(), header_timeout=args.header_timeout, max_connections=max_connections
        ),
        # Whole seconds in uvicorn's type, but it only hands the value to call_later.
        timeout_keep_alive=args.keep_alive_timeout,
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        backlog=2048,
    )
    server = _server_class()(config)
    server.run()
    # uvicorn reports a failed start (port in use) in its log and by not starting.
    return 0 if server.started else 1


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http() -> type:
    try:
        import httptools  # noqa: F401
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


def _default_max_connections() -> int:
    """1000, but leave room under the soft file limit for the store, logs and accept:
    past the cap a connection is answered 503, never reset for lack of descriptors."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return 1000
    return max(8, min(1000, soft - 64))


def _server_class() -> type:
    import contextlib
    import signal
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGTERM/SIGINT shutdown that completed gracefully
        exits 0 instead of re-raising the signal (which would read as a crash)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server
