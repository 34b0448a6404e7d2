"""The example configuration files, generated from the settings models: every key, its default.

``python -m btogether.config_examples`` writes ``packaging/config/relay.toml``,
``beacon.toml`` and ``client.toml``; ``--check`` exits 1 if a file differs from what the
models say (a test runs it, so a new or changed setting cannot be left out). Each key is
shown commented out with its default value, so a copied file changes nothing until a line
is uncommented; a key without a default (``None``) shows an example value instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from beacon.config import BeaconSettings
from client.config import ClientSettings
from relay.config import RelaySettings

OUT_DIR = Path(__file__).resolve().parent.parent / "packaging" / "config"
WIDTH = 88


@dataclass(frozen=True)
class Example:
    """One example file: its name, the model it documents, and what to say first."""

    filename: str
    model: type[BaseModel]
    header: str
    table: str | None = None  # all keys inside this table (the relay's [relay])


EXAMPLES = (
    Example(
        "relay.toml",
        RelaySettings,
        """btogether relay settings: `btogether relay serve --config relay.toml`
(the systemd unit reads /etc/btogether/relay.toml). Precedence: these defaults < this file
< BTOGETHER_<KEY> environment variables (e.g. BTOGETHER_PORT) < command-line flags.""",
        table="relay",
    ),
    Example(
        "beacon.toml",
        BeaconSettings,
        """btogether beacon daemon settings: beacon.toml in the state directory, or --config /
$BTOGETHER_CONFIG (the systemd unit reads /etc/btogether/beacon.toml). Environment
variables win over the file: BTOGETHER_<TABLE>__<KEY>, e.g. BTOGETHER_AUDIO__SINK.""",
    ),
    Example(
        "client.toml",
        ClientSettings,
        """btogether laptop client settings: client.toml in the client's state directory
(~/.local/state/btogether), or `client run --config FILE` / $BTOGETHER_CLIENT_CONFIG.
The relay URL, its CA file and the credential are stored by `btogether client login`
(client.json and credential), not here.""",
    ),
)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _shown_value(name: str, field: FieldInfo) -> tuple[str, str]:
    """The value to show for a key, and what the comment says about it."""
    if field.default == [] and field.examples:
        return _toml_value(field.examples[0]), "None by default; for example:"
    if field.default is not None:
        return _toml_value(field.default), ""
    if not field.examples:
        raise ValueError(f"{name}: a setting without a default needs an example value")
    return _toml_value(field.examples[0]), "Not set by default; for example:"


def _comment(text: str) -> list[str]:
    text = " ".join(text.replace("``", "`").split())
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ")


def _choices(field: FieldInfo) -> str:
    annotation = field.annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "One of: " + ", ".join(str(a) for a in args) + "."
    if isinstance(annotation, types.UnionType):
        for arg in args:
            if typing.get_origin(arg) is typing.Literal:
                return "One of: " + ", ".join(str(a) for a in typing.get_args(arg)) + "."
    return ""


def _keys(model: type[BaseModel]) -> Iterator[str]:
    for name, field in model.model_fields.items():
        if _submodel(field.annotation) is not None:
            continue
        if not field.description:
            raise ValueError(f"{model.__name__}.{name} has no description")
        value, note = _shown_value(name, field)
        yield from _comment(f"{field.description}.")
        if _choices(field):
            yield from _comment(_choices(field))
        if note:
            yield from _comment(note)
        yield f"#{name} = {value}"


def render(example: Example) -> str:
    lines = _comment(example.header)
    lines += [
        "#",
        "# Generated from the settings models by `python -m btogether.config_examples`: every",
        "# key, commented out, with its default. Uncomment a line to change it.",
        "",
    ]
    model = example.model
    if example.table is not None:
        lines.append(f"[{example.table}]")
    lines.extend(_keys(model))
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        if sub is None:
            continue
        lines.append("")
        if sub.__doc__:
            lines.extend(_comment(sub.__doc__))
        table = f"{example.table}.{name}" if example.table else name
        lines.append(f"[{table}]")
        lines.extend(_keys(sub))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m btogether.config_examples",
        description="Write (or with --check, compare) packaging/config/*.toml.",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a file is not what the models say"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"directory (default: {OUT_DIR})")
    args = parser.parse_args(argv)
    stale = []
    for example in EXAMPLES:
        path = args.out / example.filename
        text = render(example)
        if args.check:
            try:
                current = path.read_text()
            except FileNotFoundError:
                current = ""
            if current != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            "out of date (run `python -m btogether.config_examples`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
