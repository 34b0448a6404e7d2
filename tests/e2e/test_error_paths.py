"""Every command's error paths end in one line, never a traceback.

The walk takes every command of ``btogether --help`` (the parser tree, so a new command is
walked too) and runs it through the real entry point with: an unknown option; no
arguments; its required arguments filled with plausible values; each file it takes
missing, a directory, or garbage; and, if it talks to the relay, a relay that refuses the
connection and a URL that is not one. The administrator's commands also run against a
real relay (``btogether relay serve``) so that their refusals are walked too. A run fails
the walk if an exception escapes ``main`` (Python would print a traceback) or if stderr
shows a traceback or a library's dump (pydantic's "validation error for …").

Separately, as processes: ``… | head`` (a reader that goes away) and ``relay serve`` on a
port in use.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from btogether.cli import build_parser, main
from tests.btogether_cli import relay_serve_process

# Runs that do real work for a long time when their arguments are fine: walked with bad
# input only.
LONG_RUNNING = {"demo", "sim table"}
DUMPS = ("Traceback", "validation error for", "errors.pydantic.dev", "Error:\n")
FILE_DESTS = {
    "config",
    "db",
    "token_file",
    "ca_file",
    "file",
    "scenario",
    "scenarios",
    "state_dir",
    "password_file",
    "workdir",
    "trace",
    "port_file",
}
FILL = {
    "code": "123456",
    "mac": "00:1B:44:11:3A:B7",
    "url": "ws://127.0.0.1:1/",
    "relay": "ws://127.0.0.1:1/",
    "x": "1",
    "y": "2",
    "key": "00" * 16,
    "owner": "Olivia",
    "token": "btg_not-a-credential",
    "meeting": "weekly",
    "state": "on",
}


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if parser.get_default("func") is not None and (not subs or not all(s.required for s in subs)):
        yield path, parser
    for action in subs:
        seen: set[int] = set()
        for name, child in action.choices.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield from _commands(child, (*path, name))


COMMANDS = list(_commands(build_parser()))


@dataclass
class Files:
    garbage: Path
    directory: Path
    root: Path
    made: int = 0

    @property
    def missing(self) -> Path:
        """A path nothing is at (a new one each time: a command may create it)."""
        self.made += 1
        return self.root / f"missing-{self.made}"


def _value(action: argparse.Action, files: Files) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.dest in FILE_DESTS:
        return str(files.garbage)
    return FILL.get(action.dest, "Room Aurora")


def _filled(parser: argparse.ArgumentParser, files: Files) -> list[str]:
    """The command's required arguments with plausible values."""
    argv: list[str] = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if not action.option_strings:
            if action.nargs not in ("?", "*"):
                argv.append(_value(action, files))
        elif action.required:
            argv += [action.option_strings[-1], _value(action, files)]
    return argv


def _variants(
    words: tuple[str, ...], parser: argparse.ArgumentParser, files: Files
) -> Iterator[list[str]]:
    yield ["--no-such-option"]
    filled = _filled(parser, files)
    if " ".join(words) in LONG_RUNNING:
        for action in parser._actions:
            if action.option_strings and action.dest in FILE_DESTS:
                yield [action.option_strings[-1], str(files.garbage)]
        return
    yield []
    yield filled
    options = {a.dest: a for a in parser._actions if a.option_strings}
    for action in parser._actions:
        if action.dest not in FILE_DESTS:
            continue
        for bad in (files.missing, files.directory, files.garbage):
            if action.option_strings:
                yield [*filled, action.option_strings[-1], str(bad)]
            elif action.nargs not in ("?", "*"):
                yield [str(bad) if a == str(files.garbage) else a for a in filled]
    if ("relay" in options and words[0] != "beacon") or "--relay" in filled:
        yield [*filled, "--relay", "ws://127.0.0.1:1/"]
        yield [*filled, "--relay", "not a relay url"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage and one error line
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # what Python would print as a traceback
        raise AssertionError(f"btogether {' '.join(argv)}: {exc!r:.300} escaped") from exc
    _, err = capsys.readouterr()
    for dump in DUMPS:
        assert dump not in err, f"btogether {' '.join(argv)}:\n{err}"
    return code, err


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Files:
    """A machine where nothing runs: no relay, no buses, an empty state, a busy port."""
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\xff not what anyone expects \xfe [[\n" * 4)
    (tmp_path / "a-directory").mkdir()
    for key in [k for k in os.environ if k.startswith(("BTOGETHER_", "XDG_", "DBUS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BTOGETHER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BTOGETHER_RELAY_URL", "ws://127.0.0.1:1/")
    monkeypatch.setenv("BTOGETHER_ADMIN_TOKEN", "btg_not-a-credential")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-system-bus")
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/no-pulse")
    monkeypatch.chdir(tmp_path)
    return Files(garbage, tmp_path / "a-directory", tmp_path)


@pytest.fixture
def busy_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("BTOGETHER_PORT", str(port))
        yield port


@pytest.mark.parametrize(("words", "parser"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_error_path_of_every_command_is_one_line(
    words: tuple[str, ...],
    parser: argparse.ArgumentParser,
    files: Files,
    busy_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for variant in _variants(words, parser, files):
        code, err = _run([*words, *variant], capsys)
        argv = " ".join([*words, *variant])
        if code != 0:
            assert err.strip(), f"btogether {argv} failed silently"
            if "usage:" not in err:  # argparse: usage, then one error line
                assert len(err.strip().splitlines()) == 1, f"btogether {argv}:\n{err}"


def test_the_walk_covers_the_whole_tree() -> None:
    names = {" ".join(w) for w, _ in COMMANDS}
    assert len(names) > 60
    assert {"relay serve", "admin devices import", "client tray", "beacon set-relay"} <= names


@pytest.fixture
def relay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[str, str]]:
    """A real relay with an owner: its URL and the owner's credential."""
    db = tmp_path / "relay.sqlite3"
    assert (
        main(
            [
                "admin",
                "bootstrap",
                "--db",
                str(db),
                "--owner",
                "Olivia",
                "--tenant",
                "Contoso",
                "--json",
            ]
        )
        == 0
    )
    token = json.loads(capsys.readouterr().out)["token"]
    with relay_serve_process(db, tmp_path) as url:
        yield url, token


ADMIN = [(w, p) for w, p in COMMANDS if w[0] == "admin" and w[1] != "bootstrap"]


def test_administrator_commands_refused_by_a_real_relay_say_why_in_one_line(
    files: Files,
    relay: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BTOGETHER_RELAY_URL", relay[0])
    monkeypatch.setenv("BTOGETHER_ADMIN_TOKEN", relay[1])
    walked = 0
    for words, parser in ADMIN:
        for variant in _variants(words, parser, files):
            if "--relay" in variant:
                continue
            code, err = _run([*words, *variant], capsys)
            walked += 1
            if code not in (0, 2) or (code == 2 and "usage:" not in err):
                assert len(err.strip().splitlines()) == 1, f"{words} {variant}:\n{err}"
    assert walked > 100


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path: Path) -> None:
    """``btogether sim table --json | head -c0``: no BrokenPipeError."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "btogether",
            "sim",
            "table",
            "--json",
            str(Path(__file__).resolve().parents[2] / "scenarios" / "boundary-still.toml"),
            "--tracker",
            "naive",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes anything
    err = process.stderr.read().decode()
    assert process.wait(120) == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err, err


def test_relay_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "btogether",
                "relay",
                "serve",
                "--port",
                str(port),
                "--db",
                str(tmp_path / "relay.sqlite3"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"btogether relay serve: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another relay running? choose another --port)"
    ]
