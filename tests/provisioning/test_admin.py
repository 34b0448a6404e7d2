"""Administrator roles, the audit log, policies that reach live devices, and consoles."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink
from relay.protocol.link import RelayLink, RequestFailed
from tests.provisioning.conftest import FakeDevice, Relay, provisioned


async def signed_in_device(
    relay: Relay, mac: str, kind: str = "room_system", name: str = "Aurora"
) -> tuple[aw.DeviceInfo, FakeDevice]:
    owner = await relay.admin()
    admin = await relay.admin(relay.contoso.admin_token)
    device, bound = await provisioned(relay, admin, mac, kind=kind)
    account = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name=name)
    fake = await FakeDevice().connect(relay.url, bound.credential)
    login = await admin.typed(aw.LoginCode, aw.LoginCodeGet, device_id=device.id)
    await admin.call(aw.DeviceSignIn, device_id=device.id, user_id=account.id, code=login.code)
    assert [s.state for s in (await fake.next_state(), await fake.next_state())] == [
        "waiting_for_sign_in",
        "signed_in",
    ]
    # The account changed, so the relay closed the connection (4002) and the device
    # connected again: its welcome repeats where it stands now.
    assert (await fake.next_state()).state == "signed_in"
    return device, fake


async def test_device_admin_manages_devices_but_not_tenants_admins_or_accounts(
    relay: Relay,
) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    me = await admin.typed(aw.AdminInfo, aw.WhoAmI)
    assert me.role == "device_admin" and me.tenant_id == relay.contoso.id
    for request, fields in (
        (aw.TenantCreate, {"name": "Evil"}),
        (aw.AdminCreate, {"name": "Me too", "role": "owner"}),
        (aw.AdminCreate, {"name": "Helper", "role": "device_admin"}),
        (aw.UserCreate, {"name": "eve"}),
        (aw.CredentialIssue, {"user_id": "u_1"}),
    ):
        with pytest.raises(RequestFailed) as refused:
            await admin.call(request, **fields)
        assert refused.value.code is wire.ErrorCode.FORBIDDEN, request
    tenants = await admin.typed(aw.Tenants, aw.TenantList)
    assert [t.name for t in tenants.tenants] == ["Contoso"]
    policy = await admin.typed(aw.PolicyInfo, aw.PolicyCreate, name="Rooms")
    assert policy.tenant_id == relay.contoso.id

    owner = await relay.admin()
    with pytest.raises(RequestFailed, match="must name the tenant"):
        await owner.call(aw.DeviceList)
    assert len((await owner.typed(aw.Tenants, aw.TenantList)).tenants) == 2


async def test_every_admin_action_is_audited_with_who_what_when_and_refusals(
    relay: Relay,
) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    me = await admin.typed(aw.AdminInfo, aw.WhoAmI)
    relay.clock.advance(60)
    await admin.call(aw.DeviceAdd, mac="00:1B:44:11:3A:B7", location="desk")
    with pytest.raises(RequestFailed):
        await admin.call(aw.TenantCreate, name="Evil")
    entries = (await admin.typed(aw.AuditEntries, aw.AuditList)).entries
    added = next(e for e in entries if e.action == "device.add")
    assert added.actor == f"Contoso devices (device_admin {me.admin_id})"
    assert added.at == relay.clock() and added.outcome == "ok"
    assert added.detail["mac"] == "00:1B:44:11:3A:B7"
    refused = next(e for e in entries if e.action == "tenant.create")
    assert refused.outcome == "forbidden"
    fabrikam = await relay.admin(relay.fabrikam.admin_token)
    theirs = (await fabrikam.typed(aw.AuditEntries, aw.AuditList)).entries
    assert all(e.tenant_id == relay.fabrikam.id for e in theirs)
    assert not any(e.action == "device.add" for e in theirs)


async def test_revoked_or_unknown_admin_credentials_are_refused_at_the_handshake(
    relay: Relay,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await AdminLink.connect(relay.url, "btg_not-a-token")
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus):  # a device or user credential is no admin credential
        await AdminLink.connect(relay.url, relay.owner_token + "x")


async def test_policy_changes_reach_a_connected_device_without_a_restart(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device, fake = await signed_in_device(relay, "00:1B:44:11:3A:B7")
    try:
        quiet = await admin.typed(
            aw.PolicyInfo, aw.PolicyCreate, name="Quiet", beaconing=False, proximity_join="off"
        )
        await admin.call(
            aw.PolicyAssign, subject_kind="device", subject_id=device.id, policy_id=quiet.id
        )
        state = await fake.next_state()
        assert state.state == "signed_in" and not state.beaconing and not state.auto_confirm
        await admin.call(aw.PolicyUpdate, policy_id=quiet.id, beaconing=True, auto_confirm=True)
        state = await fake.next_state()
        assert state.beaconing and state.auto_confirm
        shown = await admin.typed(aw.Policies, aw.PolicyList)
        assert [
            (p.name, p.beaconing, p.auto_confirm, p.proximity_join) for p in shown.policies
        ] == [("Quiet", True, True, "off")]
        await admin.call(
            aw.PolicyAssign, subject_kind="device", subject_id=device.id, policy_id=None
        )
        state = await fake.next_state()
        assert state.beaconing and not state.auto_confirm  # the global default
    finally:
        await fake.close()


async def test_a_console_commands_only_its_paired_room_through_the_relay(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    room, room_device = await signed_in_device(relay, "00:1B:44:11:3A:B7", name="Aurora")
    _, other_device = await signed_in_device(relay, "00:1B:44:11:3A:B8", name="Borealis")
    console, console_device = await signed_in_device(relay, "00:1B:44:11:3A:B9", name="Panel")
    assert console_device.link is not None and room_device.link is not None
    try:
        with pytest.raises(RequestFailed) as unpaired:
            await console_device.link.call(wire.ConsoleJoin, meeting_id="m-1")
        assert unpaired.value.code is wire.ErrorCode.FORBIDDEN
        pairing = await admin.typed(
            aw.ConsoleInfo, aw.ConsolePair, console_id=console.id, room_id=room.id
        )
        assert pairing.room_name == room.name
        assert not (await console_device.next_state()).beaconing  # a console does not beacon
        listed = await admin.typed(aw.Consoles, aw.ConsoleList)
        assert [(c.console_id, c.room_id) for c in listed.consoles] == [(console.id, room.id)]

        result = await console_device.link.call(wire.ConsoleJoin, meeting_id="m-1")
        assert result.outcome == "accepted"
        command = await asyncio.wait_for(room_device.events.get(), 5)
        assert isinstance(command, wire.JoinCommand) and command.meeting_id == "m-1"
        assert other_device.events.empty()

        with pytest.raises(RequestFailed, match="itself a console"):
            await admin.call(aw.ConsolePair, console_id=room.id, room_id=console.id)
        await admin.call(aw.ConsoleUnpair, console_id=console.id)
        with pytest.raises(RequestFailed):
            await console_device.link.call(wire.ConsoleJoin, meeting_id="m-2")
    finally:
        for fake in (room_device, other_device, console_device):
            await fake.close()


async def test_removed_device_loses_its_credential(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device, fake = await signed_in_device(relay, "00:1B:44:11:3A:B7")
    assert fake.link is not None
    link = fake.link
    await admin.call(aw.DeviceRemove, device_id=device.id)
    code, _ = await asyncio.wait_for(link.closed, 1.0)
    assert code == wire.CloseCode.REVOKED
    await fake.close()
    assert (await admin.typed(aw.Devices, aw.DeviceList)).devices == []
    with pytest.raises(InvalidStatus):
        await RelayLink.connect(relay.url, fake.credential)
    again = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7")
    assert again.state == "waiting_for_activation"
