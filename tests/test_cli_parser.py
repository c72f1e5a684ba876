"""`cpf` builds only the parser of the command it runs (core/cli.py `_parser`): the
usage, help and errors of every command must stay those of the whole parser."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from core.cli import _parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


FULL = _commands(_parser())


@pytest.mark.parametrize("name", sorted(FULL))
def test_a_command_alone_has_the_whole_parsers_help(name: str) -> None:
    alone = _commands(_parser([name, "--anything"]))
    assert list(alone) == [name]
    assert alone[name].format_help() == FULL[name].format_help()
    assert alone[name].format_usage() == FULL[name].format_usage()


@pytest.mark.parametrize(
    "argv", [[], ["bogus"], ["-h"], ["--help", "run"], [""], ["--bogus", "run"]]
)
def test_no_command_or_an_unknown_one_gets_the_whole_parser(argv: list[str]) -> None:
    assert _parser(argv).format_help() == _parser().format_help()
    assert list(_commands(_parser(argv))) == list(FULL)


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["resume"],
        ["resume", "--run-id", "x", "--event", "e", "--input", "{}", "--surface", "web"],
        ["runs", "--status", "nope"],
        ["keys"],
        ["db", "nope"],
        ["serve", "--port", "x"],
        ["--version"],
        ["-v", "run"],
    ],
)
def test_usage_errors_and_version_are_unchanged(argv: list[str]) -> None:
    """The real `cpf` (lazy) against argparse on the whole parser, in one process each."""
    code = "import sys\nfrom core.cli import _parser\n_parser().parse_args(sys.argv[1:])\n"
    whole = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    lazy = subprocess.run([sys.executable, "-m", "core", *argv], capture_output=True, text=True)
    assert lazy.returncode == whole.returncode
    assert lazy.stdout == whole.stdout
    assert lazy.stderr == whole.stderr
