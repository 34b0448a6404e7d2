"""The whole story with real processes: CSV import → verification code →
``btogether beacon provision`` → ``btogether beacon run`` → login code → sign-in → the
device beacons on the simulated air → a laptop of the same tenant hears it and the
relay resolves it (another tenant's laptop learns nothing) → ``btogether beacon reset``.

The relay runs in the test on a real clock (EIDs are derived from wall time); the
beacon commands are subprocesses on the simulated ``room`` host's BlueZ.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hw.bluetooth_address import adapter_address
from hw.scanner import RawAdvert, ScanEvent, ScanMode, ScanOptions, create_scanner
from hw.sim.launch import start_air
from relay.admin.service import bootstrap_owner
from relay.net.server import RelayServer
from relay.protocol import admin_wire as aw
from relay.protocol.admin_link import AdminLink
from relay.protocol.frame import DEFAULT_COMPANY_ID, decode_manufacturer_data
from relay.protocol.link import RelayLink
from relay.storage.sqlite_store import SqliteStore
from tests.relay_harness import relay_settings

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")


async def btogether(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "btogether",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def until(predicate: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def live_relay(tmp_path: Path) -> AsyncIterator[tuple[RelayServer, str]]:
    db = tmp_path / "relay.sqlite3"
    store = SqliteStore(db)
    await store.open()
    _, owner_token = await bootstrap_owner(store, "Olivia Owner", time.time())
    server = RelayServer(relay_settings(db), store)
    await server.start()
    try:
        yield server, owner_token
    finally:
        await server.stop()


async def test_listed_device_is_provisioned_signed_in_beacons_and_is_resolved(
    live_relay: tuple[RelayServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, owner_token = live_relay
    url = f"ws://127.0.0.1:{server.port}/"
    air = start_air([("room", 0.0, 0.0), ("laptop", 2.0, 0.0)])
    state_dir = Path(tempfile.mkdtemp(prefix="btg-prov-", dir="/tmp"))  # short socket paths
    env = {**os.environ, **air.env("room"), "BTOGETHER_STATE_DIR": str(state_dir)}
    daemon: asyncio.subprocess.Process | None = None
    links: list[RelayLink] = []
    owner = await AdminLink.connect(url, owner_token)
    try:
        contoso = await owner.typed(aw.TenantInfo, aw.TenantCreate, name="Contoso")
        fabrikam = await owner.typed(aw.TenantInfo, aw.TenantCreate, name="Fabrikam")
        made = await owner.typed(
            aw.AdminCreated,
            aw.AdminCreate,
            name="Contoso devices",
            role="device_admin",
            tenant_id=contoso.id,
        )
        admin = await AdminLink.connect(url, made.token)

        mac = await adapter_address(bus_address=air.bus_address("room"))
        imported = await admin.typed(
            aw.ImportResult,
            aw.DeviceImport,
            kind="room_system",
            csv=f"MAC address,Location\n{mac},Building 1 / Aurora\n",
        )
        room_id = imported.added[0].id
        code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=room_id)

        rc, out, err = await btogether("beacon", "provision", code.code, "--relay", url, env=env)
        assert rc == 0, err
        assert "Provisioned for Contoso" in out and mac in out
        assert (state_dir / "device.json").stat().st_mode & 0o777 == 0o600
        rc, _, err = await btogether("beacon", "provision", code.code, "--relay", url, env=env)
        assert rc == 2 and "already provisioned for Contoso" in err

        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "btogether",
            "beacon",
            "run",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def online() -> bool:
            listed = await admin.typed(aw.Devices, aw.DeviceList)
            return listed.devices[0].online

        await until(online, 20, "the beacon daemon to connect")
        login = await admin.typed(aw.LoginCode, aw.LoginCodeGet, device_id=room_id)
        account = await owner.typed(
            aw.UserInfo, aw.UserCreate, tenant_id=contoso.id, name="Aurora room"
        )
        signed = await admin.typed(
            aw.DeviceInfo, aw.DeviceSignIn, device_id=room_id, user_id=account.id, code=login.code
        )
        assert signed.state == "signed_in"

        heard: set[bytes] = set()

        def on_event(event: ScanEvent) -> None:
            if isinstance(event, RawAdvert):
                frame = decode_manufacturer_data(event.manufacturer_data)
                if frame is not None:
                    heard.add(frame.eid)

        async def laptop(tenant_id: str, name: str) -> RelayLink:
            user = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=tenant_id, name=name)
            issued = await owner.typed(aw.CredentialIssued, aw.CredentialIssue, user_id=user.id)
            link = await RelayLink.connect(url, issued.token, laptop_id=f"{name}-laptop")
            links.append(link)
            return link

        colleague = await laptop(contoso.id, "alice")
        outsider = await laptop(fabrikam.id, "mallory")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", air.bus_address("laptop"))
        scanner = create_scanner(on_event, ScanOptions(DEFAULT_COMPANY_ID, mode=ScanMode.ACTIVE))
        await scanner.start()
        resolved: list[str] = []
        try:

            async def resolves() -> bool:
                if heard:
                    found = await colleague.report_sightings([(e, -60) for e in heard])
                    resolved[:] = [d.device_id for d in found.devices]
                return room_id in resolved

            await until(resolves, 30, "the room's advert to be heard and resolved")
            outside = await outsider.report_sightings([(e, -60) for e in heard])
            assert outside.devices == []
        finally:
            await scanner.stop()

        daemon.terminate()
        await asyncio.wait_for(daemon.wait(), 15)
        rc, out, err = await btogether("beacon", "reset", env=env)
        assert rc == 0, err
        assert "revoked on the relay" in out
        assert not (state_dir / "device.json").exists()
        listed = await admin.typed(aw.Devices, aw.DeviceList)
        assert listed.devices[0].state == "waiting_for_activation"
        rc, _, err = await btogether("beacon", "provision", code.code, "--relay", url, env=env)
        assert rc == 1 and "already used" in err
        await admin.close()
    finally:
        if daemon is not None and daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        for link in links:
            await link.close()
        await owner.close()
        air.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
