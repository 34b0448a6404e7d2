"""What an operator installs: the systemd units (they run our commands from a fixed path,
parse as units, and are sandboxed as far as systemd's own review says), the example
settings files (generated from the models, every key with its default) and the licence."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from beacon.daemon_cli import run_command as beacon_run
from btogether import config_examples
from btogether.cli import build_parser
from client.cli.commands import _run as client_run
from relay.cli.serve import run_serve

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "packaging" / "systemd"
SYSTEM_UNITS = ("btogether-relay.service", "btogether-beacon.service")
USER_UNIT = "btogether-client.service"
MAX_SYSTEM_EXPOSURE = 2.0


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser["Service"]


@pytest.mark.parametrize(
    ("unit", "program", "func"),
    [
        ("btogether-relay.service", "/opt/btogether/bin/btogether", run_serve),
        ("btogether-beacon.service", "/opt/btogether/bin/btogether", beacon_run),
        ("btogether-client.service", "%h/.local/bin/btogether", client_run),
    ],
)
def test_units_run_our_command_from_where_the_readme_installs_it(
    unit: str, program: str, func: Any
) -> None:
    argv = shlex.split(_service(unit)["ExecStart"])
    assert argv[0] == program  # not /usr/bin/env: a service's PATH does not have a venv
    args = build_parser().parse_args(argv[1:])
    assert args.func is func or getattr(args.func, "__wrapped__", None) is func


def test_relay_unit_reads_the_example_config_and_keeps_its_database_in_its_state() -> None:
    service = _service("btogether-relay.service")
    args = build_parser().parse_args(shlex.split(service["ExecStart"])[1:])
    assert args.config == Path("/etc/btogether/relay.toml")
    assert (ROOT / "packaging/config/relay.toml").exists()
    assert service["StateDirectory"] == "btogether-relay"
    assert service["WorkingDirectory"] == "%S/btogether-relay"  # the relative default db lands here


def _exposure(unit: Path) -> float:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing (./dev.sh test installs systemd)"
    done = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize("unit", SYSTEM_UNITS)
def test_system_units_score_at_most_two_in_systemds_security_review(unit: str) -> None:
    assert _exposure(UNITS / unit) <= MAX_SYSTEM_EXPOSURE


def test_user_units_score_is_the_one_the_readme_states() -> None:
    readme = (ROOT / "README.md").read_text()
    stated = re.search(r"`btogether-client.service` scores (\d+\.\d)", readme)
    assert stated, "the README states the user unit's exposure score"
    assert _exposure(UNITS / USER_UNIT) == float(stated.group(1)) <= MAX_SYSTEM_EXPOSURE


@pytest.mark.parametrize("unit", (*SYSTEM_UNITS, USER_UNIT))
def test_units_have_no_unknown_or_misspelt_settings(unit: str, tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointed at a program that exists here."""
    text = (UNITS / unit).read_text()
    checked = tmp_path / unit
    checked.write_text(re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.M))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(checked)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_no_placeholder_urls_are_shipped() -> None:
    for path in (ROOT / "packaging").rglob("*"):
        if path.is_file():
            assert "example.invalid" not in path.read_text(), path


def test_example_config_files_are_what_the_models_say() -> None:
    assert config_examples.main(["--check"]) == 0


def _uncommented(text: str) -> dict[str, Any]:
    """The example with every ``#key = value`` line switched on."""
    lines = [re.sub(r"^#(?=[a-z_]+ = )", "", line) for line in text.splitlines()]
    return tomllib.loads("\n".join(lines))


def _defaults_and_examples(model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out[name] = _defaults_and_examples(annotation)
        elif field.default == [] and field.examples:
            out[name] = field.examples[0]  # an empty list is shown by an example
        elif field.default is not None:
            out[name] = str(field.default) if isinstance(field.default, Path) else field.default
        else:
            out[name] = field.examples[0] if field.examples else None
    return out


@pytest.mark.parametrize("example", config_examples.EXAMPLES, ids=lambda e: e.filename)
def test_every_key_of_an_example_is_valid_and_shows_its_default(
    example: config_examples.Example,
) -> None:
    data = _uncommented((ROOT / "packaging/config" / example.filename).read_text())
    if example.table is not None:
        data = data[example.table]
    assert data == _defaults_and_examples(example.model)
    example.model.model_validate(data)  # every key is accepted with that value


def test_the_licence_is_the_apache_2_text_the_metadata_names() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
