"""Hooks (run without a shell, time-limited, never fatal), the control socket, the config."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from beacon.config import ConfigError, HookSettings, load_config
from beacon.control import BEACON, control_path
from beacon.hooks import HookRunner, hook_environment
from hw.control_socket import AlreadyRunning, ControlServer, DaemonNotRunning, call_blocking
from tests.beacon.conftest import short_dir


def test_hook_environment_carries_the_event_and_its_details() -> None:
    env = hook_environment({"PATH": "/bin"}, "on_lock", {"seq": "3", "lock_state": "locked"})
    assert env == {"PATH": "/bin", "BTOGETHER_EVENT": "on_lock", "BTOGETHER_SEQ": "3",
                   "BTOGETHER_LOCK_STATE": "locked"}


async def test_a_hook_runs_without_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # `;` and `>` would mean something to a shell; here they are plain arguments.
    script = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))"
    command = shlex.join([sys.executable, "-c", script, str(out), "a;b", ">c"])
    runner = HookRunner(HookSettings(on_lock=command))
    task = runner.fire("on_lock", {"seq": "1"})
    assert task is not None
    outcome = await task
    assert outcome.returncode == 0 and out.read_text() == "a;b >c"
    assert runner.fire("on_unlock", {}) is None  # not configured


async def test_a_hook_past_its_time_limit_is_killed_and_logged() -> None:
    command = shlex.join([sys.executable, "-c", "import time; time.sleep(30)"])
    runner = HookRunner(HookSettings(on_join=command, timeout_s=0.5))
    started = time.monotonic()
    task = runner.fire("on_join", {})
    assert task is not None
    outcome = await task
    assert outcome.timed_out and outcome.returncode is None
    assert time.monotonic() - started < 5


async def test_missing_and_failing_hooks_are_reported_not_raised() -> None:
    missing = HookRunner(HookSettings(on_lock="/nonexistent/hook --flag"))
    task = missing.fire("on_lock", {})
    assert task is not None
    outcome = await task
    assert outcome.returncode is None and "No such file" in outcome.error
    failing = HookRunner(HookSettings(on_lock=shlex.join([sys.executable, "-c", "exit(3)"])))
    task = failing.fire("on_lock", {})
    assert task is not None
    assert (await task).returncode == 3


async def test_the_beacon_control_socket_is_owner_only_and_names_the_beacon_daemon() -> None:
    state_dir = short_dir("bt-ctl-")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def handler(op: str, args: dict[str, Any]) -> dict[str, Any]:
        seen.append((op, args))
        return {"echo": op}

    server = ControlServer(control_path(state_dir), handler, BEACON)
    await server.start()
    try:
        assert control_path(state_dir).stat().st_mode & 0o777 == 0o600
        reply = await asyncio.to_thread(
            call_blocking, control_path(state_dir), "status", None, 5.0, BEACON
        )
        assert reply == {"echo": "status"} and seen == [("status", {})]
        second = ControlServer(control_path(state_dir), handler, BEACON)
        with pytest.raises(AlreadyRunning, match="the beacon daemon is already running"):
            await second.start()
    finally:
        await server.stop()
    assert not control_path(state_dir).exists()
    with pytest.raises(DaemonNotRunning, match="start it with `btogether beacon run`"):
        await asyncio.to_thread(call_blocking, control_path(state_dir), "status", None, 5.0, BEACON)


async def test_the_beacon_control_socket_refuses_garbage_without_calling_the_handler() -> None:
    state_dir = short_dir("bt-ctl-")

    async def handler(op: str, args: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("must not be called")

    server = ControlServer(control_path(state_dir), handler, BEACON)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(control_path(state_dir)))
        writer.write(b"not json\n")
        await writer.drain()
        assert b"bad_request" in await reader.readline()
        writer.close()
    finally:
        await server.stop()


def test_environment_overrides_the_file_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "beacon.toml"
    path.write_text('auto_confirm = false\n[audio]\nsink = "file_sink"\nsource = "mic"\n')
    settings = load_config(path, required=True, env={
        "BTOGETHER_AUTO_CONFIRM": "true", "BTOGETHER_AUDIO__SINK": "env_sink",
        "BTOGETHER_STATE_DIR": "/elsewhere",  # someone else's variable: ignored
    })
    assert settings.auto_confirm is True
    assert (settings.audio.sink, settings.audio.source) == ("env_sink", "mic")

    path.write_text("[lock]\nbus = 'x'\n")
    with pytest.raises(ConfigError, match=r"lock\.bus"):
        load_config(path, required=True, env={})
    with pytest.raises(ConfigError, match=r"hooks\.on_join: .*empty"):
        load_config(None, required=False, env={"BTOGETHER_HOOKS__ON_JOIN": "  "})


def test_an_absent_default_config_file_means_defaults(tmp_path: Path) -> None:
    settings = load_config(tmp_path / "beacon.toml", required=False, env={})
    assert settings.auto_confirm is None and settings.hooks.on_lock is None
