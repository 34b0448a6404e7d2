"""The packaged systemd unit runs the command and reads the config the daemon documents."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from beacon.config import default_config_path
from beacon.daemon_cli import run_command
from btogether.cli import build_parser

UNIT = Path(__file__).resolve().parents[2] / "packaging/systemd/btogether-beacon.service"


def _service() -> tuple[list[str], dict[str, str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    argv = shlex.split(parser["Service"]["ExecStart"])
    env: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return argv, env


def test_exec_start_is_beacon_run_and_parses() -> None:
    argv, _ = _service()
    assert argv[0] == "/opt/btogether/bin/btogether"
    args = build_parser().parse_args(argv[1:])
    assert args.func is run_command and args.state_dir is None


def test_unit_points_the_daemon_at_its_state_and_config_directories() -> None:
    _, env = _service()
    assert env["BTOGETHER_STATE_DIR"] == "/var/lib/btogether"
    assert default_config_path(Path(env["BTOGETHER_STATE_DIR"]), env) == Path(
        "/etc/btogether/beacon.toml"
    )
    text = UNIT.read_text()
    assert "StateDirectory=btogether" in text and "ConfigurationDirectory=btogether" in text
    assert "AF_UNIX" in text  # the control socket and D-Bus
