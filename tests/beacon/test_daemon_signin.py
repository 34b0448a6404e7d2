"""From provisioning to beaconing with the real daemon: it shows its login code when the
administrator asks, and advertises only once an account is signed in (and stops after)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from beacon.state import DeviceIdentity, save_identity
from relay.admin.service import bootstrap_owner
from relay.net.server import RelayServer
from relay.protocol import admin_wire as aw
from relay.protocol.admin_link import AdminLink, provision
from relay.storage.sqlite_store import SqliteStore
from tests.beacon.conftest import StartDaemon, short_dir, wait_until
from tests.relay_harness import relay_settings


@pytest.fixture
async def admin_relay(tmp_path: Path) -> AsyncIterator[tuple[RelayServer, str]]:
    db = tmp_path / "relay.sqlite3"
    store = SqliteStore(db)
    await store.open()
    _, owner_token = await bootstrap_owner(store, "Olivia Owner", 0.0)
    server = RelayServer(relay_settings(db), store)
    await server.start()
    try:
        yield server, owner_token
    finally:
        await server.stop()


async def test_login_code_is_shown_and_reported_then_sign_in_starts_the_advert(
    admin_relay: tuple[RelayServer, str], start_daemon: StartDaemon
) -> None:
    server, owner_token = admin_relay
    url = f"ws://127.0.0.1:{server.port}/"
    owner = await AdminLink.connect(url, owner_token)
    tenant = await owner.typed(aw.TenantInfo, aw.TenantCreate, name="Contoso")
    device = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=tenant.id,
                               mac="00:1B:44:11:3A:B7", location="Floor 2", kind="room_system")
    code = await owner.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    bound = await provision(url, "00:1b:44:11:3a:b7", code.code)
    state_dir = short_dir("bt-room-")
    save_identity(state_dir, DeviceIdentity(
        relay_url=url, device_id=bound.device_id, tenant_id=bound.tenant_id,
        organisation=bound.organisation, credential=bound.credential,
        identity_key=bound.identity_key, rotation_exponent=bound.rotation_exponent,
        provisioned_at=0.0,
    ))

    running = await start_daemon(state_dir, host="room")
    line = await running.console.wait_for("state waiting_for_sign_in")
    assert "organisation=Contoso" in line and "beaconing=no" in line
    assert running.console.count("advertising on") == 0

    login = await owner.typed(aw.LoginCode, aw.LoginCodeGet, device_id=device.id)
    assert await running.console.wait_for("login-code") == f"login-code {login.code}"
    assert running.daemon.status(0.0)["login_code"] == login.code

    resource = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=tenant.id,
                                 name="Aurora room")
    await owner.typed(aw.DeviceInfo, aw.DeviceSignIn, device_id=device.id,
                      user_id=resource.id, code=login.code)
    await running.console.wait_for("state signed_in")
    await running.console.wait_for("advertising on")
    await wait_until(lambda: running.daemon.status(0.0)["eid"] is not None)
    assert running.daemon.status(0.0)["login_code"] is None

    await owner.typed(aw.DeviceInfo, aw.DeviceSignOut, device_id=device.id)
    await running.console.wait_for("advertising off")
    assert running.daemon.status(0.0)["eid"] is None
    await owner.close()
