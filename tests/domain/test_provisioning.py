"""The anonymous caller of ``/provision`` and a device's way to an account: every refusal of
provisioning, factory reset, login codes and sign-in, and the guessing it throttles."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from relay.domain.credentials import hash_token
from relay.domain.model import Device
from relay.domain.provisioning import WRONG, Provisioning
from relay.domain.store import StoreConflict
from relay.domain.verification import IssuedCode, ThrottlePolicy
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.wire import ErrorCode
from tests.domain.conftest import Domain, World, build_domain, build_world, refused

MAC = "00:1B:44:11:3A:B7"
SOURCE = "198.51.100.7"


async def _listed(
    domain: Domain, world: World, mac: str = MAC, kind: str = "desk_phone"
) -> tuple[Device, str]:
    """A device the Contoso administrator listed, and its verification code."""
    info = await domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=1, mac=mac, kind=kind))  # type: ignore[arg-type]
    assert isinstance(info.result, aw.DeviceInfo)
    code = await domain.admin_send(
        world.contoso_admin, aw.CodeCreate(id=2, device_id=info.result.id)
    )
    assert isinstance(code.result, aw.VerificationCode)
    device = await domain.store.device(info.result.id)
    assert device is not None
    return device, code.result.code


async def test_the_right_code_binds_the_device_and_issues_its_credential(
    domain: Domain, world: World
) -> None:
    device, code = await _listed(domain, world)
    bound = await domain.provisioning.provision(
        MAC.lower().replace(":", "-"), code, SOURCE, domain.now
    )
    assert bound.device.state == "waiting_for_sign_in" and bound.tenant == world.contoso
    assert (
        bound.identity_key == bytes(range(16)) and bound.device.identity_key == bound.identity_key
    )
    credential = await domain.store.credential_by_hash(hash_token(bound.token))
    assert credential is not None and credential.id == bound.credential_id
    assert (credential.subject_kind, credential.subject_id, credential.tenant_id) == (
        "device",
        device.id,
        world.contoso.id,
    )
    entry = domain.store.audit_[-1]
    assert (entry.actor, entry.action, entry.target, entry.outcome, entry.detail) == (
        f"device ({SOURCE})",
        "device.provision",
        device.id,
        "ok",
        {"mac": MAC},
    )
    # The device connects with it, and resolves nothing until signed in.
    principal = await domain.service.authenticate(bound.token, None, None, domain.now)
    assert principal is not None and principal.tenant_id == world.contoso.id


async def test_the_code_is_single_use(domain: Domain, world: World) -> None:
    _, code = await _listed(domain, world)
    await domain.provisioning.provision(MAC, code, SOURCE, domain.now)
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "this verification code was already used; ask the administrator for a new one",
    )


async def test_a_device_no_longer_waiting_for_activation_is_not_provisioned(
    domain: Domain, world: World
) -> None:
    device, code = await _listed(domain, world)
    await domain.store.sign_in_device(device.id, None, "waiting_for_sign_in")  # by hand
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert error.code is ErrorCode.WRONG_STATE


async def test_an_expired_code_is_expired(domain: Domain, world: World) -> None:
    _, code = await _listed(domain, world)
    domain.clock.advance(24 * 3600)
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.EXPIRED,
        "this verification code has expired; ask the administrator for a new one",
    )


@pytest.mark.parametrize(("mac", "code"), [("00:1B:44:11:3A:B8", "right"), (MAC, "000000")])
async def test_an_unknown_mac_and_a_wrong_code_get_the_same_answer(
    domain: Domain, world: World, mac: str, code: str
) -> None:
    _, right = await _listed(domain, world)
    typed = right if code == "right" else ("111111" if right == "000000" else code)
    error = await refused(domain.provisioning.provision(mac, typed, SOURCE, domain.now))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, WRONG)


async def test_a_listed_device_without_a_code_is_not_provisioned(
    domain: Domain, world: World
) -> None:
    await domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=1, mac=MAC))
    error = await refused(domain.provisioning.provision(MAC, "123456", SOURCE, domain.now))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, WRONG)


@pytest.mark.parametrize(
    ("mac", "message"),
    [
        ("not a mac", "'not a mac' is not a MAC address (expected e.g. 00:1B:44:11:3A:B7)"),
        (
            "FF:FF:FF:FF:FF:FF",
            "'FF:FF:FF:FF:FF:FF' is not a device address (all zeros or broadcast)",
        ),
    ],
)
async def test_a_malformed_mac_is_invalid(
    domain: Domain, world: World, mac: str, message: str
) -> None:
    error = await refused(domain.provisioning.provision(mac, "123456", SOURCE, domain.now))
    assert (error.code, error.message) == (ErrorCode.INVALID_REQUEST, message)


@pytest.mark.parametrize("code", ["12345", "1234567", "12a456", "١٢٣٤٥٦", "123X456"])
async def test_a_code_that_is_not_six_digits_is_invalid(
    domain: Domain, world: World, code: str
) -> None:
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.INVALID_REQUEST,
        "a verification code is 6 digits",
    )


async def test_a_code_typed_with_spaces_and_dashes_is_accepted(
    domain: Domain, world: World
) -> None:
    _, code = await _listed(domain, world)
    await domain.provisioning.provision(MAC, f"{code[:3]} - {code[3:]}", SOURCE, domain.now)


async def test_one_source_is_limited_to_twenty_attempts_a_minute(
    domain: Domain, world: World
) -> None:
    _device, code = await _listed(domain, world)
    for n in range(20):
        error = await refused(
            domain.provisioning.provision(
                f"02:00:00:00:00:{n + 1:02X}", "123456", SOURCE, domain.now
            )
        )
        assert error.code is ErrorCode.NOT_FOUND  # answered; the 21st attempt is the limit
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.RATE_LIMITED,
        "too many attempts from this address; wait",
    )
    # Another source is not limited, and a minute later this one is not either.
    await domain.provisioning.provision(MAC, code, "203.0.113.9", domain.now)
    domain.clock.advance(60)
    error = await refused(domain.provisioning.reset("nope", SOURCE, domain.now))
    assert error.code is ErrorCode.NOT_FOUND


async def test_a_guessing_source_is_refused_for_that_device_and_the_administrators_alerted(
    domain: Domain, world: World
) -> None:
    device, code = await _listed(domain, world)
    wrong = "111111" if code != "111111" else "222222"
    for _ in range(4):
        await refused(domain.provisioning.provision(MAC, wrong, SOURCE, domain.now))
    assert await domain.provisioning.alert(device.id, domain.now) is None
    await refused(domain.provisioning.provision(MAC, wrong, SOURCE, domain.now))
    alert = await domain.provisioning.alert(device.id, domain.now)
    assert alert is not None and alert.until == domain.now + 900
    assert alert.reason == (
        f"5 wrong verification codes from {SOURCE}; that source is refused for this device for a while"
    )
    entry = domain.store.audit_[-1]
    assert (entry.actor, entry.tenant_id, entry.action, entry.target, entry.outcome) == (
        f"relay ({SOURCE})",
        world.contoso.id,
        "device.guessing",
        device.id,
        "alert",
    )
    # The right code from the guesser: the same answer as a wrong one.
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, WRONG)
    # The real device, from another address, is not locked out.
    bound = await domain.provisioning.provision(MAC, code, "203.0.113.9", domain.now)
    assert bound.device.id == device.id
    # Provisioning clears the alert.
    assert await domain.provisioning.alert(device.id, domain.now) is None


async def test_a_guesser_is_refused_until_the_lockout_ends(domain: Domain, world: World) -> None:
    _, code = await _listed(domain, world)
    wrong = "111111" if code != "111111" else "222222"
    for _ in range(5):
        await refused(domain.provisioning.provision(MAC, wrong, SOURCE, domain.now))
    domain.clock.advance(899)
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert error.message == WRONG
    domain.clock.advance(1)
    await domain.provisioning.provision(MAC, code, SOURCE, domain.now)


async def test_a_device_swept_from_many_sources_has_its_code_voided() -> None:
    domain = await build_domain(
        throttle=ThrottlePolicy(
            max_failures=5, lockout_s=900, source_per_minute=1000, device_failures_per_day=7
        )
    )
    try:
        world = await build_world(domain)
        device, code = await _listed(domain, world)
        wrong = "111111" if code != "111111" else "222222"
        for n in range(6):
            await refused(domain.provisioning.provision(MAC, wrong, f"10.0.0.{n}", domain.now))
        assert await domain.provisioning.alert(device.id, domain.now) is None
        await refused(domain.provisioning.provision(MAC, wrong, "10.0.0.99", domain.now))
        alert = await domain.provisioning.alert(device.id, domain.now)
        assert alert is not None and alert.until == domain.now + 86_400
        assert alert.reason.startswith("7 wrong verification codes in a day")
        assert domain.store.audit_[-1].action == "device.code_voided"
        error = await refused(domain.provisioning.provision(MAC, code, "10.0.1.1", domain.now))
        assert (error.code, error.message) == (ErrorCode.NOT_FOUND, WRONG)
        # A new code from the administrator works.
        fresh = await domain.admin_send(
            world.contoso_admin, aw.CodeCreate(id=3, device_id=device.id)
        )
        assert isinstance(fresh.result, aw.VerificationCode)
        assert await domain.provisioning.alert(device.id, domain.now) is None
        await domain.provisioning.provision(MAC, fresh.result.code, "10.0.1.1", domain.now)
    finally:
        await domain.directory.close()


async def test_wrong_codes_for_a_device_already_provisioned_count_nothing(
    domain: Domain, world: World
) -> None:
    device, code = await _listed(domain, world)
    await domain.provisioning.provision(MAC, code, SOURCE, domain.now)
    for _ in range(6):
        await refused(domain.provisioning.provision(MAC, "000001", "10.9.9.9", domain.now))
    assert await domain.provisioning.alert(device.id, domain.now) is None


async def test_the_same_mac_in_two_tenants_is_told_apart_by_the_code(
    domain: Domain, world: World
) -> None:
    ours, our_code = await _listed(domain, world)
    theirs = await domain.admin_send(world.fabrikam_admin, aw.DeviceAdd(id=1, mac=MAC))
    assert isinstance(theirs.result, aw.DeviceInfo)
    their_code = await domain.admin_send(
        world.fabrikam_admin, aw.CodeCreate(id=2, device_id=theirs.result.id)
    )
    assert isinstance(their_code.result, aw.VerificationCode)
    bound = await domain.provisioning.provision(MAC, their_code.result.code, SOURCE, domain.now)
    assert bound.device.id == theirs.result.id and bound.tenant == world.fabrikam
    bound = await domain.provisioning.provision(MAC, our_code, SOURCE, domain.now)
    assert bound.device.id == ours.id


async def test_a_code_used_meanwhile_on_another_node_is_wrong_state(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, code = await _listed(domain, world)

    async def raced(*args: object) -> None:
        raise StoreConflict("the verification code was used or replaced meanwhile")

    monkeypatch.setattr(domain.store, "provision_device", raced)
    error = await refused(domain.provisioning.provision(MAC, code, SOURCE, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "this verification code was already used; ask the administrator for a new one",
    )


async def test_a_verification_code_is_only_for_a_device_waiting_for_activation(
    domain: Domain, world: World
) -> None:
    error = await refused(
        domain.admin_send(world.contoso_admin, aw.CodeCreate(id=1, device_id=world.room.id))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"device {world.room.id} is signed in; only a device waiting for activation gets a "
        "verification code",
    )


# --- factory reset -------------------------------------------------------------------------------
async def test_a_reset_revokes_the_credential_and_waits_for_activation(
    domain: Domain, world: World
) -> None:
    reset = await domain.provisioning.reset(world.alice.phone_credential.token, SOURCE, domain.now)
    assert reset.state == "waiting_for_activation" and reset.user_id is None
    assert (
        await domain.service.authenticate(
            world.alice.phone_credential.token, None, None, domain.now
        )
        is None
    )
    entry = domain.store.audit_[-1]
    assert (entry.action, entry.target, entry.tenant_id) == (
        "device.reset",
        world.alice.phone.id,
        world.contoso.id,
    )


async def test_a_reset_forgets_the_login_code_the_device_showed(
    domain: Domain, world: World
) -> None:
    await domain.admin.sign_out_device(world.alice.phone.id)
    phone = await domain.phone(world.alice)
    device = await domain.store.device(world.alice.phone.id)
    assert device is not None
    request_id, _ = await domain.provisioning.ask_login_code(device, domain.now)
    await domain.send(phone, wire.LoginCodeReport(id=1, request_id=request_id, code="ABCD-EFGH"))
    await domain.provisioning.reset(world.alice.phone_credential.token, SOURCE, domain.now)
    assert await domain.provisioning.shown_login_code(world.alice.phone.id, domain.now) is None


@pytest.mark.parametrize("credential", ["unknown", "a user's", "revoked"])
async def test_a_reset_needs_a_live_device_credential(
    domain: Domain, world: World, credential: str
) -> None:
    if credential == "unknown":
        token = "t_" + "f" * 40
    elif credential == "a user's":
        token = world.alice.credential.token
    else:
        token = world.alice.phone_credential.token
        await domain.admin.revoke_credential(world.alice.phone_credential.credential_id)
    error = await refused(domain.provisioning.reset(token, SOURCE, domain.now))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "unknown device credential")
    phone = await domain.store.device(world.alice.phone.id)
    assert phone is not None and phone.state == "signed_in"
    user = await domain.store.user(world.alice.user.id)
    assert user is not None


async def test_a_reset_of_a_device_whose_record_is_gone_is_not_found(
    domain: Domain, world: World
) -> None:
    domain.store.devices_.pop(world.room.id)  # by hand: the credential row outlived the device
    error = await refused(
        domain.provisioning.reset(world.credentials[world.room.id].token, SOURCE, domain.now)
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "unknown device credential")


async def test_resets_count_against_the_source_limit(domain: Domain, world: World) -> None:
    for _ in range(20):
        await refused(domain.provisioning.reset("nope", SOURCE, domain.now))
    error = await refused(
        domain.provisioning.reset(world.alice.phone_credential.token, SOURCE, domain.now)
    )
    assert error.code is ErrorCode.RATE_LIMITED


# --- login codes and sign-in -----------------------------------------------------------------------
async def _showing(domain: Domain, world: World, code: str = "ABCD-EFGH") -> Device:
    """Alice's phone signed out, connected, and showing a login code it reported."""
    await domain.admin.sign_out_device(world.alice.phone.id)
    phone = await domain.phone(world.alice)
    device = await domain.store.device(world.alice.phone.id)
    assert device is not None
    request_id, _ = await domain.provisioning.ask_login_code(device, domain.now)
    await domain.send(phone, wire.LoginCodeReport(id=1, request_id=request_id, code=code))
    return device


async def test_asking_a_device_not_waiting_for_sign_in_for_a_login_code_is_wrong_state(
    domain: Domain, world: World
) -> None:
    error = await refused(domain.provisioning.ask_login_code(world.room, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"device {world.room.id} is signed in, not waiting for sign-in",
    )


async def test_asking_an_offline_device_for_a_login_code_is_refused(
    domain: Domain, world: World
) -> None:
    await domain.admin.sign_out_device(world.alice.phone.id)
    device = await domain.store.device(world.alice.phone.id)
    assert device is not None
    error = await refused(domain.provisioning.ask_login_code(device, domain.now))
    assert (error.code, error.message) == (
        ErrorCode.DEVICE_OFFLINE,
        f"device {device.id} is not connected",
    )


async def test_a_device_that_never_reports_its_login_code_times_out() -> None:
    domain = await build_domain()
    domain.provisioning._login_code_wait_s = 0.2
    try:
        world = await build_world(domain)
        await domain.admin.sign_out_device(world.alice.phone.id)
        await domain.phone(world.alice)
        device = await domain.store.device(world.alice.phone.id)
        assert device is not None
        request_id, _ = await domain.provisioning.ask_login_code(device, domain.now)
        error = await refused(domain.provisioning.wait_login_code(request_id, domain.clock))
        assert (error.code, error.message) == (
            ErrorCode.DEVICE_OFFLINE,
            "the device did not report its login code in time",
        )
        assert await domain.ephemeral.get(f"login-req:{request_id}", domain.now) is None
    finally:
        await domain.directory.close()


async def test_the_right_login_code_signs_the_account_in(domain: Domain, world: World) -> None:
    device = await _showing(domain, world)
    signed_in = await domain.provisioning.sign_in(
        device, world.bob.user.id, "abcd-efgh", None, domain.now
    )
    assert (signed_in.state, signed_in.user_id, signed_in.mode) == (
        "signed_in",
        world.bob.user.id,
        "personal",
    )
    error = await refused(
        domain.provisioning.sign_in(device, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    )
    assert error.code is ErrorCode.WRONG_STATE


async def test_a_sign_in_may_choose_the_mode(domain: Domain, world: World) -> None:
    device = await _showing(domain, world)
    signed_in = await domain.provisioning.sign_in(
        device, world.bob.user.id, "ABCDEFGH", "common_area", domain.now
    )
    assert signed_in.mode == "common_area"


@pytest.mark.parametrize("user", ["another tenant's", "unknown"])
async def test_a_device_cannot_be_signed_in_to_another_tenants_or_no_user(
    domain: Domain, world: World, user: str
) -> None:
    device = await _showing(domain, world)
    user_id = world.carol.user.id if user == "another tenant's" else "u_nobody"
    error = await refused(
        domain.provisioning.sign_in(device, user_id, "ABCD-EFGH", None, domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"no user {user_id!r} in the device's tenant",
    )
    still = await domain.store.device(device.id)
    assert still is not None and still.user_id is None


async def test_signing_in_a_device_not_waiting_for_sign_in_is_wrong_state(
    domain: Domain, world: World
) -> None:
    error = await refused(
        domain.provisioning.sign_in(world.room, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"device {world.room.id} is signed in, not waiting for sign-in",
    )


async def test_signing_in_before_the_device_reported_a_code_is_wrong_state(
    domain: Domain, world: World
) -> None:
    device = await domain.admin.sign_out_device(world.alice.phone.id)
    error = await refused(
        domain.provisioning.sign_in(device, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "ask the relay for the device's login code first",
    )


async def test_a_wrong_login_code_is_refused_and_counted(domain: Domain, world: World) -> None:
    device = await _showing(domain, world)
    for _ in range(5):
        error = await refused(
            domain.provisioning.sign_in(
                device, world.bob.user.id, "WXYZ-WXYZ", None, domain.now, by="admin a_1"
            )
        )
        assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "wrong login code")
    alert = await domain.provisioning.alert(device.id, domain.now)
    assert alert is not None and "5 wrong login codes from admin a_1" in alert.reason
    # That administrator is now refused even with the right code; another is not.
    error = await refused(
        domain.provisioning.sign_in(
            device, world.bob.user.id, "ABCD-EFGH", None, domain.now, by="admin a_1"
        )
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "wrong login code")
    await domain.provisioning.sign_in(
        device, world.bob.user.id, "ABCD-EFGH", None, domain.now, by="admin a_2"
    )
    assert await domain.provisioning.alert(device.id, domain.now) is None


async def test_an_expired_login_code_is_expired(domain: Domain, world: World) -> None:
    device = await _showing(domain, world)
    domain.clock.advance(900)
    error = await refused(
        domain.provisioning.sign_in(device, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.EXPIRED,
        "the login code has expired; ask for a new one",
    )


async def test_a_used_login_code_is_wrong_state(domain: Domain, world: World) -> None:
    device = await _showing(domain, world)
    await domain.provisioning.sign_in(device, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    waiting = await domain.provisioning.sign_out(await domain.store.device(device.id), domain.now)  # type: ignore[arg-type]
    error = await refused(
        domain.provisioning.sign_in(waiting, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "this login code was already used",
    )


async def test_a_login_code_used_meanwhile_on_another_node_is_wrong_state(
    domain: Domain, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await _showing(domain, world)

    async def lost(key: str, expected: str, value: str, ttl: float, now: float) -> bool:
        return False

    monkeypatch.setattr(domain.ephemeral, "replace", lost)
    error = await refused(
        domain.provisioning.sign_in(device, world.bob.user.id, "ABCD-EFGH", None, domain.now)
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "this login code was already used",
    )
    still = await domain.store.device(device.id)
    assert still is not None and still.state == "waiting_for_sign_in"


async def test_what_a_device_is_told_about_its_state(domain: Domain, world: World) -> None:
    state = await domain.provisioning.device_state(world.alice.phone.id, domain.now)
    assert state == wire.DeviceStateEvent(
        state="signed_in",
        organisation="Contoso",
        user_name="alice",
        beaconing=True,
        auto_confirm=False,
    )
    # A console does not beacon; a device waiting for sign-in does not either.
    console = await domain.provisioning.device_state(world.console.id, domain.now)
    assert console is not None and not console.beaconing and console.user_name is None
    await domain.admin.sign_out_device(world.bob.phone.id)
    waiting = await domain.provisioning.device_state(world.bob.phone.id, domain.now)
    assert waiting is not None and not waiting.beaconing and waiting.state == "waiting_for_sign_in"
    assert await domain.provisioning.device_state("d_gone", domain.now) is None


async def test_a_policy_without_beaconing_silences_its_devices(
    domain: Domain, world: World
) -> None:
    quiet = await domain.admin.create_policy(world.contoso.id, "Quiet", beaconing=False)
    await domain.store.update_policy(quiet, auto_confirm=True)
    await domain.admin.set_user_policy(world.alice.user.id, quiet.id)
    state = await domain.provisioning.device_state(world.alice.phone.id, domain.now)
    assert state is not None and not state.beaconing and state.auto_confirm
    # A device's own policy comes before its account's.
    await domain.admin.set_device_policy(world.alice.phone.id, world.prompt.id)
    state = await domain.provisioning.device_state(world.alice.phone.id, domain.now)
    assert state is not None and state.beaconing and not state.auto_confirm


async def test_state_is_delivered_to_connected_devices_only(domain: Domain, world: World) -> None:
    domain.online(world.room)
    out = await domain.provisioning.state_deliveries(
        [world.room.id, world.prompt_room.id, "d_gone"], domain.now
    )
    assert [(d.address, d.event.type) for d in out] == [(f"device/{world.room.id}", "device.state")]
    domain.online(replace(world.room, id="d_gone"))
    out = await domain.provisioning.state_deliveries(["d_gone"], domain.now)
    assert out == []


async def test_waiting_for_a_login_code_gives_up_when_the_request_is_gone(
    domain: Domain, world: World
) -> None:
    await domain.admin.sign_out_device(world.alice.phone.id)
    await domain.phone(world.alice)
    device = await domain.store.device(world.alice.phone.id)
    assert device is not None
    request_id, _ = await domain.provisioning.ask_login_code(device, domain.now)
    await domain.ephemeral.delete(f"login-req:{request_id}", domain.now)
    started = asyncio.get_running_loop().time()
    error = await refused(domain.provisioning.wait_login_code(request_id, domain.clock))
    assert error.code is ErrorCode.DEVICE_OFFLINE
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_wrong_login_codes_never_void_the_verification_code() -> None:
    domain = await build_domain(
        throttle=ThrottlePolicy(
            max_failures=50, lockout_s=900, source_per_minute=1000, device_failures_per_day=3
        )
    )
    try:
        world = await build_world(domain)
        device = await _showing(domain, world)
        await domain.store.set_verification_code(
            device.id, IssuedCode("kept", domain.now, domain.now + 60)
        )
        for n in range(4):
            await refused(
                domain.provisioning.sign_in(
                    device, world.bob.user.id, "WXYZ-WXYZ", None, domain.now, by=f"admin a_{n}"
                )
            )
        code = await domain.store.verification_code(device.id)
        assert code is not None and code.code_hash == "kept"
        assert await domain.provisioning.alert(device.id, domain.now) is None
    finally:
        await domain.directory.close()


async def test_a_users_credential_cannot_reset_a_device_even_with_the_same_id(
    domain: Domain, world: World
) -> None:
    # By hand: a device whose id is alice's user id.
    twin = replace(world.room, id=world.alice.user.id, mac=None)
    domain.store.devices_[twin.id] = twin
    error = await refused(
        domain.provisioning.reset(world.alice.credential.token, SOURCE, domain.now)
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "unknown device credential")
    assert domain.store.devices_[twin.id].state == "signed_in"


async def test_the_device_list_shows_a_guessing_alert(domain: Domain, world: World) -> None:
    device, code = await _listed(domain, world)
    wrong = "111111" if code != "111111" else "222222"
    for _ in range(5):
        await refused(domain.provisioning.provision(MAC, wrong, SOURCE, domain.now))
    listed = (await domain.admin_send(world.contoso_admin, aw.DeviceList(id=9, limit=100))).result
    assert isinstance(listed, aw.Devices)
    info = next(d for d in listed.devices if d.id == device.id)
    assert info.locked_out_until == domain.now + 900
    assert info.lockout_reason is not None and info.lockout_reason.startswith(
        "5 wrong verification"
    )


async def test_verification_codes_come_from_the_system_random_source_by_default(
    domain: Domain, world: World
) -> None:
    provisioning = Provisioning(
        domain.store, domain.directory, domain.router, domain.ephemeral, domain.guesses
    )
    device = await domain.admin.create_device(
        world.contoso.id, "new", "desk_phone", "personal", state="waiting_for_activation"
    )
    code, expires_at = await provisioning.issue_verification_code(device, domain.now)
    assert len(code) == 6 and code.isdigit() and expires_at == domain.now + 24 * 3600
