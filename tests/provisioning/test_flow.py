"""Provisioning and sign-in over real websockets: the whole flow and each way it can fail."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from relay.domain.verification import ThrottlePolicy
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink, endpoint_url, give_back_credential, provision
from relay.protocol.eid import eid_at
from relay.protocol.link import RelayLink, RequestFailed
from tests.provisioning.conftest import FakeDevice, Relay, provisioned

CSV = (
    "MAC address,Location\n"
    "00:1B:44:11:3A:B7,Building 1 / Floor 2 / Aurora\n"
    "00-1b-44-11-3a-b8,Building 1 / Floor 3 / Borealis\n"
)


async def laptop(relay: Relay, owner: AdminLink, tenant_id: str, name: str) -> RelayLink:
    user = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=tenant_id, name=name)
    issued = await owner.typed(aw.CredentialIssued, aw.CredentialIssue, user_id=user.id)
    return await RelayLink.connect(relay.url, issued.token, laptop_id=f"{name}-laptop")


async def test_csv_to_signed_in_device_that_a_colleague_resolves(relay: Relay) -> None:
    owner = await relay.admin()
    admin = await relay.admin(relay.contoso.admin_token)
    imported = await admin.typed(aw.ImportResult, aw.DeviceImport, csv=CSV, kind="room_system")
    assert [d.mac for d in imported.added] == ["00:1B:44:11:3A:B7", "00:1B:44:11:3A:B8"]
    assert {d.state for d in imported.added} == {"waiting_for_activation"}
    room = imported.added[0]

    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=room.id)
    assert len(code.code) == 6 and code.code.isdigit()
    assert code.expires_at == relay.clock() + 24 * 3600
    bound = await provision(relay.url, "00:1b:44:11:3a:b7", code.code)
    assert bound.device_id == room.id and bound.organisation == "Contoso"
    listed = await admin.typed(aw.Devices, aw.DeviceList, state="waiting_for_sign_in")
    assert [d.id for d in listed.devices] == [room.id]

    device = await FakeDevice().connect(relay.url, bound.credential)
    try:
        first = await device.next_state()
        assert first.state == "waiting_for_sign_in" and first.organisation == "Contoso"
        assert not first.beaconing
        login = await admin.typed(aw.LoginCode, aw.LoginCodeGet, device_id=room.id)
        assert login.code == device.code
        resource = await owner.typed(
            aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name="Aurora room"
        )
        signed = await admin.typed(
            aw.DeviceInfo,
            aw.DeviceSignIn,
            device_id=room.id,
            user_id=resource.id,
            code=login.code.replace("-", " ").lower(),
        )
        assert signed.state == "signed_in" and signed.mode == "meeting_room"
        state = await device.next_state()
        assert state.state == "signed_in" and state.user_name == "Aurora room" and state.beaconing
    finally:
        await device.close()

    eid = eid_at(bytes.fromhex(bound.identity_key), relay.clock(), bound.rotation_exponent)
    colleague = await laptop(relay, owner, relay.contoso.id, "alice")
    outsider = await laptop(relay, owner, relay.fabrikam.id, "mallory")
    try:
        seen = await colleague.report_sightings([(eid, -60)])
        assert [d.device_id for d in seen.devices] == [room.id]
        assert seen.devices[0].location == "Building 1 / Floor 2 / Aurora"
        assert (await outsider.report_sightings([(eid, -60)])).devices == []
    finally:
        await colleague.close()
        await outsider.close()

    audit = await admin.typed(aw.AuditEntries, aw.AuditList)
    actions = [(e.action, e.outcome) for e in audit.entries]
    for expected in (
        "device.import",
        "code.create",
        "device.provision",
        "login_code.get",
        "device.sign_in",
    ):
        assert (expected, "ok") in actions
    signin = next(e for e in audit.entries if e.action == "device.sign_in")
    assert signin.actor.startswith("Contoso devices") and signin.detail["code"] == "<redacted>"


async def test_malformed_csv_imports_nothing_and_names_each_bad_line(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    bad = CSV + "not-a-mac,Lobby\n00:1B:44:11:3A:B7,again\n"
    with pytest.raises(RequestFailed) as refused:
        await admin.call(aw.DeviceImport, csv=bad, kind="room_system")
    assert refused.value.code is wire.ErrorCode.INVALID_REQUEST
    assert "line 4" in refused.value.message and "line 5" in refused.value.message
    assert (await admin.typed(aw.Devices, aw.DeviceList)).devices == []

    partial = await admin.typed(
        aw.ImportResult, aw.DeviceImport, csv=bad, kind="room_system", skip_bad_rows=True
    )
    assert len(partial.added) == 2 and [e.line for e in partial.errors] == [4, 5]
    with pytest.raises(RequestFailed, match="first row must name the columns"):
        await admin.call(aw.DeviceImport, csv="00:1B:44:11:3A:B9,x\n")
    # Without a kind for the file, a row without one is a bad row: no silent desk phones.
    with pytest.raises(RequestFailed, match="line 2: no kind"):
        await admin.call(aw.DeviceImport, csv="MAC address,Location\n00:1B:44:11:3A:C0,Hall\n")


async def test_duplicate_and_malformed_macs_are_refused(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    other = await relay.admin(relay.fabrikam.admin_token)
    await admin.call(aw.DeviceAdd, mac="00:1B:44:11:3A:B7", location="desk")
    with pytest.raises(RequestFailed, match="already listed"):
        await admin.call(aw.DeviceAdd, mac="001b.4411.3ab7")
    # Another tenant's list is its own business: the same MAC may be listed there.
    listed = await other.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1b:44:11:3a:b7")
    assert listed.tenant_id == relay.fabrikam.id
    with pytest.raises(RequestFailed, match="not a MAC address"):
        await admin.call(aw.DeviceAdd, mac="00:1B:44:11:3A")
    with pytest.raises(RequestFailed, match="broadcast"):
        await admin.call(aw.DeviceAdd, mac="ff:ff:ff:ff:ff:ff")


async def test_expired_code_is_refused_and_a_new_one_works(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7")
    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    relay.clock.advance(24 * 3600)
    with pytest.raises(RequestFailed) as refused:
        await provision(relay.url, "00:1B:44:11:3A:B7", code.code)
    assert refused.value.code is wire.ErrorCode.EXPIRED
    fresh = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    assert (await provision(relay.url, "00:1B:44:11:3A:B7", fresh.code)).device_id == device.id


async def test_code_is_single_use_and_a_new_code_voids_the_old(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7")
    old = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    new = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    if old.code != new.code:
        with pytest.raises(RequestFailed) as voided:
            await provision(relay.url, "00:1B:44:11:3A:B7", old.code)
        assert voided.value.code is wire.ErrorCode.NOT_FOUND
    await provision(relay.url, "00:1B:44:11:3A:B7", new.code)
    with pytest.raises(RequestFailed) as reused:
        await provision(relay.url, "00:1B:44:11:3A:B7", new.code)
    assert reused.value.code is wire.ErrorCode.WRONG_STATE
    with pytest.raises(RequestFailed, match="waiting for sign-in"):
        await admin.call(aw.CodeCreate, device_id=device.id)


async def provision_from(url: str, source: str, mac: str, code: str) -> aw.ProvisionResult:
    """Provision as the beacon does, from another loopback address (another source)."""
    async with connect(
        endpoint_url(url, aw.PROVISION_PATH),
        subprotocols=[Subprotocol(aw.PROVISION_SUBPROTOCOL)],
        local_addr=(source, 0),
    ) as conn:
        await conn.send(aw.Provision(id=1, mac=mac, code=code).model_dump_json())
        reply = wire.SERVER_MESSAGE_ADAPTER.validate_json(await conn.recv())
    if isinstance(reply, wire.Error):
        raise RequestFailed(reply.code, reply.message)
    assert isinstance(reply, wire.Result)
    return aw.ProvisionResult.model_validate(reply.result)


async def test_wrong_codes_refuse_the_guesser_not_the_device_and_alert_the_admin(
    relay: Relay,
) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7")
    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    wrong = f"{(int(code.code) + 1) % 1_000_000:06d}"
    limit = ThrottlePolicy().max_failures
    unknown_mac: list[str] = []
    for _ in range(limit):
        with pytest.raises(RequestFailed) as refused:
            await provision(relay.url, "00:1B:44:11:3A:B7", wrong)
        unknown_mac.append(str(refused.value))
    # The guesser is now refused even with the right code, with the same answer as an
    # unknown MAC address or a wrong code: nothing tells a listed MAC or a lock-out apart.
    with pytest.raises(RequestFailed) as refused_guesser:
        await provision(relay.url, "00:1B:44:11:3A:B7", code.code)
    with pytest.raises(RequestFailed) as unlisted:
        await provision(relay.url, "02:00:00:00:00:01", wrong)
    assert {str(refused_guesser.value), str(unlisted.value), *unknown_mac} == {
        "not_found: wrong code, or no such device waiting for activation"
    }
    listed = (await admin.typed(aw.Devices, aw.DeviceList)).devices[0]
    assert listed.locked_out_until == relay.clock() + ThrottlePolicy().lockout_s
    assert listed.lockout_reason is not None
    assert "5 wrong verification codes from 127.0.0.1" in listed.lockout_reason
    audit = await admin.typed(aw.AuditEntries, aw.AuditList)
    assert any(e.action == "device.guessing" and e.target == device.id for e in audit.entries)
    # The real device, elsewhere, is not locked out by the stranger.
    bound = await provision_from(relay.url, "127.0.0.2", "00:1B:44:11:3A:B7", code.code)
    assert bound.device_id == device.id


async def test_guess_counters_survive_a_relay_restart(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac="00:1B:44:11:3A:B7")
    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    wrong = f"{(int(code.code) + 1) % 1_000_000:06d}"
    for _ in range(ThrottlePolicy().max_failures):
        with pytest.raises(RequestFailed):
            await provision(relay.url, "00:1B:44:11:3A:B7", wrong)
    await relay.restart()
    with pytest.raises(RequestFailed, match="wrong code"):
        await provision(relay.url, "00:1B:44:11:3A:B7", code.code)


async def test_one_source_cannot_sweep_many_devices(relay: Relay) -> None:
    burst = ThrottlePolicy().source_per_minute
    outcomes = []
    for n in range(burst + 1):
        with pytest.raises(RequestFailed) as refused:
            await provision(relay.url, f"02:00:00:00:{n // 256:02x}:{n % 256:02x}", "123456")
        outcomes.append(refused.value.code)
    assert outcomes[:burst] == [wire.ErrorCode.NOT_FOUND] * burst
    assert outcomes[burst] is wire.ErrorCode.RATE_LIMITED


async def test_another_tenants_device_is_not_found(relay: Relay) -> None:
    contoso = await relay.admin(relay.contoso.admin_token)
    fabrikam = await relay.admin(relay.fabrikam.admin_token)
    device, _ = await provisioned(relay, contoso, "00:1B:44:11:3A:B7")
    for request, fields in (
        (aw.CodeCreate, {"device_id": device.id}),
        (aw.LoginCodeGet, {"device_id": device.id}),
        (aw.DeviceSignIn, {"device_id": device.id, "user_id": "u_x", "code": "ABCD-EFGH"}),
        (aw.DeviceRemove, {"device_id": device.id}),
        (aw.DeviceList, {"tenant_id": relay.contoso.id}),
    ):
        with pytest.raises(RequestFailed) as refused:
            await fabrikam.call(request, **fields)
        assert refused.value.code is wire.ErrorCode.NOT_FOUND, request
    assert (await fabrikam.typed(aw.Devices, aw.DeviceList)).devices == []


async def test_login_code_is_single_use_and_expires(relay: Relay) -> None:
    owner = await relay.admin()
    admin = await relay.admin(relay.contoso.admin_token)
    device, bound = await provisioned(relay, admin, "00:1B:44:11:3A:B7")
    user = await owner.typed(aw.UserInfo, aw.UserCreate, tenant_id=relay.contoso.id, name="bo")
    phone = await FakeDevice().connect(relay.url, bound.credential)
    try:
        with pytest.raises(RequestFailed, match="login code first"):
            await admin.call(aw.DeviceSignIn, device_id=device.id, user_id=user.id, code=phone.code)
        login = await admin.typed(aw.LoginCode, aw.LoginCodeGet, device_id=device.id)
        relay.clock.advance(15 * 60)
        with pytest.raises(RequestFailed) as expired:
            await admin.call(aw.DeviceSignIn, device_id=device.id, user_id=user.id, code=login.code)
        assert expired.value.code is wire.ErrorCode.EXPIRED
        login = await admin.typed(aw.LoginCode, aw.LoginCodeGet, device_id=device.id)
        with pytest.raises(RequestFailed, match="wrong login code"):
            await admin.call(
                aw.DeviceSignIn, device_id=device.id, user_id=user.id, code="ZZZZ-ZZZZ"
            )
        await admin.call(aw.DeviceSignIn, device_id=device.id, user_id=user.id, code=login.code)
        await admin.call(aw.DeviceSignOut, device_id=device.id)
        states = [(await phone.next_state()) for _ in range(3)]
        assert [s.state for s in states] == [
            "waiting_for_sign_in",
            "signed_in",
            "waiting_for_sign_in",
        ]
        assert states[1].user_name == "bo" and states[2].user_name is None
        with pytest.raises(RequestFailed, match="already used"):
            await admin.call(aw.DeviceSignIn, device_id=device.id, user_id=user.id, code=login.code)
    finally:
        await phone.close()
    with pytest.raises(RequestFailed) as offline:
        await admin.call(aw.LoginCodeGet, device_id=device.id)
    assert offline.value.code is wire.ErrorCode.DEVICE_OFFLINE


async def test_reset_device_must_be_provisioned_again(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    device, bound = await provisioned(relay, admin, "00:1B:44:11:3A:B7")
    await give_back_credential(relay.url, bound.credential)
    with pytest.raises(Exception, match="401"):
        await RelayLink.connect(relay.url, bound.credential)
    listed = (await admin.typed(aw.Devices, aw.DeviceList)).devices[0]
    assert listed.state == "waiting_for_activation"
    with pytest.raises(RequestFailed):
        await give_back_credential(relay.url, bound.credential)
    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    again = await provision(relay.url, "00:1B:44:11:3A:B7", code.code)
    assert again.identity_key != bound.identity_key and again.credential != bound.credential
    await (await RelayLink.connect(relay.url, again.credential)).close()


async def test_a_csv_larger_than_a_device_message_imports_in_one_request(relay: Relay) -> None:
    admin = await relay.admin(relay.contoso.admin_token)
    rows = "".join(f"02:00:00:00:{n >> 8:02X}:{n & 0xFF:02X},Floor {n % 40}\n" for n in range(3000))
    csv = "MAC address,Location\n" + rows
    assert len(csv) > relay.server.settings.max_message_bytes
    imported = await admin.typed(aw.ImportResult, aw.DeviceImport, csv=csv, kind="desk_phone")
    assert len(imported.added) == 3000 and imported.errors == []
