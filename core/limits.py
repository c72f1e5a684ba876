"""Limits on untrusted data, and the checks that enforce them with one-line errors.

Every value cpf accepts from outside (workflow YAML, `--input`, event payloads, step
outputs) must be a JSON tree of bounded depth and size: no NaN/Infinity, no lone
surrogates, no cycles (a recursive YAML alias), no exponential alias expansion.
Explicit limits here turn what would be a RecursionError, a hang or an unserialisable
row into a clear refusal.
"""

from __future__ import annotations

import json
import math
import os
import stat
from typing import Any

from core.envelope import ErrorCode, ValidationError

MAX_DEPTH = 64  # nesting of lists/objects in any JSON or YAML value
MAX_NODES = 500_000  # values in one document, aliases expanded
MAX_FILE_BYTES = 8 * 1024 * 1024  # a workflow file, an `--input @file`, stdin
MAX_SHOWN = 120  # characters of a user-given name quoted in a message


class JsonProblem(ValueError):
    """A value that is not a bounded JSON tree; `str()` is a one-line reason."""


def shown(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` safe to print in a UTF-8 envelope: lone surrogates (undecodable argv
    bytes) escaped, control characters escaped, long names shortened."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    safe = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in safe)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _where(path: tuple[Any, ...]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{shown(str(part), 40)}"
    return out


def json_copy(value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """A fresh copy of `value` as plain JSON data (dict/list/str/int/float/bool/None).

    Raises JsonProblem for a cycle or nesting past `max_depth`, more than `max_nodes`
    values, NaN/Infinity, a lone surrogate, a non-string key or a non-JSON type. Shared
    subtrees are copied apart, so the result is always a tree."""
    root: list[Any] = [None]
    # (value, container to store into, key in it, depth, path)
    stack: list[tuple[Any, Any, Any, int, tuple[Any, ...]]] = [(value, root, 0, 0, ())]
    nodes = 0
    while stack:
        v, into, key, depth, path = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise JsonProblem(f"more than {max_nodes} values (a YAML alias expanding too far?)")
        t = type(v)
        if t is str:
            if has_surrogate(v):
                raise JsonProblem(f"{_where(path)}: text is not valid Unicode (lone surrogate)")
            into[key] = v
        elif v is None or t is bool:
            into[key] = v
        elif t is int:
            if v.bit_length() > 14_000:  # past Python's 4,300-digit int/str limit
                raise JsonProblem(f"{_where(path)}: integer too large")
            into[key] = v
        elif t is float:
            if not math.isfinite(v):
                raise JsonProblem(f"{_where(path)}: {v} is not a JSON number")
            into[key] = v
        elif t is dict or t is list:
            if depth >= max_depth:
                raise JsonProblem(
                    f"{_where(path[:6])}...: nested more than {max_depth} levels deep"
                    " (or contains itself)"
                )
            if t is dict:
                out: dict[str, Any] = {}
                into[key] = out
                for k, item in v.items():
                    if type(k) is not str:
                        _check_key(k, path)
                    elif has_surrogate(k):
                        raise JsonProblem(f"{_where(path)}: a key is not valid Unicode")
                    out[k] = None
                    stack.append((item, out, k, depth + 1, (*path, k)))
            else:
                seq: list[Any] = [None] * len(v)
                into[key] = seq
                for i, item in enumerate(v):
                    stack.append((item, seq, i, depth + 1, (*path, i)))
        else:
            raise JsonProblem(f"{_where(path)}: a {_kind(v)} is not a JSON value")
    return root[0]


def _check_key(k: Any, path: tuple[Any, ...]) -> None:
    """YAML scalar keys (`on:` is true, `1:` an int) stay as they are (validation names
    them; JSON spells them as text); any other key is refused."""
    if k is None or type(k) in (bool, int) or (type(k) is float and math.isfinite(k)):
        return
    raise JsonProblem(f"{_where(path)}: a {_kind(k)} cannot be a key")


def _kind(v: Any) -> str:
    names = {bytes: "binary value", set: "set", tuple: "list", float: "number"}
    return names.get(type(v), type(v).__name__)


def _refuse_constant(name: str) -> Any:
    raise JsonProblem(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonProblem(f"number {shown(text, 40)} is out of range")
    return number


def loads(text: str) -> Any:
    """Strict JSON: refuses NaN/Infinity, numbers out of range, too deep or too big
    values and lone surrogates; raises JsonProblem with a one-line reason."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JsonProblem:
        raise
    except json.JSONDecodeError as exc:
        raise JsonProblem(str(exc)) from None
    except RecursionError:
        raise JsonProblem(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer past Python's 4,300-digit limit
        if "digits" in str(exc):
            raise JsonProblem("integer with more than 4300 digits") from None
        raise JsonProblem(" ".join(str(exc).split())[:200]) from None
    return json_copy(data)


def dumps(value: Any, **kw: Any) -> str:
    """json.dumps that never writes NaN/Infinity (raises ValueError instead)."""
    return json.dumps(value, allow_nan=False, **kw)


def read_file(
    path: str,
    *,
    what: str,
    missing_code: str = ErrorCode.ERR_FILE_NOT_FOUND,
    error_code: str = ErrorCode.ERR_VALIDATION_INPUT,
    limit: int = MAX_FILE_BYTES,
) -> bytes:
    """The bytes of a regular file the user named, at most `limit` of them.

    Never blocks (a FIFO or a device is refused before any read) and turns every
    OSError into a ValidationError: `missing_code` when the file is not there,
    `error_code` otherwise."""
    name = shown(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise ValidationError(missing_code, f"{what} not found: {name}") from None
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ValidationError(error_code, f"{what} not readable: {name} ({reason})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ValidationError(error_code, f"Expected a file, got a directory: {name}")
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(error_code, f"{what} is not a regular file: {name}")
        if st.st_size > limit:
            raise ValidationError(error_code, f"{what} is larger than {limit} bytes: {name}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ValidationError(error_code, f"{what} is larger than {limit} bytes: {name}")
        return b"".join(chunks)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValidationError(error_code, f"{what} not readable: {name} ({reason})") from None
    finally:
        os.close(fd)


def read_stream(stream: Any, *, what: str, error_code: str, limit: int = MAX_FILE_BYTES) -> str:
    """Read at most `limit` bytes of a binary stream as strict UTF-8."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValidationError(error_code, f"{what} is larger than {limit} bytes")
    return decode(data, what=what, error_code=error_code)


def decode(data: bytes, *, what: str, error_code: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(error_code, f"{what} is not valid UTF-8 (byte {exc.start})") from None
