"""The ``btogether`` command: one entry point, a subcommand per job.

Each command group lives with the package it belongs to and exposes
``add_arguments(parser)``, which registers its options and sets ``func`` (a callable
taking the parsed namespace and returning an exit code) as a parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence

from btogether.logs import configure_logging
from hw.stdout import quiet_stdout

# (command, module, one-line help). A module that is not there yet is skipped.
COMMAND_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("demo", "btogether.demo", "run the whole Better Together story on simulated hardware"),
    ("air", "hw.sim.cli", "simulate BlueZ for several hosts sharing one (simulated) air"),
    ("beacon", "beacon.cli", "the beacon daemon for room systems and desk phones"),
    ("client", "client.cli", "the laptop client: scan, nearby devices, pairing, audio"),
    ("relay", "relay.cli.serve", "run the relay service"),
    ("admin", "relay.cli.admin", "administer a running relay (tenants, users, devices, codes)"),
    ("sim", "client.proximity.sim_cli", "score the proximity tracker against simulated floors"),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, other command groups are listed but not imported.

    Importing every group pulls in bleak, dbus-fast, websockets and the wire models;
    a one-shot command such as ``btogether admin …`` should not pay for all of them.
    """
    parser = argparse.ArgumentParser(
        prog="btogether",
        description=(
            "btogether: proximity join and Better Together for any meeting room. "
            "Bluetooth LE is used only for discovery; everything else goes through the relay."
        ),
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="how much to log to stderr (default: warning)",
    )
    parser.add_argument("--log-json", action="store_true", help="log as JSON lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMAND_GROUPS:
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
                continue
            raise
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments: Callable[[argparse.ArgumentParser], None] = module.add_arguments
        add_arguments(cmd)
    for each in walk(parser):
        show_defaults(each)
    return parser


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """This parser and every parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from walk(child)


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: …)`` to the help of every option that has a default and does not
    say it already, so that ``--help`` shows what leaving an option out means."""
    for action in parser._actions:
        default = action.default
        if (
            action.help in (None, argparse.SUPPRESS)
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            or "default" in str(action.help).lower()
        ):
            continue
        action.help = f"{action.help} (default: %(default)s)"


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in COMMAND_GROUPS}
    chosen = next((w for w in words if w in names), None)
    parser = build_parser(only=chosen)
    args = parser.parse_args(words)
    configure_logging(args.log_level, args.log_json)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        quiet_stdout()  # the reader went away (`… | head`): stop quietly, like other tools
        return 0
    except OSError as exc:
        # What the machine refused (a file that is a directory, a full disk…) and no
        # command foresaw: one line saying what and where, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(
            f"btogether {chosen or ''}: {exc.strerror or exc}{where}".replace("  ", " "),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
