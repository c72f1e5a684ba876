"""The expression language: conditions (`if`, `when`) and `${...}` interpolation.

A real tokenizer and recursive-descent parser build a small immutable AST; one evaluator
walks it against a context of plain dicts (`inputs`, `steps`, `event`, `item`, `item_index`,
`run`). Grammar, lowest precedence first:

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := primary [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") primary]
    primary    := "(" expr ")" | "${" expr "}" | "[" [expr ("," expr)* [","]] "]"
                | STRING | NUMBER | "true" | "false" | "null" | path
    path       := NAME ("." SEGMENT | "[" expr "]")*

`${...}` inside an expression is just a grouping, so a condition may be written with or
without the wrapper. Parsed texts are cached: the runner evaluates the same texts often.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "And",
    "Compare",
    "ExprError",
    "ListExpr",
    "Literal",
    "Node",
    "Not",
    "Or",
    "Path",
    "check_expression",
    "check_template",
    "evaluate",
    "evaluate_condition",
    "interpolate",
    "parse",
]


class ExprError(Exception):
    """A one-line error: what is wrong and where (column, 1-based, when known)."""

    def __init__(
        self, message: str, *, column: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        # The message without its location, so a template can re-locate a hole's error.
        self.reason = reason if reason is not None else message


# --------------------------------------------------------------------------- AST


class Node:
    """Base class of the AST nodes (all frozen dataclasses)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Index:
    """A `[expr]` path segment whose key is only known at evaluation time."""

    expr: Node
    source: str


@dataclass(frozen=True, slots=True)
class Path(Node):
    root: str
    # str: a `.key` or `["key"]` segment (all-digit keys also index lists), int: `[n]`.
    segments: tuple[str | int | Index, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class And(Node):
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or(Node):
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Compare(Node):
    op: str  # == != < <= > >= in "not in"
    left: Node
    right: Node
    column: int


# --------------------------------------------------------------------------- tokenizer


class _Tok(NamedTuple):
    kind: str  # NAME SEG NUM STR OP KW PUNCT EOF
    value: Any
    pos: int  # 0-based offset in the text
    end: int


_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_NAME = re.compile(r"[^\W\d][\w-]*")
_SEGMENT = re.compile(r"[\w-]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD_TAIL = re.compile(r"[\w.-]*")
_SPACE = re.compile(r"\s*")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r"}
# Characters people bring from other languages: say what to write instead.
_HINTS = {
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not' or '!='",
    "=": "use '==' to compare",
}


def _fail(reason: str, pos: int, text: str, hint: str = "") -> ExprError:
    message = f"{reason} at column {pos + 1} in {_show(text)}" + (f" ({hint})" if hint else "")
    return ExprError(message, column=pos + 1, reason=reason)


def _show(text: str, limit: int = 120) -> str:
    # Newlines and tabs become spaces so the message stays on one line and columns line up.
    shown = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f"'{shown}'"


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string starting at `start`; return (value, offset after the quote)."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            e = text[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
            elif e == "u":
                digits = text[i + 2 : i + 6]
                if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise _fail("invalid \\u escape (expected 4 hex digits)", i, text)
                out.append(chr(int(digits, 16)))
                i += 6
            else:
                # Unknown escapes stay literal (`"C:\data"`): checkpointflow had no escapes at all.
                out.append(c + e)
                i += 2
            continue
        out.append(c)
        i += 1
    raise _fail("unterminated string starting", start, text)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    n = len(text)
    while i < n:
        c = text[i]
        after_dot = bool(toks) and toks[-1].kind == "PUNCT" and toks[-1].value == "."
        if after_dot and (m := _SEGMENT.match(text, i)):
            toks.append(_Tok("SEG", m.group(), i, m.end()))
            i = m.end()
        elif c in "\"'":
            value, end = _read_string(text, i)
            toks.append(_Tok("STR", value, i, end))
            i = end
        elif "0" <= c <= "9" or (c == "-" and i + 1 < n and "0" <= text[i + 1] <= "9"):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            tail = _WORD_TAIL.match(text, end).end()  # type: ignore[union-attr]
            if tail > end:
                # `1.2.3`, `2nd`: a bare word that happens to start with a digit.
                toks.append(_Tok("NAME", text[i:tail], i, tail))
                end = tail
            else:
                num = m.group()
                value = float(num) if any(ch in num for ch in ".eE") else int(num)
                toks.append(_Tok("NUM", value, i, end))
            i = end
        elif m := _NAME.match(text, i):
            word = m.group()
            kind = "KW" if word in _KEYWORDS else "NAME"
            toks.append(_Tok(kind, word, i, m.end()))
            i = m.end()
        elif text.startswith("${", i):
            toks.append(_Tok("PUNCT", "${", i, i + 2))
            i += 2
        elif text.startswith(("==", "!=", "<=", ">="), i):
            toks.append(_Tok("OP", text[i : i + 2], i, i + 2))
            i += 2
        elif c in "<>":
            toks.append(_Tok("OP", c, i, i + 1))
            i += 1
        elif c in "()[],.}":
            toks.append(_Tok("PUNCT", c, i, i + 1))
            i += 1
        else:
            hint = _HINTS.get(c, "put text that is not a plain word in quotes")
            raise _fail(f"unexpected character '{c}'", i, text, hint)
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
    toks.append(_Tok("EOF", None, n, n))
    return toks


# --------------------------------------------------------------------------- parser


def _describe(tok: _Tok) -> str:
    if tok.kind == "EOF":
        return "end of expression"
    if tok.kind == "STR":
        return "string " + json.dumps(tok.value, ensure_ascii=False)
    return f"'{tok.value}'"


MAX_NESTING = 32  # parentheses, brackets, `${` and `not` inside one another


class _Parser:
    __slots__ = ("depth", "i", "text", "toks")

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def enter(self) -> None:
        """One level deeper; an explicit limit instead of a RecursionError."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise _fail(
                f"expression nested more than {MAX_NESTING} levels deep",
                self.peek().pos,
                self.text,
            )

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def is_(self, kind: str, value: Any = None) -> bool:
        tok = self.toks[self.i]
        return tok.kind == kind and (value is None or tok.value == value)

    def expect_punct(self, value: str, opened: _Tok) -> None:
        tok = self.peek()
        if tok.kind == "PUNCT" and tok.value == value:
            self.i += 1
            return
        raise _fail(
            f"expected '{value}' to close '{opened.value}' from column {opened.pos + 1}, "
            f"found {_describe(tok)}",
            tok.pos,
            self.text,
        )

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise ExprError(f"empty expression {_show(self.text)}", column=1)
        node = self.or_()
        tok = self.peek()
        if tok.kind != "EOF":
            hint = "put text with spaces in quotes" if tok.kind == "NAME" else ""
            raise _fail(f"unexpected {_describe(tok)}", tok.pos, self.text, hint)
        return node

    def or_(self) -> Node:
        self.enter()
        try:
            return self._or()
        finally:
            self.depth -= 1

    def _or(self) -> Node:
        first = self.and_()
        if not self.is_("KW", "or"):
            return first
        operands = [first]
        while self.is_("KW", "or"):
            self.i += 1
            operands.append(self.and_())
        return Or(tuple(operands))

    def and_(self) -> Node:
        first = self.not_()
        if not self.is_("KW", "and"):
            return first
        operands = [first]
        while self.is_("KW", "and"):
            self.i += 1
            operands.append(self.not_())
        return And(tuple(operands))

    def not_(self) -> Node:
        if self.is_("KW", "not"):
            self.i += 1
            self.enter()
            try:
                return Not(self.not_())
            finally:
                self.depth -= 1
        return self.comparison()

    def comp_op(self) -> tuple[str, _Tok] | None:
        tok = self.peek()
        if tok.kind == "OP":
            return tok.value, tok
        if tok.kind == "KW" and tok.value == "in":
            return "in", tok
        if tok.kind == "KW" and tok.value == "not":
            after = self.toks[self.i + 1]
            if after.kind == "KW" and after.value == "in":
                return "not in", tok
        return None

    def comparison(self) -> Node:
        left = self.primary()
        found = self.comp_op()
        if found is None:
            return left
        op, tok = found
        self.i += 2 if op == "not in" else 1
        right = self.primary()
        again = self.comp_op()
        if again is not None:
            raise _fail(
                f"comparison operators cannot be chained ('{again[0]}' after '{op}'); "
                "use 'and' or parentheses",
                again[1].pos,
                self.text,
            )
        return Compare(op, left, right, tok.pos + 1)

    def primary(self) -> Node:
        tok = self.next()
        kind, value = tok.kind, tok.value
        if kind == "NAME":
            return self.path(tok)
        if kind in ("STR", "NUM"):
            return Literal(value)
        if kind == "KW" and value in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[value])
        if kind == "PUNCT":
            if value == "(":
                node = self.or_()
                self.expect_punct(")", tok)
                return node
            if value == "${":
                if self.is_("PUNCT", "}"):
                    raise _fail("empty expression in '${}'", tok.pos, self.text)
                node = self.or_()
                self.expect_punct("}", tok)
                return node
            if value == "[":
                return self.list_(tok)
        if kind == "EOF":
            raise _fail("unexpected end of expression, expected a value", tok.pos, self.text)
        raise _fail(f"unexpected {_describe(tok)}, expected a value", tok.pos, self.text)

    def list_(self, opened: _Tok) -> Node:
        items: list[Node] = []
        while not self.is_("PUNCT", "]"):
            items.append(self.or_())
            if self.is_("PUNCT", ","):
                self.i += 1
            elif not self.is_("PUNCT", "]"):
                self.expect_punct("]", opened)
        self.i += 1
        return ListExpr(tuple(items))

    def path(self, first: _Tok) -> Node:
        segments: list[str | int | Index] = []
        while True:
            tok = self.peek()
            if tok.kind != "PUNCT":
                break
            if tok.value == ".":
                self.i += 1
                seg = self.next()
                if seg.kind != "SEG":
                    raise _fail(
                        f"expected a key after '.', found {_describe(seg)}", seg.pos, self.text
                    )
                segments.append(seg.value)
            elif tok.value == "[":
                self.i += 1
                start = self.peek().pos
                inner = self.or_()
                end = self.peek().pos
                self.expect_punct("]", tok)
                # Constant keys are resolved at parse time; only computed ones stay nodes.
                if isinstance(inner, Literal) and isinstance(inner.value, str | int):
                    if isinstance(inner.value, bool):
                        raise _fail("a path index cannot be a boolean", start, self.text)
                    segments.append(inner.value)
                else:
                    segments.append(Index(inner, self.text[start:end].strip()))
            else:
                break
        return Path(first.value, tuple(segments), first.pos + 1)


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse an expression; an optional whole `${...}` wrapper is accepted (it is a grouping)."""
    if not isinstance(text, str):
        raise ExprError(f"expression must be a string, got {_type_name(text)}")
    return _Parser(text).parse()


# --------------------------------------------------------------------------- evaluator


_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
    list: "list",
    dict: "object",
}
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_NUM_TYPES = frozenset({int, float})


def _type_name(v: Any) -> str:
    name = _TYPE_NAMES.get(type(v))
    if name is not None:
        return name
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "list"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


def _a(type_name: str) -> str:
    if type_name == "null":
        return "null"
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _render(root: str, segments: tuple[str | int | Index, ...]) -> str:
    out = [root]
    for seg in segments:
        if isinstance(seg, Index):
            out.append(f"[{seg.source}]")
        elif isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _SEGMENT.fullmatch(seg):
            out.append("." + seg)
        else:
            out.append("[" + json.dumps(seg, ensure_ascii=False) + "]")
    return "".join(out)


def _keys_hint(obj: Mapping[str, Any]) -> str:
    keys = [str(k) for k in obj]
    if not keys:
        return " (the object is empty)"
    shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
    return f" (keys: {shown})"


class _Unknown(ExprError):
    """The root name is not in the context (interpolation adds a `$${...}` hint)."""


def _resolve(node: Path, ctx: Mapping[str, Any]) -> Any:
    root = node.root
    if root not in ctx:
        names = ", ".join(str(k) for k in ctx) or "none"
        raise _Unknown(f"unresolved reference '{root}': unknown name '{root}' (names: {names})")
    cur = ctx[root]
    segments = node.segments
    for n, seg in enumerate(segments):
        if isinstance(seg, Index):
            key = _eval(seg.expr, ctx, False)
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise ExprError(
                    f"unresolved reference '{_render(root, segments)}': "
                    f"index [{seg.source}] is {_type_name(key)} {_to_json(key)}, "
                    "expected an integer or a string"
                )
        else:
            key = seg
        if type(cur) is dict or isinstance(cur, Mapping):  # fast path for plain dicts
            if isinstance(key, int) and key not in cur:
                key = str(key)
            if key in cur:
                cur = cur[key]
                continue
            raise ExprError(
                f"unresolved reference '{_render(root, segments)}': no key '{key}'"
                + _keys_hint(cur)
            )
        if isinstance(cur, list | tuple):
            idx = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() else key
            if not isinstance(idx, int):
                raise ExprError(
                    f"unresolved reference '{_render(root, segments)}': "
                    f"'{_render(root, segments[:n])}' is a list, it has no key '{key}'"
                )
            if -len(cur) <= idx < len(cur):
                cur = cur[idx]
                continue
            raise ExprError(
                f"unresolved reference '{_render(root, segments)}': index {idx} out of range "
                f"('{_render(root, segments[:n])}' has {len(cur)} item(s))"
            )
        raise ExprError(
            f"unresolved reference '{_render(root, segments)}': "
            f"'{_render(root, segments[:n])}' is {_a(_type_name(cur))}, it has no key '{key}'"
        )
    return cur


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _json_eq(a: Any, b: Any) -> bool:
    """Strict JSON equality: numbers by value, bool is not a number, containers deeply."""
    if _is_num(a) and _is_num(b):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_eq(a[k], b[k]) for k in a)
    if _type_name(a) != _type_name(b):
        return False
    return bool(a == b)


def _spelling(v: Any) -> str:
    return v if isinstance(v, str) else _to_json(v)


def _loose_eq(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    # Fast paths for the usual scalar cases; the general rules follow.
    if ta is tb and ta in _SCALAR_TYPES:
        return bool(a == b)
    if ta in _NUM_TYPES and tb in _NUM_TYPES:
        return bool(a == b)
    if _type_name(a) == _type_name(b):
        return _json_eq(a, b)
    # Mixed types (checkpointflow compat): compare the JSON spellings case-insensitively, so
    # `1 == "1"` and `true == "True"`; Python's `None` spelling also matches null.
    if a is None and isinstance(b, str) and b.casefold() == "none":
        return True
    if b is None and isinstance(a, str) and a.casefold() == "none":
        return True
    return _spelling(a).casefold() == _spelling(b).casefold()


def _compare(node: Compare, left: Any, right: Any) -> bool:
    op = node.op
    if op == "==":
        return _loose_eq(left, right)
    if op == "!=":
        return not _loose_eq(left, right)
    if op in ("in", "not in"):
        return _contains(node, left, right) == (op == "in")
    orderable = (_is_num(left) and _is_num(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not orderable:
        raise _type_error(
            f"cannot compare {_type_name(left)} with {_type_name(right)} using '{op}'", node
        )
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _contains(node: Compare, item: Any, container: Any) -> bool:
    if isinstance(container, list | tuple):
        return any(_loose_eq(item, x) for x in container)
    if isinstance(container, str | Mapping):
        if not isinstance(item, str):
            what = "a string" if isinstance(container, str) else "an object"
            raise _type_error(
                f"'{node.op}' with {what} on the right needs a string on the left, "
                f"got {_type_name(item)}",
                node,
            )
        return item in container
    raise _type_error(
        f"'{node.op}' needs a list, string or object on the right, got {_type_name(container)}",
        node,
    )


def _type_error(reason: str, node: Compare) -> ExprError:
    # Located by column only; evaluate()/interpolate() add the text the column refers to.
    return ExprError(f"{reason} at column {node.column}", column=node.column, reason=reason)


def _eval(node: Node, ctx: Mapping[str, Any], bare_ok: bool) -> Any:
    """Evaluate a node. `bare_ok`: a comparison operand, where an unknown bare word is a string."""
    if isinstance(node, Path):
        if bare_ok and not node.segments and node.root not in ctx:
            return node.root  # `event.decision == approve` (checkpointflow compat)
        return _resolve(node, ctx)
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Compare):
        return _compare(node, _eval(node.left, ctx, True), _eval(node.right, ctx, True))
    if isinstance(node, And):
        return all(_eval(x, ctx, False) for x in node.operands)  # short-circuit
    if isinstance(node, Or):
        return any(_eval(x, ctx, False) for x in node.operands)
    if isinstance(node, Not):
        return not _eval(node.operand, ctx, False)
    if isinstance(node, ListExpr):
        return [_eval(x, ctx, bare_ok) for x in node.items]
    raise TypeError(f"not an expression node: {node!r}")


def evaluate(text_or_node: str | Node, ctx: Mapping[str, Any]) -> Any:
    """Evaluate an expression (text or parsed node) and return its value."""
    if isinstance(text_or_node, Node):
        node = text_or_node
    elif isinstance(text_or_node, str):
        node = parse(text_or_node)
    else:
        # A YAML scalar such as `if: true` is its own value.
        return text_or_node
    try:
        return _eval(node, ctx, False)
    except _Unknown as exc:
        raise ExprError(exc.message) from None
    except ExprError as exc:
        if exc.column is None or not isinstance(text_or_node, str):
            raise
        raise _fail(exc.reason, exc.column - 1, text_or_node) from None


def evaluate_condition(text: str | Node, ctx: Mapping[str, Any]) -> bool:
    """Evaluate a condition with JSON truthiness (false, null, 0, "", [], {} are false)."""
    return bool(evaluate(text, ctx))


def check_expression(text: Any) -> None:
    """Raise ExprError if the condition does not parse (non-string YAML scalars are fine)."""
    if isinstance(text, str):
        parse(text)


# --------------------------------------------------------------------------- interpolation


@dataclass(frozen=True, slots=True)
class _Hole:
    node: Node
    offset: int  # where the inner text starts in the template, to locate evaluation errors


def _to_json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=str)


@lru_cache(maxsize=4096)
def _scan_template(text: str) -> tuple[str | _Hole, ...]:
    """Split a template into literal text and parsed `${...}` holes. `$${` is a literal `${`."""
    parts: list[str | _Hole] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while True:
        j = text.find("${", i)
        if j < 0:
            buf.append(text[i:])
            break
        if j > 0 and text[j - 1] == "$":
            # `$${` -> `${` (the first `$` is already in the text before j).
            buf.append(text[i : j - 1] + "${")
            i = j + 2
            continue
        buf.append(text[i:j])
        end = _hole_end(text, j + 2)
        if end < 0:
            raise _fail("unterminated '${' (no closing '}')", j, text)
        inner = text[j + 2 : end]
        try:
            node = parse(inner)
        except ExprError as exc:
            if not inner.strip():
                raise _fail("empty '${}'", j, text) from None
            col = (exc.column or 1) + j + 2
            # Most often a shell `${VAR:-x}` or `${#a[@]}` meant literally: say how to escape it.
            raise _fail(exc.reason, col - 1, text, "write $${ for a literal '${'") from None
        if buf:
            literal = "".join(buf)
            if literal:
                parts.append(literal)
            buf = []
        parts.append(_Hole(node, j + 2))
        i = end + 1
        if i >= n:
            break
    literal = "".join(buf)
    if literal:
        parts.append(literal)
    return tuple(parts)


def _hole_end(text: str, i: int) -> int:
    """Offset of the `}` closing a hole whose body starts at i, skipping quoted strings."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            k = i + 1
            while k < n and text[k] != c:
                k += 2 if text[k] == "\\" else 1
            i = k + 1
            continue
        if c == "$" and text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _eval_hole(hole: _Hole, ctx: Mapping[str, Any], template: str) -> Any:
    try:
        return _eval(hole.node, ctx, False)
    except _Unknown as exc:
        node = hole.node
        if isinstance(node, Path) and not node.segments:
            raise ExprError(
                f"{exc.message}; write $${{{node.root}}} for a shell variable"
            ) from None
        raise ExprError(exc.message) from None
    except ExprError as exc:
        if exc.column is None:
            raise
        raise _fail(exc.reason, hole.offset + exc.column - 1, template) from None


def interpolate(value: Any, ctx: Mapping[str, Any]) -> Any:
    """Interpolate `${...}` in strings, recursively through dicts and lists.

    A string that is exactly one `${expr}` becomes the value itself (its JSON type is kept);
    otherwise each hole is replaced by its text: strings raw, anything else as JSON.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        parts = _scan_template(value)
        if len(parts) == 1 and isinstance(parts[0], _Hole):
            return _eval_hole(parts[0], ctx, value)
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            else:
                v = _eval_hole(part, ctx, value)
                out.append(v if isinstance(v, str) else _to_json(v))
        return "".join(out)
    if isinstance(value, Mapping):
        return {k: interpolate(v, ctx) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [interpolate(v, ctx) for v in value]
    return value


def check_template(text: Any) -> None:
    """Raise ExprError if any `${...}` in the text does not parse."""
    if isinstance(text, str) and "${" in text:
        _scan_template(text)
