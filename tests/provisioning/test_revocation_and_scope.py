"""Administrators over the real ``/admin`` endpoint: revocation ends live sessions at once,
each tenant's audit log keeps to itself, lists page, refusals speak plainly, and the
unauthenticated ``/provision`` endpoint keeps each connection short."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from relay.admin.store_admin import Admin
from relay.domain.credentials import hash_token
from relay.domain.model import Device
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink, endpoint_url
from relay.protocol.eid import DEFAULT_ROTATION_EXPONENT
from relay.protocol.link import RelayLink, RequestFailed
from relay.storage.sqlite_store import InsecureDatabase, SqliteStore
from tests.provisioning.conftest import Relay, provisioned


async def _laptop(relay: Relay, owner: AdminLink, name: str) -> tuple[aw.CredentialIssued, RelayLink]:
    user = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name=name)
    issued = await owner.typed(aw.CredentialIssued, aw.CredentialIssue, user_id=user.id)
    return issued, await RelayLink.connect(relay.url, issued.token, laptop_id=f"{name}-1")


async def test_revoking_a_laptop_credential_closes_its_connection_within_a_second(
    relay: Relay,
) -> None:
    owner = await relay.admin()
    issued, laptop = await _laptop(relay, owner, "alice")
    began = time.monotonic()
    await owner.call(aw.CredentialRevoke, credential_id=issued.credential_id)
    code, _ = await asyncio.wait_for(laptop.closed, 1.0)
    assert code == wire.CloseCode.REVOKED and time.monotonic() - began < 1.0
    with pytest.raises(InvalidStatus):
        await RelayLink.connect(relay.url, issued.token, laptop_id="alice-1")
    listed = await owner.typed(aw.Credentials, aw.CredentialList, tenant_id=relay.contoso.id)
    assert [(c.credential_id, c.revoked_at is not None) for c in listed.credentials] == [
        (issued.credential_id, True)
    ]


async def test_revoking_a_device_credential_closes_the_device_within_a_second(
    relay: Relay,
) -> None:
    owner = await relay.admin()
    admin = await relay.admin(relay.contoso.admin_token)
    _, bound = await provisioned(relay, admin, "00:1B:44:11:3A:B7")
    device = await RelayLink.connect(relay.url, bound.credential)
    credential = await relay.store.credential_by_hash(hash_token(bound.credential))
    assert credential is not None
    await owner.call(aw.CredentialRevoke, credential_id=credential.id)
    code, _ = await asyncio.wait_for(device.closed, 1.0)
    assert code == wire.CloseCode.REVOKED


async def test_an_administrators_credential_is_listed_and_its_revocation_closes_its_session(
    relay: Relay,
) -> None:
    owner = await relay.admin()
    helper = await relay.admin(relay.contoso.admin_token)
    assert (await helper.typed(aw.AdminInfo, aw.WhoAmI)).role == "device_admin"
    admins = await owner.typed(aw.Admins, aw.AdminList)
    contoso_admin = next(
        a for a in admins.admins if a.admin.tenant_id == relay.contoso.id
    )
    (credential,) = contoso_admin.credentials
    assert credential.id.startswith("ac_") and credential.revoked_at is None
    await owner.call(aw.CredentialRevoke, credential_id=credential.id)
    with pytest.raises((ConnectionClosed, RequestFailed, TimeoutError)):
        for _ in range(20):
            await helper.typed(aw.AdminInfo, aw.WhoAmI)
            await asyncio.sleep(0.05)
    assert helper.conn.close_code == wire.CloseCode.REVOKED
    with pytest.raises(InvalidStatus):
        await AdminLink.connect(relay.url, relay.contoso.admin_token)
    again = await owner.typed(aw.Admins, aw.AdminList)
    listed = next(a for a in again.admins if a.admin.admin_id == contoso_admin.admin.admin_id)
    assert listed.credentials[0].revoked_at is not None
    # A device administrator cannot list administrators.
    other = await relay.admin(relay.fabrikam.admin_token)
    with pytest.raises(RequestFailed) as refused:
        await other.call(aw.AdminList)
    assert refused.value.code is wire.ErrorCode.FORBIDDEN


async def test_a_refusal_naming_another_tenants_device_is_audited_only_in_ones_own_tenant(
    relay: Relay,
) -> None:
    contoso = await relay.admin(relay.contoso.admin_token)
    fabrikam = await relay.admin(relay.fabrikam.admin_token)
    theirs = await contoso.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7")
    for device_id in (theirs.id, "d_0000000000000000"):
        with pytest.raises(RequestFailed) as refused:
            await fabrikam.call(aw.CodeCreate, device_id=device_id)
        assert refused.value.code is wire.ErrorCode.NOT_FOUND
    contoso_log = await contoso.typed(aw.AuditEntries, aw.AuditList)
    assert not any(e.action == "code.create" for e in contoso_log.entries)
    fabrikam_log = await fabrikam.typed(aw.AuditEntries, aw.AuditList)
    refusals = [e for e in fabrikam_log.entries if e.action == "code.create"]
    # Both refusals are in the actor's own log and look alike apart from the id named.
    assert [e.outcome for e in refusals] == ["not_found", "not_found"]
    assert {e.tenant_id for e in refusals} == {relay.fabrikam.id}


async def test_a_refused_write_says_what_is_wrong_without_the_databases_words(
    relay: Relay,
) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    await admin.call(aw.PolicyCreate, name="Quiet")
    with pytest.raises(RequestFailed) as refused:
        await admin.call(aw.PolicyCreate, name="Quiet")
    message = str(refused.value)
    assert "already exists" in message
    assert "constraint" not in message.lower() and "policies." not in message


async def test_the_device_list_pages_past_thirty_thousand_devices(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    devices = [
        Device(
            id=f"d_{n:016x}",
            tenant_id=relay.contoso.id,
            name=f"phone {n}",
            kind="desk_phone",
            mode="personal",
            identity_key=n.to_bytes(16, "big"),
            rotation_exponent=DEFAULT_ROTATION_EXPONENT,
            mac=f"02:00:00:{n >> 16 & 0xFF:02X}:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}",
            state="waiting_for_activation",
        )
        for n in range(30_500)
    ]
    await relay.store.add_devices(devices)
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await admin.typed(aw.Devices, aw.DeviceList, after=after, limit=5000)
        seen += [d.id for d in page.devices]
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert len(seen) == len(set(seen)) == 30_500 and pages == 7
    assert seen == sorted(seen)


async def test_a_provisioning_connection_carries_one_request(relay: Relay) -> None:
    async with connect(
        endpoint_url(relay.url, aw.PROVISION_PATH),
        subprotocols=[Subprotocol(aw.PROVISION_SUBPROTOCOL)],
    ) as conn:
        await conn.send(aw.Provision(id=1, mac="02:00:00:00:00:01", code="123456").model_dump_json())
        reply = wire.SERVER_MESSAGE_ADAPTER.validate_json(await conn.recv())
        assert isinstance(reply, wire.Error) and reply.code is wire.ErrorCode.NOT_FOUND
        with pytest.raises(ConnectionClosed):
            await conn.recv()
        assert conn.close_code == wire.CloseCode.IDLE


async def test_the_database_is_owner_only_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "relay.sqlite3"
    store = SqliteStore(db)
    await store.open()
    await Admin(store).create_tenant("T")
    await store.close()
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    os.chmod(db, 0o644)
    with pytest.raises(InsecureDatabase, match=f"chmod 600 {db}"):
        await SqliteStore(db).open()
