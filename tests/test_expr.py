"""Unit tests of the expression language (core/expr.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.expr import (
    And,
    Compare,
    ExprError,
    ListExpr,
    Literal,
    Not,
    Or,
    Path,
    check_expression,
    check_template,
    evaluate,
    evaluate_condition,
    interpolate,
    parse,
)


@pytest.fixture
def ctx() -> dict[str, Any]:
    return {
        "inputs": {
            "name": "World",
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "off": False,
            "nothing": None,
            "text": "salt and pepper",
            "tags": ["red", "green", "blue"],
            "nums": [1, 2, 3],
            "obj": {"a": 1, "key.with.dots": "dotted", "0": "zero-key"},
            "empty_list": [],
            "empty_obj": {},
            "empty_str": "",
            "zero": 0,
            "str_num": "5",
            "env": "prod",
        },
        "steps": {
            "fetch-data": {"outputs": {"rows": [{"id": 7, "name": "a"}, {"id": 8}]}},
            "build": {"outputs": {"ok": True, "version": "1.2.3"}},
        },
        "event": {"decision": "approve", "note": "or and not"},
        "run": {"id": "run-1"},
        "item": {"path": "a.txt"},
        "item_index": 1,
    }


def ev(text: str, ctx: dict[str, Any]) -> Any:
    return evaluate(text, ctx)


def err(fn: Any, *args: Any) -> ExprError:
    with pytest.raises(ExprError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


# --------------------------------------------------------------------------- parsing


class TestParse:
    def test_ast_shapes(self) -> None:
        node = parse('a.b == "x" or not c and d')
        assert isinstance(node, Or)
        first, second = node.operands
        assert isinstance(first, Compare) and first.op == "=="
        assert first.left == Path("a", ("b",), 1)
        assert first.right == Literal("x")
        assert isinstance(second, And)
        assert isinstance(second.operands[0], Not)

    def test_list_literal(self) -> None:
        node = parse("[1, 'a', true, null, [2],]")
        assert node == ListExpr(
            (Literal(1), Literal("a"), Literal(True), Literal(None), ListExpr((Literal(2),)))
        )
        assert parse("[]") == ListExpr(())

    def test_wrapper_is_optional(self) -> None:
        node = parse("  ${ inputs.a == 1 }  ")
        assert isinstance(node, Compare) and node.op == "=="
        assert node.left == Path("inputs", ("a",), 6)
        assert node.right == Literal(1)

    def test_paths(self) -> None:
        assert parse("a.items[0]") == Path("a", ("items", 0), 1)
        assert parse("a.items.0") == Path("a", ("items", "0"), 1)
        assert parse('a["key.with.dots"].b') == Path("a", ("key.with.dots", "b"), 1)
        assert parse("a[-1]") == Path("a", (-1,), 1)
        assert parse("steps.fetch-data.outputs") == Path("steps", ("fetch-data", "outputs"), 1)
        # Keywords are plain keys after a dot.
        assert parse("inputs.not.in.or") == Path("inputs", ("not", "in", "or"), 1)

    def test_numbers(self) -> None:
        assert parse("42") == Literal(42)
        assert parse("-7") == Literal(-7)
        assert parse("1.5") == Literal(1.5)
        assert parse("-0.25") == Literal(-0.25)
        assert parse("1e3") == Literal(1000.0)
        assert type(parse("1.0").value) is float  # type: ignore[attr-defined]

    def test_strings_and_escapes(self) -> None:
        assert parse("'single'") == Literal("single")
        assert parse('"double"') == Literal("double")
        assert parse(r'"a\"b"') == Literal('a"b')
        assert parse(r"'it\'s'") == Literal("it's")
        assert parse(r'"back\\slash"') == Literal("back\\slash")
        assert parse(r'"l1\nl2\tx"') == Literal("l1\nl2\tx")
        assert parse(r'"\u00e9\u0041"') == Literal("éA")
        assert parse('"it\'s"') == Literal("it's")
        assert parse("'say \"hi\"'") == Literal('say "hi"')
        # Unknown escapes stay literal, so Windows-like paths survive.
        assert parse(r'"C:\data"') == Literal("C:\\data")

    def test_parse_is_cached(self) -> None:
        text = "inputs.cache_probe == 12345"
        assert parse(text) is parse(text)


class TestParseErrors:
    @pytest.mark.parametrize(
        ("text", "fragment", "column"),
        [
            ("inputs.a ==", "expected a value", 12),
            ("inputs.a == (1", "expected ')' to close '(' from column 13", 15),
            ("(inputs.a == 1", "expected ')'", 15),
            ("inputs.a == 1)", "unexpected ')'", 14),
            ("a == b == c", "cannot be chained", 8),
            ("a < b < c", "cannot be chained", 7),
            ("a && b", "use 'and'", 3),
            ("a || b", "use 'or'", 3),
            ("!a", "use 'not'", 1),
            ("inputs.a = 1", "use '=='", 10),
            ('"abc', "unterminated string", 1),
            ("x == 'abc", "unterminated string", 6),
            ("inputs.", "expected a key after '.'", 8),
            ("inputs.[0]", "expected a key after '.'", 8),
            ('"\\u12"', "invalid \\u escape", 2),
            ("[1, 2", "expected ']'", 6),
            ("${inputs.a", "expected '}'", 11),
            ("a == hello world", "put text with spaces in quotes", 12),
            ("a == http://x", "in quotes", 10),
            ("a b", "unexpected 'b'", 3),
            ("not", "expected a value", 4),
            ("a and", "expected a value", 6),
            ("a[true]", "boolean", 3),
        ],
    )
    def test_messages(self, text: str, fragment: str, column: int) -> None:
        exc = err(parse, text)
        assert fragment in str(exc)
        assert exc.column == column
        assert f"at column {column} in '" in str(exc)

    def test_empty(self) -> None:
        assert "empty expression" in str(err(parse, ""))
        assert "empty expression" in str(err(parse, "   "))
        assert "empty expression in '${}' at column 1" in str(err(parse, "${}"))

    def test_multiline_text_stays_one_line(self) -> None:
        exc = err(parse, "inputs.a == 1\nand")
        assert exc.column == 18
        assert "'inputs.a == 1 and'" in str(exc)

    def test_long_text_is_truncated(self) -> None:
        exc = err(parse, "a == " + "x" * 500 + " ==")
        assert len(str(exc)) < 250


# --------------------------------------------------------------------------- evaluation


class TestPaths:
    def test_walks_dicts(self, ctx: dict[str, Any]) -> None:
        assert ev("inputs.name", ctx) == "World"
        assert ev("run.id", ctx) == "run-1"
        assert ev("steps.build.outputs", ctx) == {"ok": True, "version": "1.2.3"}
        assert ev("inputs", ctx) is ctx["inputs"]

    def test_list_indexing(self, ctx: dict[str, Any]) -> None:
        assert ev("inputs.tags[0]", ctx) == "red"
        assert ev("inputs.tags.1", ctx) == "green"
        assert ev("inputs.tags[-1]", ctx) == "blue"
        assert ev("steps.fetch-data.outputs.rows[1].id", ctx) == 8
        assert ev("steps.fetch-data.outputs.rows.0.name", ctx) == "a"

    def test_quoted_and_computed_keys(self, ctx: dict[str, Any]) -> None:
        assert ev('inputs.obj["key.with.dots"]', ctx) == "dotted"
        assert ev("inputs.obj['a']", ctx) == 1
        assert ev('steps["fetch-data"].outputs.rows[0].id', ctx) == 7
        assert ev("inputs.tags[item_index]", ctx) == "green"
        assert ev("inputs.obj.0", ctx) == "zero-key"
        assert ev("inputs.obj[0]", ctx) == "zero-key"

    def test_missing_key(self, ctx: dict[str, Any]) -> None:
        msg = str(err(ev, "steps.build.outputs.nope", ctx))
        assert msg.startswith("unresolved reference 'steps.build.outputs.nope': no key 'nope'")
        assert "ok, version" in msg  # says what is there

    def test_missing_step(self, ctx: dict[str, Any]) -> None:
        msg = str(err(ev, "steps.x.outputs.y", ctx))
        assert msg.startswith("unresolved reference 'steps.x.outputs.y': no key 'x'")

    def test_unknown_root(self, ctx: dict[str, Any]) -> None:
        msg = str(err(ev, "HOME", ctx))
        assert "unresolved reference 'HOME': unknown name 'HOME'" in msg
        assert "inputs" in msg
        assert "$${" not in msg  # the shell hint is for templates only

    def test_index_errors(self, ctx: dict[str, Any]) -> None:
        msg = str(err(ev, "inputs.tags[5]", ctx))
        assert "index 5 out of range" in msg and "3 item(s)" in msg
        assert "is a list, it has no key 'x'" in str(err(ev, "inputs.tags.x", ctx))
        assert "is a string, it has no key 'x'" in str(err(ev, "inputs.name.x", ctx))
        assert "'inputs.nothing' is null, it has no key 'x'" in str(
            err(ev, "inputs.nothing.x", ctx)
        )
        assert "expected an integer or a string" in str(err(ev, "inputs.tags[inputs.flag]", ctx))
        assert "expected an integer or a string" in str(err(ev, "inputs.tags[0.5]", ctx))

    def test_missing_empty_object(self, ctx: dict[str, Any]) -> None:
        assert "(the object is empty)" in str(err(ev, "inputs.empty_obj.a", ctx))


class TestComparison:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("inputs.count == 3", True),
            ("inputs.count == 3.0", True),
            ("1 == 1.0", True),
            ("inputs.count != 3", False),
            ("inputs.count == '3'", True),  # mixed types: JSON spelling
            ('inputs.flag == "True"', True),
            ('inputs.flag == "true"', True),
            ("inputs.flag == True", True),  # bare word True
            ("inputs.off == false", True),
            ("inputs.flag == 1", False),  # bool is not a number
            ("true == 1", False),
            ("inputs.nothing == null", True),
            ("inputs.nothing == None", True),  # Python spelling of null (checkpointflow compat)
            ("inputs.nothing == 'null'", True),
            ("inputs.nothing == 0", False),
            ("inputs.name == 'World'", True),
            ("inputs.name == 'world'", False),  # same type: exact
            ("inputs.tags == ['red', 'green', 'blue']", True),
            ("inputs.nums == [1.0, 2, 3]", True),
            ("[true] == [1]", False),
            ("inputs.obj == inputs.obj", True),
            ("inputs.str_num == 5", True),
            ("inputs.ratio == 0.5", True),
            ("steps.build.outputs.version == 1.2.3", True),  # digit-led bare word
        ],
    )
    def test_equality(self, ctx: dict[str, Any], text: str, expected: bool) -> None:
        assert ev(text, ctx) is expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("inputs.count > 2", True),
            ("inputs.count >= 3", True),
            ("inputs.count < 3", False),
            ("inputs.count <= 2.5", False),
            ("inputs.ratio < 1", True),
            ("-1 < 0", True),
            ("'abc' < 'abd'", True),
            ("inputs.name >= 'W'", True),
        ],
    )
    def test_ordering(self, ctx: dict[str, Any], text: str, expected: bool) -> None:
        assert ev(text, ctx) is expected

    @pytest.mark.parametrize(
        "text",
        [
            "inputs.name < 3",
            "inputs.flag > false",
            "inputs.nothing < 1",
            "inputs.tags < inputs.tags",
            "inputs.str_num > 4",
        ],
    )
    def test_ordering_incompatible_types(self, ctx: dict[str, Any], text: str) -> None:
        msg = str(err(ev, text, ctx))
        assert msg.startswith("cannot compare ")
        assert f"in '{text}'" in msg

    def test_error_column_points_at_operator(self, ctx: dict[str, Any]) -> None:
        exc = err(ev, "inputs.count == 3 and inputs.name > 2", ctx)
        assert exc.column == 35
        assert "cannot compare string with number using '>' at column 35" in str(exc)


class TestMembership:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("'red' in inputs.tags", True),
            ("'pink' in inputs.tags", False),
            ("'pink' not in inputs.tags", True),
            ("2 in inputs.nums", True),
            ("2.0 in inputs.nums", True),
            ("'2' in inputs.nums", True),  # same equality as ==
            ("'and' in inputs.text", True),
            ("'AND' in inputs.text", False),
            ("'a' in inputs.obj", True),
            ("'b' in inputs.obj", False),
            ("inputs.env in ['prod', 'staging']", True),
            ("inputs.env in [prod, staging]", True),  # bare words inside a list operand
            ("inputs.env not in [dev, test]", True),
            ("event.decision in [approve, reject]", True),
            ("not 'red' in inputs.tags", False),
        ],
    )
    def test_in(self, ctx: dict[str, Any], text: str, expected: bool) -> None:
        assert ev(text, ctx) is expected

    def test_bad_right_side(self, ctx: dict[str, Any]) -> None:
        msg = str(err(ev, "1 in inputs.count", ctx))
        assert "'in' needs a list, string or object on the right, got number" in msg
        assert "at column 3" in msg

    def test_non_string_in_string(self, ctx: dict[str, Any]) -> None:
        assert "needs a string on the left, got number" in str(err(ev, "1 in inputs.name", ctx))
        assert "needs a string on the left" in str(err(ev, "1 not in inputs.obj", ctx))


class TestBareWords:
    def test_bare_word_in_comparison(self, ctx: dict[str, Any]) -> None:
        assert ev("event.decision == approve", ctx) is True
        assert ev("approve == event.decision", ctx) is True
        assert ev("event.decision != reject", ctx) is True
        assert ev("event.decision == approve-now", ctx) is False
        assert ev("${event.decision} == ${approve}", ctx) is True

    def test_roots_win_over_bare_words(self, ctx: dict[str, Any]) -> None:
        # `item` is a root here, so it is its value, not the string "item".
        assert ev("item == 'item'", ctx) is False
        ctx2 = {k: v for k, v in ctx.items() if k != "item"}
        assert ev("item == 'item'", ctx2) is True

    def test_bare_word_only_in_comparisons(self, ctx: dict[str, Any]) -> None:
        assert "unknown name 'approve'" in str(err(ev, "approve", ctx))
        assert "unknown name 'approve'" in str(err(ev, "not approve", ctx))
        assert "unknown name 'x'" in str(err(ev, "inputs.tags[x]", ctx))

    def test_dotted_unknown_is_an_error(self, ctx: dict[str, Any]) -> None:
        assert "unknown name 'approve'" in str(err(ev, "event.decision == approve.now", ctx))


class TestLogic:
    def test_quotes_protect_and_or(self, ctx: dict[str, Any]) -> None:
        assert ev('inputs.text == "salt and pepper"', ctx) is True
        assert ev("inputs.text == 'salt and pepper'", ctx) is True
        assert ev('inputs.text != "salt or pepper"', ctx) is True
        assert ev('event.note == "or and not"', ctx) is True
        assert ev("'x and y' == 'x and y' and 'a or b' == 'a or b'", ctx) is True

    def test_precedence(self, ctx: dict[str, Any]) -> None:
        # and binds tighter than or
        assert ev("true or false and false", ctx) is True
        assert ev("(true or false) and false", ctx) is False
        # not binds looser than comparison
        assert ev("not inputs.count == 2", ctx) is True
        assert ev("not not inputs.flag", ctx) is True
        assert ev("not (inputs.flag and inputs.off)", ctx) is True
        assert ev("inputs.count > 1 and (inputs.env == 'dev' or inputs.env == 'prod')", ctx)

    def test_results_are_booleans(self, ctx: dict[str, Any]) -> None:
        assert ev("inputs.name and inputs.count", ctx) is True
        assert ev("inputs.zero or inputs.empty_str", ctx) is False
        assert ev("not inputs.name", ctx) is False

    def test_short_circuit(self, ctx: dict[str, Any]) -> None:
        assert ev("true or steps.nope.outputs.x == 1", ctx) is True
        assert ev("false and steps.nope.outputs.x == 1", ctx) is False
        assert ev("'x' in steps.build.outputs and steps.build.outputs.x", ctx) is False
        err(ev, "false or steps.nope.outputs.x == 1", ctx)

    def test_parenthesised_comparisons_can_be_compared(self, ctx: dict[str, Any]) -> None:
        assert ev("(inputs.count == 3) == true", ctx) is True

    def test_values(self, ctx: dict[str, Any]) -> None:
        assert ev("[inputs.count, 'x']", ctx) == [3, "x"]
        assert ev("${inputs.tags}", ctx) == ["red", "green", "blue"]
        assert ev("(inputs.nothing)", ctx) is None


class TestConditions:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("inputs.flag", True),
            ("inputs.off", False),
            ("inputs.nothing", False),
            ("inputs.zero", False),
            ("inputs.ratio", True),
            ("inputs.empty_str", False),
            ("inputs.name", True),
            ("inputs.empty_list", False),
            ("inputs.tags", True),
            ("inputs.empty_obj", False),
            ("inputs.obj", True),
            ("inputs.str_num", True),
            ("'0'", True),
            ("'false'", True),
            ("${inputs.flag}", True),
            ("${inputs.count == 3}", True),
            ("${ inputs.count == 4 }", False),
        ],
    )
    def test_truthiness(self, ctx: dict[str, Any], text: str, expected: bool) -> None:
        assert evaluate_condition(text, ctx) is expected

    def test_yaml_scalars(self, ctx: dict[str, Any]) -> None:
        # `if: true` arrives as a bool from YAML.
        assert evaluate_condition(True, ctx) is True  # type: ignore[arg-type]
        assert evaluate_condition(0, ctx) is False  # type: ignore[arg-type]

    def test_node_input(self, ctx: dict[str, Any]) -> None:
        node = parse("inputs.count > 2")
        assert evaluate_condition(node, ctx) is True
        assert evaluate(node, ctx) is True

    def test_check_expression(self) -> None:
        check_expression("inputs.a == 'b' and (x or not y)")
        check_expression("${inputs.a}")
        check_expression(True)
        assert "cannot be chained" in str(err(check_expression, "a == b == c"))
        assert "empty expression" in str(err(check_expression, ""))

    def test_error_unresolved_is_not_false(self, ctx: dict[str, Any]) -> None:
        err(evaluate_condition, "inputs.missing == 1", ctx)


# --------------------------------------------------------------------------- interpolation


class TestInterpolate:
    def test_whole_reference_keeps_type(self, ctx: dict[str, Any]) -> None:
        assert interpolate("${inputs.count}", ctx) == 3
        assert interpolate("${inputs.flag}", ctx) is True
        assert interpolate("${inputs.nothing}", ctx) is None
        assert interpolate("${inputs.obj}", ctx) == ctx["inputs"]["obj"]
        assert interpolate("${ inputs.tags }", ctx) == ["red", "green", "blue"]
        assert interpolate("${inputs.count > 2}", ctx) is True
        assert interpolate("${item_index}", ctx) == 1

    def test_embedded_values_are_json(self, ctx: dict[str, Any]) -> None:
        assert interpolate("Hello ${inputs.name}!", ctx) == "Hello World!"
        assert interpolate("n=${inputs.count} r=${inputs.ratio}", ctx) == "n=3 r=0.5"
        assert interpolate("f=${inputs.flag} z=${inputs.nothing}", ctx) == "f=true z=null"
        assert interpolate("t=${inputs.tags}", ctx) == 't=["red", "green", "blue"]'
        assert interpolate("o=${inputs.empty_obj}", ctx) == "o={}"
        assert interpolate("${inputs.count}${inputs.count}", ctx) == "33"
        assert interpolate(" ${inputs.count}", ctx) == " 3"
        assert interpolate("${inputs.name} ${inputs.name}", ctx) == "World World"

    def test_non_ascii_stays_readable(self) -> None:
        assert interpolate("v=${inputs.x}", {"inputs": {"x": ["é"]}}) == 'v=["é"]'

    def test_recursive(self, ctx: dict[str, Any]) -> None:
        value = {
            "a": "${inputs.count}",
            "b": ["x ${inputs.name}", {"c": "${inputs.flag}"}, 5, None],
            "${keys}": "are not interpolated",
        }
        assert interpolate(value, ctx) == {
            "a": 3,
            "b": ["x World", {"c": True}, 5, None],
            "${keys}": "are not interpolated",
        }

    def test_passthrough(self, ctx: dict[str, Any]) -> None:
        assert interpolate("no holes here $HOME {x}", ctx) == "no holes here $HOME {x}"
        assert interpolate(42, ctx) == 42
        assert interpolate(None, ctx) is None
        assert interpolate(True, ctx) is True

    def test_dollar_dollar_escape(self, ctx: dict[str, Any]) -> None:
        assert interpolate("echo $${HOME}", ctx) == "echo ${HOME}"
        assert interpolate("$${HOME}", ctx) == "${HOME}"
        assert interpolate("$${A}-${inputs.name}-$${B}", ctx) == "${A}-World-${B}"
        assert interpolate("echo $$ ${inputs.count}", ctx) == "echo $$ 3"
        check_template("echo $${HOME} $${not valid at all")

    def test_quotes_inside_holes(self, ctx: dict[str, Any]) -> None:
        assert interpolate("${'}' in inputs.name}", ctx) is False
        assert interpolate('x ${inputs.name == "a}b"} y', ctx) == "x false y"
        assert interpolate("${'it\\'s }'}", ctx) == "it's }"
        assert interpolate('${inputs.obj["key.with.dots"]}', ctx) == "dotted"

    def test_shell_quoting_around_holes(self, ctx: dict[str, Any]) -> None:
        assert interpolate("echo '${inputs.text}'", ctx) == "echo 'salt and pepper'"
        assert interpolate('echo "${inputs.name}"', ctx) == 'echo "World"'

    def test_unknown_name_hint(self, ctx: dict[str, Any]) -> None:
        msg = str(err(interpolate, "echo ${HOME}", ctx))
        assert "unresolved reference 'HOME'" in msg
        assert "write $${HOME} for a shell variable" in msg

    def test_unresolved_inside_structure(self, ctx: dict[str, Any]) -> None:
        msg = str(err(interpolate, {"a": ["${steps.x.outputs.y}"]}, ctx))
        assert msg.startswith("unresolved reference 'steps.x.outputs.y': no key 'x'")

    def test_template_errors_have_template_columns(self, ctx: dict[str, Any]) -> None:
        exc = err(interpolate, "echo ${inputs.a ==} done", ctx)
        assert exc.column == 19
        assert "in 'echo ${inputs.a ==} done'" in str(exc)
        exc = err(interpolate, "echo ${inputs.name < 3} done", ctx)
        assert exc.column == 20
        assert "cannot compare string with number using '<' at column 20" in str(exc)

    def test_shell_syntax_suggests_escape(self, ctx: dict[str, Any]) -> None:
        msg = str(err(interpolate, "echo ${VAR:-default}", ctx))
        assert "unexpected character ':'" in msg
        assert "write $${ for a literal '${'" in msg
        assert interpolate("echo $${VAR:-default}", ctx) == "echo ${VAR:-default}"

    def test_unterminated_and_empty(self, ctx: dict[str, Any]) -> None:
        exc = err(interpolate, "echo ${inputs.name", ctx)
        assert "unterminated '${'" in str(exc) and exc.column == 6
        exc = err(interpolate, "echo ${}", ctx)
        assert "empty '${}'" in str(exc) and exc.column == 6
        assert "unterminated" in str(err(interpolate, "${'}", ctx))

    def test_check_template(self) -> None:
        check_template("plain text")
        check_template("a ${inputs.x} b ${steps.y.outputs['k']} c")
        check_template(123)
        assert "column 13" in str(err(check_template, "ok ${a} ${b c}"))
        assert "unterminated" in str(err(check_template, "x ${a"))


def test_repeated_evaluation_is_fast(ctx: dict[str, Any]) -> None:
    text = "steps.build.outputs.ok == true and inputs.env in [prod, staging]"
    template = "deploy ${inputs.name} to ${inputs.env} (${steps.build.outputs.version})"
    start = time.perf_counter()
    for _ in range(20000):
        assert evaluate_condition(text, ctx)
        interpolate(template, ctx)
    # Generous bound: about 10 µs per call pair in practice; parsing once thanks to the cache.
    assert time.perf_counter() - start < 5
