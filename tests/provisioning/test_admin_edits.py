"""Renaming and deleting over the /admin endpoint: who may, what goes with a deletion, what
refuses it, and that the relay acts on it at once (credentials stop working, devices are
told)."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink
from relay.protocol.link import RelayLink, RequestFailed
from tests.provisioning.conftest import Relay, provisioned
from tests.provisioning.test_admin import signed_in_device


async def _refused(link: AdminLink, code: wire.ErrorCode, request: type, **fields: object) -> str:
    with pytest.raises(RequestFailed) as refused:
        await link.call(request, **fields)
    assert refused.value.code is code, refused.value.message
    return refused.value.message


async def test_account_renames_and_deletions_are_for_owners_and_names_stay_unique(
    relay: Relay,
) -> None:
    owner = await relay.admin()
    device_admin = await relay.admin(relay.contoso.admin_token)
    alex = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name="Alex")
    sam = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name="Sam")
    for request, fields in ((aw.UserRename, {"name": "X"}), (aw.UserDelete, {})):
        await _refused(device_admin, wire.ErrorCode.FORBIDDEN, request, user_id=alex.id, **fields)
    await _refused(
        device_admin,
        wire.ErrorCode.FORBIDDEN,
        aw.TenantRename,
        tenant_id=relay.contoso.id,
        name="X",
    )
    message = await _refused(
        owner, wire.ErrorCode.WRONG_STATE, aw.UserCreate, tenant_id=relay.contoso.id, name=" alex "
    )
    assert "exists already" in message and alex.id in message
    await _refused(owner, wire.ErrorCode.WRONG_STATE, aw.UserRename, user_id=sam.id, name="ALEX")
    # The same name in another tenant is another account.
    await owner.call(aw.UserCreate, tenant_id=relay.fabrikam.id, name="Alex")
    renamed = await owner.typed(aw.UserInfo, aw.UserRename, user_id=alex.id, name="Alex Doe")
    assert renamed.name == "Alex Doe"

    issued = await owner.typed(aw.CredentialIssued, aw.CredentialIssue, user_id=alex.id)
    laptop = await RelayLink.connect(relay.url, issued.token, laptop_id="alex-laptop")
    await laptop.close()
    removed = await owner.typed(aw.Removed, aw.UserDelete, user_id=alex.id)
    assert removed.removed == alex.id
    with pytest.raises(InvalidStatus) as refused:
        await RelayLink.connect(relay.url, issued.token, laptop_id="alex-laptop")
    assert refused.value.response.status_code == 401
    users = (await owner.typed(aw.Users, aw.UserList, tenant_id=relay.contoso.id)).users
    assert [u.name for u in users] == ["Sam"]
    entries = (await owner.typed(aw.AuditEntries, aw.AuditList)).entries
    assert [e.action for e in entries if e.outcome == "ok"][-2:] == [
        "credential.issue",
        "user.delete",
    ]


async def test_an_account_a_device_is_signed_in_as_is_not_deleted(relay: Relay) -> None:
    device, fake = await signed_in_device(relay, "00:1B:44:11:3A:B7", name="Aurora room")
    owner = await relay.admin()
    users = (await owner.typed(aw.Users, aw.UserList, tenant_id=relay.contoso.id)).users
    message = await _refused(owner, wire.ErrorCode.WRONG_STATE, aw.UserDelete, user_id=users[0].id)
    assert device.id in message and "sign them out first" in message
    # Renaming the account: the device shows the new name at once.
    await owner.call(aw.UserRename, user_id=users[0].id, name="Aurora")
    state = await fake.next_state()
    assert state.state == "signed_in" and state.user_name == "Aurora"
    await fake.close()


async def test_devices_and_policies_are_renamed_within_the_tenant(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    other = await relay.admin(relay.fabrikam.admin_token)
    device = await admin.typed(
        aw.DeviceInfo,
        aw.DeviceAdd,
        mac="00:1B:44:11:3A:B7",
        location="Building 1 / Floor 2 / Aurora",
        kind="room_system",
    )
    renamed = await admin.typed(
        aw.DeviceInfo, aw.DeviceRename, device_id=device.id, name="Aurora", location="B1 F2"
    )
    assert (renamed.name, renamed.location, renamed.mac) == ("Aurora", "B1 F2", device.mac)
    kept = await admin.typed(aw.DeviceInfo, aw.DeviceRename, device_id=device.id, name="A")
    assert kept.location == "B1 F2"
    await _refused(
        other, wire.ErrorCode.NOT_FOUND, aw.DeviceRename, device_id=device.id, name="Mine"
    )
    quiet = await admin.typed(aw.PolicyInfo, aw.PolicyCreate, name="Quiet")
    await admin.call(aw.PolicyCreate, name="Loud")
    await _refused(
        admin, wire.ErrorCode.WRONG_STATE, aw.PolicyRename, policy_id=quiet.id, name="loud"
    )
    await _refused(other, wire.ErrorCode.NOT_FOUND, aw.PolicyDelete, policy_id=quiet.id)
    assert (
        await admin.typed(aw.PolicyInfo, aw.PolicyRename, policy_id=quiet.id, name="Hush")
    ).name == "Hush"


async def test_deleting_a_policy_puts_its_devices_back_on_the_default_and_tells_them(
    relay: Relay,
) -> None:
    device, fake = await signed_in_device(relay, "00:1B:44:11:3A:B7")
    admin = await relay.admin(relay.contoso.admin_token)
    silent = await admin.typed(aw.PolicyInfo, aw.PolicyCreate, name="Silent", beaconing=False)
    await admin.call(
        aw.PolicyAssign, subject_kind="device", subject_id=device.id, policy_id=silent.id
    )
    assert (await fake.next_state()).beaconing is False
    await admin.call(aw.PolicyDelete, policy_id=silent.id)
    assert (await fake.next_state()).beaconing is True
    devices = (await admin.typed(aw.Devices, aw.DeviceList)).devices
    assert devices[0].policy_id is None
    assert (await admin.typed(aw.Policies, aw.PolicyList)).policies == []
    await fake.close()


async def test_only_an_empty_tenant_is_deleted_and_its_administrators_go_with_it(
    relay: Relay,
) -> None:
    owner = await relay.admin()
    device_admin = await relay.admin(relay.fabrikam.admin_token)
    await device_admin.typed(
        aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7", kind="desk_phone"
    )
    message = await _refused(
        owner, wire.ErrorCode.WRONG_STATE, aw.TenantDelete, tenant_id=relay.fabrikam.id
    )
    assert "0 account(s) and 1 device(s)" in message
    devices = (await device_admin.typed(aw.Devices, aw.DeviceList)).devices
    await device_admin.call(aw.DeviceRemove, device_id=devices[0].id)
    await device_admin.call(aw.PolicyCreate, name="Fabrikam default", default=True)
    removed = await owner.typed(aw.Removed, aw.TenantDelete, tenant_id=relay.fabrikam.id)
    assert removed.removed == relay.fabrikam.id
    tenants = (await owner.typed(aw.Tenants, aw.TenantList)).tenants
    assert [t.name for t in tenants] == ["Contoso"]
    with pytest.raises(InvalidStatus) as refused:
        await AdminLink.connect(relay.url, relay.fabrikam.admin_token)
    assert refused.value.response.status_code == 401


async def test_a_device_can_be_provisioned_under_its_new_name(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device, _ = await provisioned(relay, admin, "00:1B:44:11:3A:B7", kind="room_system")
    await admin.call(aw.DeviceRename, device_id=device.id, name="Borealis")
    listed = (await admin.typed(aw.Devices, aw.DeviceList)).devices
    assert [(d.name, d.state) for d in listed] == [("Borealis", "waiting_for_sign_in")]
