"""Every command documents itself: a description, help for every argument with its default,
and ``--json`` on every command that reports something."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from btogether.cli import build_parser

# Daemons (their output is a log and readiness lines) and the CSV template print no report.
NOT_REPORTING = {
    "air",
    "beacon run",
    "client run",
    "client tray",
    "relay serve",
    "admin devices template",
}


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser, bool]]:
    """(command words, parser, whether it runs something itself) for every parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    runs = parser.get_default("func") is not None and (
        not subs or not all(s.required for s in subs)
    )
    yield " ".join(path), parser, runs
    for action in subs:
        seen: set[int] = set()
        for name, child in action.choices.items():
            if id(child) not in seen:  # aliases
                seen.add(id(child))
                yield from commands(child, (*path, name))


ALL = list(commands(build_parser()))
RUNNABLE = [(words, parser) for words, parser, runs in ALL if runs]


def test_the_command_tree_is_whole() -> None:
    names = {words for words, _ in RUNNABLE}
    assert len(RUNNABLE) > 60
    assert {"admin devices import", "beacon set-relay", "client login", "air hosts"} <= names


@pytest.mark.parametrize(
    ("words", "parser"),
    [(w, p) for w, p, _ in ALL if w],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_every_command_and_group_has_a_description(
    words: str, parser: argparse.ArgumentParser
) -> None:
    assert parser.description and len(parser.description) > 10, words


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
    ]


@pytest.mark.parametrize(
    ("words", "parser"), [(w, p) for w, p, _ in ALL], ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_argument_has_help_that_shows_its_default(
    words: str, parser: argparse.ArgumentParser
) -> None:
    rendered = " ".join(parser.format_help().split())
    for action in _arguments(parser):
        assert action.help and action.help != argparse.SUPPRESS, (words, action.dest)
        if action.default not in (None, False, [], argparse.SUPPRESS):
            formatter = parser._get_formatter()
            text = " ".join(formatter._expand_help(action).split())
            assert "default" in text.lower(), (words, action.dest, text)
            assert text in rendered


@pytest.mark.parametrize(
    ("words", "parser"), RUNNABLE, ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_reporting_command_has_json(words: str, parser: argparse.ArgumentParser) -> None:
    has_json = any("--json" in a.option_strings for a in parser._actions)
    assert has_json == (words not in NOT_REPORTING), words
