"""wss:// as deployed: HAProxy terminates TLS with a certificate from an internal CA in front
of a real relay. The commands trust that CA only when told (--ca-file / [tls] ca_file), say
clearly why a connection failed (untrusted certificate, wss:// to a plain port), and a
provisioned device can be pointed at the relay's new URL without a reset."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from beacon.state import load_identity
from relay.protocol import admin_wire as aw
from tests.btogether_cli import btogether_argv, run_btogether
from tests.provisioning.conftest import Relay
from tests.tls_harness import InternalCa, haproxy_tls, make_internal_ca


@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory: pytest.TempPathFactory) -> InternalCa:
    return make_internal_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def wss_port(relay: Relay, internal_ca: InternalCa, tmp_path: Path) -> Iterator[int]:
    with haproxy_tls(relay.server.port, internal_ca.server_pem, tmp_path) as port:
        yield port


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTOGETHER_")}
    env["HOME"] = str(tmp_path / "home")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err and err.count("\n") == 1, err


async def _user_token(relay: Relay) -> str:
    owner = await relay.admin()
    user = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name="Alice")
    issued = await owner.typed(aw.CredentialIssued, aw.CredentialIssue, user_id=user.id)
    return issued.token


async def test_client_login_trusts_an_internal_ca_only_when_told(
    relay: Relay, internal_ca: InternalCa, wss_port: int, tmp_path: Path
) -> None:
    token, env = await _user_token(relay), _env(tmp_path)
    url = f"wss://127.0.0.1:{wss_port}/"
    state = tmp_path / "laptop"
    rc, _, err = await run_btogether(
        "client", "login", "--relay", url, "--token", token, "--state-dir", str(state), env=env
    )
    assert rc == 1 and "certificate is not trusted" in err and "--ca-file" in err
    _one_line_error(err)
    assert not (state / "client.json").exists()

    rc, out, err = await run_btogether(
        "client",
        "login",
        "--relay",
        url,
        "--token",
        token,
        "--state-dir",
        str(state),
        "--ca-file",
        str(internal_ca.ca_file),
        "--json",
        env=env,
    )
    assert rc == 0, err
    stored = json.loads(out)
    assert stored["verified"]["tenant_id"] == relay.contoso.id
    assert stored["ca_file"] == str(internal_ca.ca_file)
    assert json.loads((state / "client.json").read_text())["ca_file"] == str(internal_ca.ca_file)

    # The running client reaches the relay through TLS with the stored CA.
    env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={tmp_path}/no-bus"
    client = await asyncio.create_subprocess_exec(
        *btogether_argv("client", "run", "--no-lock-watch", "--state-dir", str(state)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        rc, out, err = await run_btogether(
            "client", "status", "--wait", "20", "--json", "--state-dir", str(state), env=env
        )
        assert rc == 0, err
        assert json.loads(out)["relay"]["connected"] is True
    finally:
        client.terminate()
        assert await asyncio.wait_for(client.wait(), 10) == 0


async def test_wss_to_a_plain_port_says_so(relay: Relay, tmp_path: Path) -> None:
    token, env = await _user_token(relay), _env(tmp_path)
    plain_as_tls = f"wss://127.0.0.1:{relay.server.port}/"
    rc, _, err = await run_btogether(
        "client",
        "login",
        "--relay",
        plain_as_tls,
        "--token",
        token,
        "--state-dir",
        str(tmp_path / "laptop"),
        env=env,
    )
    assert rc == 1 and "TLS handshake" in err and "plain ws://" in err, err
    _one_line_error(err)
    rc, _, err = await run_btogether(
        "beacon",
        "provision",
        "123456",
        "--relay",
        plain_as_tls,
        "--mac",
        "00:1B:44:11:3A:B7",
        "--state-dir",
        str(tmp_path / "device"),
        env=env,
    )
    assert rc == 1 and "TLS handshake" in err and "plain ws://" in err, err
    _one_line_error(err)


async def test_device_provisions_over_wss_and_moves_to_a_new_relay_url(
    relay: Relay, internal_ca: InternalCa, wss_port: int, tmp_path: Path
) -> None:
    env, state = _env(tmp_path), tmp_path / "device"
    admin = await relay.admin(relay.contoso.admin_token)
    mac = "00:1B:44:11:3A:B7"
    device = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac=mac, kind="room_system")
    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    wss = f"wss://127.0.0.1:{wss_port}/"
    provision = (
        "beacon",
        "provision",
        code.code,
        "--relay",
        wss,
        "--mac",
        mac,
        "--state-dir",
        str(state),
    )
    rc, _, err = await run_btogether(*provision, env=env)
    assert rc == 1 and "certificate is not trusted" in err, err
    _one_line_error(err)
    # The CA from the beacon's settings file, as a device would have it in beacon.toml.
    (state).mkdir(mode=0o700)
    (state / "beacon.toml").write_text(f'[tls]\nca_file = "{internal_ca.ca_file}"\n')
    rc, out, err = await run_btogether(*provision, "--json", env=env)
    assert rc == 0, err
    assert json.loads(out)["device_id"] == device.id
    identity = load_identity(state)
    assert identity is not None and identity.relay_url == wss

    # The relay moves (here: reachable at its plain port): no reset, no new code.
    plain = relay.url
    rc, out, err = await run_btogether(
        "beacon", "set-relay", plain, "--state-dir", str(state), env=env
    )
    assert rc == 0, err
    assert f"from {wss} to {plain}" in out
    moved = load_identity(state)
    assert moved is not None and moved.relay_url == plain
    assert moved.credential == identity.credential and moved.device_id == identity.device_id

    # A relay that does not know the device's credential: nothing changes.
    rc, _, err = await run_btogether(
        "beacon",
        "set-relay",
        f"wss://127.0.0.1:{wss_port}/other",
        "--state-dir",
        str(state),
        "--ca-file",
        str(tmp_path / "missing.pem"),
        env=env,
    )
    assert rc == 2 and "missing.pem does not exist" in err, err
    rc, _, err = await run_btogether(
        "beacon", "set-relay", "ws://127.0.0.1:1/", "--state-dir", str(state), env=env
    )
    assert rc == 1 and "nothing changed" in err and "connection refused" in err, err
    _one_line_error(err)
    unchanged = load_identity(state)
    assert unchanged is not None and unchanged.relay_url == plain


async def test_admin_commands_trust_the_internal_ca_they_are_given(
    relay: Relay, internal_ca: InternalCa, wss_port: int, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    common = ("--relay", f"wss://127.0.0.1:{wss_port}/", "--token", relay.owner_token)
    rc, _, err = await run_btogether("admin", "whoami", *common, env=env)
    assert rc == 1 and "certificate is not trusted" in err, err
    _one_line_error(err)
    rc, out, err = await run_btogether(
        "admin", "whoami", *common, "--json", "--ca-file", str(internal_ca.ca_file), env=env
    )
    assert rc == 0, err
    assert json.loads(out)["role"] == "owner"
