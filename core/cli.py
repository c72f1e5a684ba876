"""The headless `cpf` command: argument parsing and dispatch only.

argparse rather than Click/Typer: `cpf --version` must cost little more than the
interpreter's start-up, and each command imports only what it needs (the store and
SQLModel only for commands that touch runs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from core import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors: exit 2, no JSON (as Click does)
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


MAX_LIMIT = 1_000_000


class _Unbuilt:
    """Stands for the parser of a command this invocation does not run (see `_parser`)."""

    required = False

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add_subparsers(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def add_parser(self, *args: Any, **kwargs: Any) -> Any:
        return self


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `cpf`. With `argv`, only the parser of the command it names is built:
    building the other twenty costs a command more than its parsing (argparse looks up a
    translation for every help text). Help and unknown commands get the whole parser, so
    every usage and error message is the same (tests/test_cli_parser.py)."""
    first = argv[0] if argv else None
    only = first if first and not first.startswith("-") else None
    if first in ("-v", "--version"):
        only = ""  # the version is printed while parsing: no command's parser is needed
    p = _Parser(prog="cpf", description="cpf: resumable workflows for people and agents.")
    p.add_argument("-v", "--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name: str, help_text: str) -> Any:
        if only is not None and name != only:
            return _Unbuilt()
        return sub.add_parser(name, help=help_text, description=help_text)

    c = cmd("validate", "Validate a workflow file (schema, duplicate ids, warnings).")
    c.add_argument("-f", "--file", required=True)

    c = cmd("run", "Start a run and execute it until it ends, waits or fails.")
    c.add_argument("-f", "--file", required=True)
    c.add_argument("--input", default="{}", help="JSON, @path or - for stdin")
    c.add_argument("--actor", help="who starts the run (default: the OS user)")
    # Used by the TUI, which picks the id before spawning the executor process.
    c.add_argument("--run-id", dest="new_run_id", help=argparse.SUPPRESS)

    c = cmd("resume", "Deliver an event to a waiting run and continue it.")
    c.add_argument("--run-id", required=True)
    c.add_argument("--event", required=True)
    c.add_argument("--input", required=True, help="JSON, @path or - for stdin")
    c.add_argument("--actor", help="who answers (default: the OS user)")

    for name, text in (("status", "Summary of a run."), ("inspect", "Full history of a run.")):
        cmd(name, text).add_argument("--run-id", required=True)

    c = cmd("cancel", "Cancel a waiting or running run.")
    c.add_argument("--run-id", required=True)
    c.add_argument("--reason", required=True)
    c.add_argument("--actor", help="who cancels (default: the OS user)")

    cmd("delete", "Delete a finished run and its artifacts.").add_argument(
        "--run-id", required=True
    )

    c = cmd("retry", "Continue a failed or interrupted run from its failed step.")
    c.add_argument("--run-id", required=True)
    c.add_argument("--from-step", help="step id to continue from")
    c.add_argument("--actor", help="who retries (default: the OS user)")
    c.add_argument(
        "--host-gone",
        metavar="HOST",
        help="declare HOST (which owns processes an interrupted attempt left) gone for good",
    )

    c = cmd("runs", "List runs, newest first.")
    c.add_argument(
        "--status", choices=["created", "running", "waiting", "completed", "failed", "cancelled"]
    )
    c.add_argument("--workflow", help="workflow id")
    # Parsed by the command (not argparse) so a bad value gets the JSON envelope.
    c.add_argument("--limit", help=f"at most this many runs (0 to {MAX_LIMIT})")

    c = cmd("logs", "Print the stored output of a run (raw text).")
    c.add_argument("--run-id", required=True)
    c.add_argument("--step", help="only this step's output")
    c.add_argument("--stream", choices=["stdout", "stderr"])
    c.add_argument(
        "--follow", action="store_true", help="keep printing until the run stops running"
    )

    c = cmd("init", "Write a starter workflow file.")
    c.add_argument("--file", default="checkpointflow.yaml")
    c.add_argument("--force", action="store_true")

    cmd("guide", "Print the cpf guide (Markdown).")

    cmd("tick", "Apply every await_event timeout that is due (for cron or a clock).")
    c = cmd("continue", "Execute a run handed off by an await timeout (used internally).")
    c.add_argument("--run-id", required=True)

    c = cmd("tui", "Open the terminal UI on workflow files and the run store.")
    c.add_argument("paths", nargs="*", default=["."], help="files or folders of workflows")

    c = cmd("serve", "Serve the SnapState checkpoint HTTP API over the store.")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=3000)
    c.add_argument("--rate-limit", type=int, default=100, help="requests per minute per key")
    c.add_argument(
        "--allow-private-webhooks",
        action="store_true",
        help="allow webhook targets on loopback/private/link-local networks (local development)",
    )
    c.add_argument(
        "--no-webhook-delivery",
        action="store_true",
        help="queue webhook deliveries but send none (another replica, or a later start, sends)",
    )
    c.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a client has to send a request head (default 10)",
    )
    c.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a client has to send a request body (default 30)",
    )
    c.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds an idle keep-alive connection stays open (default 5)",
    )
    c.add_argument(
        "--max-connections",
        type=int,
        default=0,
        metavar="N",
        help="open connections at most; more get 503 (default 1000, lower under a low file limit)",
    )

    c = cmd("keys", "Manage API keys of `cpf serve`.")
    keys = c.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser)
    keys.required = True
    k = keys.add_parser("create", help="Create a key for an account (printed once).")
    k.add_argument("--account", required=True)
    k = keys.add_parser("list", help="List keys (never the secrets).")
    k.add_argument("--account")
    k = keys.add_parser("revoke", help="Revoke a key.")
    k.add_argument("--key-id", required=True)

    c = cmd("db", "The store's schema: its version, and migrations to this cpf's.")
    db = c.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    db.required = True
    db.add_parser("status", help="Schema version of the store; whether it needs an upgrade.")
    db.add_parser("upgrade", help="Create the store, or migrate it to this cpf's schema.")
    for name in ("run", "resume", "retry", "cancel"):
        if name in sub.choices:
            sub.choices[name].add_argument(
                "--surface", choices=["cli", "tui", "api"], default="cli", help=argparse.SUPPRESS
            )
    if only and only not in sub.choices:
        return _parser()  # not a command: the whole parser names the valid ones
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`cpf runs | head`): nothing more can be said on stdout.
        _silence_stdout()
        return 0
    except Exception as exc:  # the last line of defence: a clean envelope, never a traceback
        from core.envelope import CpfError, Envelope, ErrorCode, emit

        err = CpfError(ErrorCode.ERR_INTERNAL, f"Internal error: {type(exc).__name__}: {exc}")
        return emit(Envelope.failure(_command_name(args), err))


def _command_name(args: argparse.Namespace) -> str:
    return "keys" if args.command == "keys" else str(args.command)


def _write_utf8(text: str) -> None:
    """Text on stdout as UTF-8 whatever the locale (undecodable parts replaced)."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        out.write(text.encode("utf-8", "replace"))
    sys.stdout.flush()


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _refusal(args: argparse.Namespace) -> Any:
    """An argument no command can use, as a ValidationError; else None.

    Python decodes argv bytes that are not UTF-8 to lone surrogates: they could reach
    neither the store nor a UTF-8 envelope, so they are refused here, once, by name."""
    from core import limits
    from core.envelope import ErrorCode, ValidationError

    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and limits.has_surrogate(item):
                flag = "--" + name.replace("_", "-").replace("new-run-id", "run-id")
                return ValidationError(
                    ErrorCode.ERR_VALIDATION_INPUT,
                    f"{flag} is not valid UTF-8: {limits.shown(item)}",
                )
    if getattr(args, "limit", None) is not None:
        raw = args.limit.strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 7 and int(raw) <= MAX_LIMIT):
            return ValidationError(
                ErrorCode.ERR_VALIDATION_INPUT,
                f"--limit must be a whole number from 0 to {MAX_LIMIT}, "
                f"got {limits.shown(raw, 40)}",
            )
        args.limit = int(raw)
    return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "guide":
        from importlib.resources import files

        _write_utf8(files("core").joinpath("guide.md").read_text(encoding="utf-8"))
        return 0
    if args.command == "tui":
        import os

        # Exec rather than import: the engine never imports the TUI package.
        argv_tui = [sys.executable, "-m", "cpf_tui", *args.paths]
        os.execv(sys.executable, argv_tui)
    refused = _refusal(args)
    if refused is not None:
        from core.envelope import Envelope, emit

        return emit(Envelope.failure(_command_name(args), refused))
    if args.command == "logs":
        return _logs(args)
    if args.command in ("serve", "keys"):
        from core.service import commands

        return commands.main(args)
    if args.command == "db":
        from core import db_commands

        return db_commands.main(args)

    from core import engine
    from core.envelope import emit

    handlers = {
        "validate": lambda a: engine.validate(a.file),
        "run": lambda a: engine.start_run(
            a.file, a.input, actor=a.actor, surface=a.surface, run_id=a.new_run_id
        ),
        "resume": lambda a: engine.resume_run(
            a.run_id, a.event, a.input, actor=a.actor, surface=a.surface
        ),
        "status": lambda a: engine.status(a.run_id),
        "inspect": lambda a: engine.inspect(a.run_id),
        "cancel": lambda a: engine.cancel_run(a.run_id, a.reason, actor=a.actor, surface=a.surface),
        "delete": lambda a: engine.delete_run(a.run_id),
        "retry": lambda a: engine.retry_run(
            a.run_id, a.from_step, actor=a.actor, surface=a.surface, host_gone=a.host_gone
        ),
        "runs": lambda a: engine.list_runs(a.status, a.workflow, a.limit),
        "init": lambda a: engine.init_workflow(a.file, a.force),
        "tick": lambda a: engine.tick(),
        "continue": lambda a: engine.continue_run(a.run_id),
    }
    return emit(handlers[args.command](args))


def _logs(args: argparse.Namespace) -> int:
    from core import engine
    from core.envelope import CpfError, Envelope, ErrorCode, emit

    try:
        for text in engine.follow_output(
            args.run_id, step_id=args.step, stream=args.stream, follow=args.follow
        ):
            _write_utf8(text)
    except CpfError as err:
        return emit(Envelope.failure("logs", err, run_id=None))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except Exception as exc:  # e.g. the store cannot be read: an envelope, not a traceback
        err = CpfError(ErrorCode.ERR_INTERNAL, f"Internal error: {type(exc).__name__}: {exc}")
        return emit(Envelope.failure("logs", err, run_id=None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
