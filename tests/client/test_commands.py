"""``btogether client …`` as a user runs it: login, the daemon as a process, the commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from hw.control_socket import ControlError, DaemonNotRunning, call
from hw.standin.logind import LogindStandIn
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.btogether_cli import run_btogether
from tests.client.conftest import Air, RelayHarness, World, btogether_argv, eventually


async def cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    return await run_btogether("client", *args, env=env or dict(os.environ), stdin=stdin)


async def login(state: Path, relay: RelayHarness, token: str, *extra: str) -> tuple[int, str, str]:
    token_file = state.parent / "token"
    token_file.write_text(token + "\n")
    return await cli(
        "login",
        "--state-dir",
        str(state),
        "--relay",
        relay.url,
        "--token-file",
        str(token_file),
        *extra,
    )


async def test_login_stores_an_owner_only_credential_and_keeps_the_laptop_id(
    tmp_path: Path, relay: RelayHarness, world: World
) -> None:
    state = tmp_path / "state"
    code, out, err = await login(
        state, relay, world.alice_credential.token, "--name", "Alice's laptop"
    )
    assert code == 0, err
    assert f"user {world.alice.id}" in out
    config = json.loads((state / "client.json").read_text())
    assert config["relay_url"] == relay.url and config["laptop_name"] == "Alice's laptop"
    assert (state / "credential").read_text().strip() == world.alice_credential.token
    for name in ("client.json", "credential"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    code, _, err = await login(state, relay, world.alice_credential.token)
    assert code == 0, err
    again = json.loads((state / "client.json").read_text())
    assert again["laptop_id"] == config["laptop_id"]
    assert again["laptop_name"] == "Alice's laptop"


async def test_login_refuses_a_bad_url_or_credential_and_stores_nothing(
    tmp_path: Path, relay: RelayHarness, world: World
) -> None:
    state = tmp_path / "state"
    code, _, err = await cli(
        "login", "--state-dir", str(state), "--relay", "http://x/", "--token", "abc"
    )
    assert code == 2 and "wss://" in err
    code, _, err = await login(state, relay, "wrong-token")
    assert code == 1 and "HTTP 401" in err
    assert not (state / "credential").exists()


async def test_commands_say_clearly_when_the_client_is_not_running_or_not_configured(
    tmp_path: Path,
) -> None:
    state = tmp_path / "s"
    code, _, err = await cli("status", "--state-dir", str(state))
    assert code == 3 and "not running" in err and "btogether client run" in err
    code, out, _ = await cli("nearby", "--state-dir", str(state), "--json")
    assert code == 3 and json.loads(out)["error"]["code"] == "not_running"
    code, _, err = await cli("run", "--state-dir", str(state))
    assert code == 2 and "client login" in err
    state.mkdir()
    (state / "client.json").write_text('{"relay_url": "ws://127.0.0.1:1/", "laptop_id": "a b"}')
    (state / "credential").write_text("token")
    (state / "credential").chmod(0o600)
    code, _, err = await cli("run", "--state-dir", str(state))
    assert code == 2 and "laptop_id" in err and "laptop_name" in err
    (state / "client.json").write_text(
        '{"relay_url": "ws://127.0.0.1:1/", "laptop_id": "a", "laptop_name": "n"}'
    )
    (state / "credential").chmod(0o644)
    code, _, err = await cli("run", "--state-dir", str(state))
    assert code == 2 and "chmod 600" in err


async def test_client_run_serves_every_command_end_to_end(
    tmp_path: Path,
    air: Air,
    relay: RelayHarness,
    world: World,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    state = tmp_path / "state"
    code, _, err = await login(state, relay, world.alice_credential.token)
    assert code == 0, err
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": air.address("laptop")}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    daemon = await asyncio.create_subprocess_exec(
        *btogether_argv(
            "client",
            "run",
            "--state-dir",
            str(state),
            "--report-interval",
            "0.2",
            "--reconnect-max",
            "1",
        ),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _drive(state, env, world, phone_link, logind)
        code, _, err = await cli("run", "--state-dir", str(state), env=env)
        assert code == 1 and "already running" in err
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
        _, log = await asyncio.wait_for(daemon.communicate(), 20)
    assert daemon.returncode == 0, log.decode()[-2000:]
    assert not (state / "control.sock").exists()


async def _drive(
    state: Path, env: dict[str, str], world: World, phone_link: RelayLink, logind: LogindStandIn
) -> None:
    sd = ("--state-dir", str(state))
    code, out, err = await cli("status", *sd, "--wait", "20", "--json", env=env)
    assert code == 0, err
    status = json.loads(out)
    assert status["relay"]["connected"] and status["relay"]["user_id"] == world.alice.id
    assert stat.S_IMODE((state / "control.sock").stat().st_mode) == 0o600

    async def nearby_in_order() -> Any:
        # Polled over the control socket itself (a command per poll costs a Python start-up).
        names = [d["name"] for d in await call(state / "control.sock", "nearby")]
        return names == ["Alice's desk phone", "Kitchen speakerphone", "Room 4.01"]

    await eventually(nearby_in_order, within=20, every=0.2, what="nearby, nearest first")
    code, out, _ = await cli("nearby", *sd, env=env)
    assert code == 0 and out.splitlines()[0].split()[:4] == ["1.", "Alice's", "desk", "phone"]
    assert "(your phone)" in out.splitlines()[0]

    code, out, err = await cli("connect", *sd, "Kitchen speakerphone", env=env)
    assert code == 1 and "not_connectable" in err

    async def phone_confirms() -> str:
        prompt = await phone_link.next_event("pair.prompt", within=20)
        assert isinstance(prompt, wire.PairPrompt)
        await phone_link.pair_confirm(prompt.request_id, True)
        return prompt.code

    phone_side = asyncio.create_task(phone_confirms())
    code, out, err = await cli("connect", *sd, "--yes", "--json", env=env)
    assert code == 0, err
    result = json.loads(out)
    assert result["outcome"] == "paired" and result["phone_id"] == world.phone.id
    assert result["code"] == await phone_side

    code, out, _ = await cli("pairings", *sd, "--json", env=env)
    assert [p["phone_id"] for p in json.loads(out)] == [world.phone.id]

    code, out, _ = await cli("status", *sd, "--json", env=env)
    assert json.loads(out)["lock"]["watch"] == "watching"
    logind.desktop_lock()
    command = await phone_link.next_event("lock.command", within=10)
    assert isinstance(command, wire.LockCommand) and command.state == "locked"

    code, out, _ = await cli("lock-sync", "off", *sd, env=env)
    assert code == 0 and "off" in out
    assert json.loads((state / "client.json").read_text())["lock_sync"] is False
    logind.desktop_unlock()
    with pytest.raises(TimeoutError):
        await phone_link.next_event("lock.command", within=1.0)

    code, out, err = await cli("audio", "off", *sd, env=env)
    assert code == 1 and "no_audio" in err
    code, out, err = await cli("unpair", "Alice's desk phone", *sd, "--json", env=env)
    assert code == 0, err
    assert json.loads(out) == {"phone_id": world.phone.id, "paired": False}
    removed = await phone_link.next_event("pair.removed", within=5)
    assert isinstance(removed, wire.PairRemoved)
    with pytest.raises(ControlError) as again:
        await call(state / "control.sock", "unpair", {"phone": "Alice's desk phone"})
    assert again.value.code == "not_paired"


async def _start_client(state: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *btogether_argv(
            "client", "run", "--state-dir", str(state), "--no-lock-watch", "--reconnect-max", "1"
        ),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stop_client(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, log = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, log.decode()[-2000:]


async def test_a_running_client_takes_a_new_login_and_keeps_its_meeting_across_restarts(
    tmp_path: Path, relay: RelayHarness, world: World
) -> None:
    state, sd = tmp_path / "state", ("--state-dir", str(tmp_path / "state"))
    code, _, err = await login(state, relay, "btg_not-a-credential", "--no-verify")
    assert code == 0, err
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    client = await _start_client(state, env)
    try:

        async def refused() -> Any:
            try:
                status = await call(state / "control.sock", "status")
            except DaemonNotRunning:  # not yet: the socket's file exists before it listens
                return False
            return "HTTP 401" in (status["relay"]["error"] or "") and status["relay"]["error"]

        why = await eventually(refused, within=20, what="the relay refusing the credential")
        assert "client login" in why
        code, out, _ = await cli("meeting", "weekly-sync", *sd, env=env)
        assert code == 0 and "weekly-sync" in out

        code, out, err = await login(state, relay, world.alice_credential.token)
        assert code == 0, err
        assert "The running client switched to this login." in out
        code, out, err = await cli("status", *sd, "--wait", "10", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["relay"]["user_id"] == world.alice.id
    finally:
        await _stop_client(client)

    client = await _start_client(state, env)
    try:
        code, out, err = await cli("status", *sd, "--wait", "20", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["meeting_id"] == "weekly-sync"
        code, out, _ = await cli("meeting", "--leave", *sd, env=env)
        assert code == 0 and not (state / "meeting.json").exists()
    finally:
        await _stop_client(client)


async def test_client_toml_tunes_the_client_and_a_bad_key_is_named(
    tmp_path: Path, relay: RelayHarness, world: World
) -> None:
    state, sd = tmp_path / "state", ("--state-dir", str(tmp_path / "state"))
    code, _, err = await login(state, relay, world.alice_credential.token)
    assert code == 0, err
    (state / "client.toml").write_text("[scan]\nreport_intervall_s = 0.3\n")
    code, _, err = await cli("run", *sd)
    assert code == 2 and "client.toml is invalid" in err and "report_intervall_s" in err
    assert "Traceback" not in err and err.count("\n") == 1
    code, _, err = await cli("run", *sd, "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml does not exist" in err
    (state / "client.toml").write_text('[lock]\nsession = "7"\n[scan]\nfresh_s = 2.5\n')
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    client = await _start_client(state, env)
    try:
        code, out, err = await cli("status", *sd, "--wait", "20", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["settings_file"] == str(state / "client.toml")
    finally:
        await _stop_client(client)
    # What the commands write to client.json leaves the settings file alone.
    assert "login" not in (state / "client.toml").read_text()
    assert "scan" not in json.loads((state / "client.json").read_text())


async def test_ctrl_c_in_connect_withdraws_the_pair_request(
    tmp_path: Path,
    air: Air,
    relay: RelayHarness,
    world: World,
    phone_link: RelayLink,
    logind: LogindStandIn,
) -> None:
    state = tmp_path / "state"
    code, _, err = await login(state, relay, world.alice_credential.token)
    assert code == 0, err
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": air.address("laptop")}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    daemon = await _start_client(state, env)
    try:
        sd = ("--state-dir", str(state))
        code, _, err = await cli("status", *sd, "--wait", "20", "--json", env=env)
        assert code == 0, err

        async def phone_is_near() -> bool:
            near = await call(state / "control.sock", "nearby")
            return any(d["name"] == "Alice's desk phone" for d in near)

        await eventually(phone_is_near, within=20, every=0.2, what="the phone nearby")
        connecting = await asyncio.create_subprocess_exec(
            *btogether_argv("client", "connect", *sd, "--yes"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        prompt = await phone_link.next_event("pair.prompt", within=20)
        assert isinstance(prompt, wire.PairPrompt)
        # The laptop confirmed (--yes) and waits for the phone: the user gives up.
        await asyncio.sleep(0.5)
        connecting.send_signal(signal.SIGINT)
        _, err_bytes = await asyncio.wait_for(connecting.communicate(), 20)
        assert connecting.returncode == 130, err_bytes.decode()
        assert "withdrawn" in err_bytes.decode() and "Traceback" not in err_bytes.decode()
        ended = await phone_link.next_event("pair.ended", within=5)
        assert isinstance(ended, wire.PairEnded) and ended.request_id == prompt.request_id
        # Confirming on the phone afterwards pairs nothing.
        with pytest.raises(Exception, match="not_found"):
            await phone_link.pair_confirm(prompt.request_id, True)
    finally:
        await _stop_client(daemon)


async def test_a_credential_file_that_is_not_one_gets_one_line(tmp_path: Path) -> None:
    for path, expected in (
        ("/dev/zero", "larger than 8192 bytes"),
        (str(tmp_path), "is a directory"),
        (str(tmp_path / "missing"), "cannot read the credential"),
    ):
        code, _, err = await cli(
            "login", "--state-dir", str(tmp_path / "s"), "--relay", "ws://127.0.0.1:9/",
            "--token-file", path,
        )
        assert code != 0 and expected in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
