"""What owners and device administrators may do: the role check, tenant scope on every id
named, every refusal of the admin requests (renames and deletions too), and the audit log."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from relay.admin.service import AdminOutcome
from relay.domain.model import AdminRecord, ConsolePairing
from relay.domain.sessions import SessionEnd
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.wire import CloseCode, ErrorCode
from tests.domain.conftest import Domain, World, account_request_types, events, refused

OWNER_ONLY: list[aw.AdminRequest] = [
    aw.TenantCreate(id=1, name="T"),
    aw.TenantRename(id=1, tenant_id="t_1", name="T"),
    aw.TenantDelete(id=1, tenant_id="t_1"),
    aw.AdminCreate(id=1, name="A", role="owner"),
    aw.UserCreate(id=1, name="U"),
    aw.UserRename(id=1, user_id="u_1", name="U"),
    aw.UserDelete(id=1, user_id="u_1"),
    aw.CredentialIssue(id=1, user_id="u_1"),
    aw.CredentialRevoke(id=1, credential_id="c_1"),
    aw.AdminList(id=1),
]


def test_every_owner_only_request_is_checked_here() -> None:
    # The rest (passwords, set-up links, single sign-on, e-mail addresses) are handled
    # outside the admin service; their role check is the same one, tested below.
    assert {r.type for r in OWNER_ONLY} == aw.OWNER_ONLY_REQUESTS - set(account_request_types())


def _minimal(kind: type[aw.AdminRequest]) -> aw.AdminRequest:
    """A valid request of this type with made-up values (the role check comes first)."""
    import typing

    from pydantic import SecretStr

    values: dict[str, Any] = {"id": 1}
    for name, info in kind.model_fields.items():
        if name in values or name == "type" or not info.is_required():
            continue
        annotation = info.annotation
        origin = typing.get_origin(annotation)
        if origin is typing.Literal:
            values[name] = typing.get_args(annotation)[0]
        elif annotation is SecretStr:
            values[name] = "correct horse battery staple"
        elif annotation is bool:
            values[name] = False
        elif annotation is int:
            values[name] = 1
        elif origin is list:
            values[name] = []
        else:
            values[name] = "x1.example.test"
    return kind.model_validate(values)


OWNER_ONLY_ELSEWHERE = [
    k
    for k in aw.ADMIN_REQUESTS
    if k.model_fields["type"].default in aw.OWNER_ONLY_REQUESTS
    and k.model_fields["type"].default in account_request_types()
]


@pytest.mark.parametrize("kind", OWNER_ONLY_ELSEWHERE, ids=lambda k: k.model_fields["type"].default)
async def test_a_device_administrator_may_not_send_an_owners_account_request(
    domain: Domain, world: World, kind: type[aw.AdminRequest]
) -> None:
    request = _minimal(kind)
    error = await refused(domain.admin_send(world.contoso_admin, request))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        f"{request.type} needs the owner role; you are a device admin",
    )


@pytest.mark.parametrize("request_", OWNER_ONLY, ids=lambda r: r.type)
async def test_a_device_administrator_may_not_send_an_owners_request(
    domain: Domain, world: World, request_: aw.AdminRequest
) -> None:
    error = await refused(domain.admin_send(world.contoso_admin, request_))
    assert (error.code, error.message) == (
        ErrorCode.FORBIDDEN,
        f"{request_.type} needs the owner role; you are a device admin",
    )
    entry = domain.store.audit_[-1]
    assert (entry.action, entry.outcome, entry.tenant_id) == (
        request_.type,
        "forbidden",
        world.contoso.id,
    )


async def test_the_owner_creates_tenants_administrators_accounts_and_credentials(
    domain: Domain, world: World
) -> None:
    tenant = (await domain.admin_send(world.owner, aw.TenantCreate(id=1, name="Northwind"))).result
    assert isinstance(tenant, aw.TenantInfo) and tenant.name == "Northwind"
    created = (
        await domain.admin_send(
            world.owner, aw.AdminCreate(id=2, name="Nina", role="device_admin", tenant_id=tenant.id)
        )
    ).result
    assert isinstance(created, aw.AdminCreated) and created.admin.tenant_id == tenant.id
    nina = await domain.admin_service.authenticate(created.token)
    assert nina is not None and (nina.role, nina.tenant_id) == ("device_admin", tenant.id)
    owner2 = (
        await domain.admin_send(world.owner, aw.AdminCreate(id=3, name="Otto", role="owner"))
    ).result
    assert isinstance(owner2, aw.AdminCreated) and owner2.admin.tenant_id is None
    user = (
        await domain.admin_send(world.owner, aw.UserCreate(id=4, tenant_id=tenant.id, name="Ned"))
    ).result
    assert isinstance(user, aw.UserInfo) and user.tenant_id == tenant.id
    issued = (
        await domain.admin_send(world.owner, aw.CredentialIssue(id=5, user_id=user.id))
    ).result
    assert isinstance(issued, aw.CredentialIssued)
    laptop = await domain.service.authenticate(issued.token, "l-1", None, domain.now)
    assert laptop is not None and laptop.tenant_id == tenant.id


async def test_a_device_administrator_created_for_another_tenant_needs_a_known_tenant(
    domain: Domain, world: World
) -> None:
    error = await refused(
        domain.admin_send(
            world.owner, aw.AdminCreate(id=1, name="N", role="device_admin", tenant_id="t_nowhere")
        )
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no tenant 't_nowhere'")


async def test_whoami_and_the_tenants_a_device_administrator_sees(
    domain: Domain, world: World
) -> None:
    me = (await domain.admin_send(world.contoso_admin, aw.WhoAmI(id=1))).result
    assert me == aw.AdminInfo(
        admin_id="a_contoso", name="Connie", role="device_admin", tenant_id=world.contoso.id
    )
    theirs = (await domain.admin_send(world.contoso_admin, aw.TenantList(id=2))).result
    assert isinstance(theirs, aw.Tenants) and [t.id for t in theirs.tenants] == [world.contoso.id]
    everyone = (await domain.admin_send(world.owner, aw.TenantList(id=3))).result
    assert isinstance(everyone, aw.Tenants)
    assert {t.id for t in everyone.tenants} == {world.contoso.id, world.fabrikam.id}
    # Lists are not audited.
    assert all(e.action not in ("whoami", "tenant.list") for e in domain.store.audit_)


async def test_an_owner_must_name_the_tenant(domain: Domain, world: World) -> None:
    error = await refused(domain.admin_send(world.owner, aw.DeviceList(id=1)))
    assert (error.code, error.message) == (
        ErrorCode.INVALID_REQUEST,
        "an owner must name the tenant",
    )
    error = await refused(
        domain.admin_send(world.owner, aw.DeviceList(id=1, tenant_id="t_nowhere"))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no tenant 't_nowhere'")
    listed = (
        await domain.admin_send(world.owner, aw.DeviceList(id=2, tenant_id=world.fabrikam.id))
    ).result
    assert isinstance(listed, aw.Devices)
    assert {d.id for d in listed.devices} == {world.carol.phone.id, world.fabrikam_room.id}


TENANT_SCOPED: list[type[aw.AdminRequest]] = [
    aw.UserList,
    aw.DeviceList,
    aw.PolicyList,
    aw.ConsoleList,
    aw.PairingList,
    aw.AuditList,
]


@pytest.mark.parametrize("kind", TENANT_SCOPED, ids=lambda k: k.model_fields["type"].default)
async def test_a_device_administrator_naming_another_tenant_is_not_found(
    domain: Domain, world: World, kind: type[aw.AdminRequest]
) -> None:
    error = await refused(
        domain.admin_send(world.contoso_admin, kind(id=1, tenant_id=world.fabrikam.id))
    )  # type: ignore[call-arg]
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no tenant {world.fabrikam.id!r}")
    # Naming its own tenant, or none, is the same.
    await domain.admin_send(world.contoso_admin, kind(id=2, tenant_id=world.contoso.id))  # type: ignore[call-arg]
    await domain.admin_send(world.contoso_admin, kind(id=3))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kind",
    [aw.DeviceAdd, aw.DeviceImport, aw.PolicyCreate],
    ids=lambda k: k.model_fields["type"].default,
)
async def test_a_device_administrator_cannot_add_to_another_tenant(
    domain: Domain, world: World, kind: type[aw.AdminRequest]
) -> None:
    fields: dict[str, Any] = {
        aw.DeviceAdd: {"mac": "02:00:00:00:00:09"},
        aw.DeviceImport: {"csv": "MAC address\n02:00:00:00:00:09\n", "kind": "desk_phone"},
        aw.PolicyCreate: {"name": "P"},
    }[kind]
    error = await refused(
        domain.admin_send(world.contoso_admin, kind(id=1, tenant_id=world.fabrikam.id, **fields))
    )
    assert error.code is ErrorCode.NOT_FOUND
    assert len(await domain.store.devices(world.fabrikam.id)) == 2
    assert len(await domain.store.policy_ids(world.fabrikam.id)) == 0


def _device_requests(device_id: str, world: World) -> list[aw.AdminRequest]:
    return [
        aw.DeviceRemove(id=1, device_id=device_id),
        aw.CodeCreate(id=1, device_id=device_id),
        aw.LoginCodeGet(id=1, device_id=device_id),
        aw.DeviceSignIn(id=1, device_id=device_id, user_id=world.alice.user.id, code="ABCD-EFGH"),
        aw.DeviceSignOut(id=1, device_id=device_id),
        aw.ConsolePair(id=1, console_id=device_id, room_id=world.room.id),
        aw.ConsolePair(id=1, console_id=world.common_phone.id, room_id=device_id),
        aw.ConsoleUnpair(id=1, console_id=device_id),
        aw.PolicyAssign(id=1, subject_kind="device", subject_id=device_id, policy_id=None),
        aw.DeviceRename(id=1, device_id=device_id, name="mine now"),
    ]


@pytest.mark.parametrize("index", range(10))
async def test_a_device_administrator_naming_another_tenants_device_is_not_found(
    domain: Domain, world: World, index: int
) -> None:
    target = world.fabrikam_room
    request = _device_requests(target.id, world)[index]
    error = await refused(domain.admin_send(world.contoso_admin, request))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no device {target.id!r}")
    after = await domain.store.device(target.id)
    assert after == target
    # Refused as if unknown: the same answer for an id that names nothing.
    unknown = _device_requests("d_nothing", world)[index]
    error = await refused(domain.admin_send(world.contoso_admin, unknown))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no device 'd_nothing'")


@pytest.mark.parametrize(
    "request_",
    [
        lambda p: aw.PolicyUpdate(id=1, policy_id=p, allow_better_together="Disabled"),
        lambda p: aw.PolicyRename(id=1, policy_id=p, name="mine now"),
        lambda p: aw.PolicyDelete(id=1, policy_id=p),
    ],
    ids=["update", "rename", "delete"],
)
async def test_a_device_administrator_naming_another_tenants_policy_is_not_found(
    domain: Domain, world: World, request_: Any
) -> None:
    theirs = await domain.admin.create_policy(world.fabrikam.id, "Theirs")
    error = await refused(domain.admin_send(world.contoso_admin, request_(theirs.id)))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no policy {theirs.id!r}")
    assert await domain.store.policy(theirs.id) == theirs


async def test_a_device_administrator_cannot_assign_another_tenants_policy(
    domain: Domain, world: World
) -> None:
    theirs = await domain.admin.create_policy(
        world.fabrikam.id, "Theirs", allow_better_together="Disabled"
    )
    for subject_kind, subject_id in (
        ("user", world.alice.user.id),
        ("device", world.alice.phone.id),
        ("tenant", world.contoso.id),
    ):
        request = aw.PolicyAssign(
            id=1, subject_kind=subject_kind, subject_id=subject_id, policy_id=theirs.id
        )  # type: ignore[arg-type]
        error = await refused(domain.admin_send(world.contoso_admin, request))
        assert (error.code, error.message) == (
            ErrorCode.NOT_FOUND,
            f"no policy {theirs.id!r} in tenant {world.contoso.id!r}",
        )
    user = await domain.store.user(world.alice.user.id)
    assert user is not None and user.policy_id is None


async def test_a_device_administrator_cannot_assign_a_policy_to_another_tenants_user(
    domain: Domain, world: World
) -> None:
    request = aw.PolicyAssign(
        id=1, subject_kind="user", subject_id=world.carol.user.id, policy_id=None
    )
    error = await refused(domain.admin_send(world.contoso_admin, request))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, f"no user {world.carol.user.id!r}")
    error = await refused(
        domain.admin_send(world.contoso_admin, request.model_copy(update={"subject_id": "u_x"}))
    )
    assert error.code is ErrorCode.NOT_FOUND


async def test_assigning_policies_tells_the_tenants_connected_devices(
    domain: Domain, world: World
) -> None:
    domain.online(world.alice.phone, world.carol.phone)
    for subject_kind, subject_id in (
        ("user", world.alice.user.id),
        ("device", world.alice.phone.id),
        ("tenant", world.contoso.id),
    ):
        request = aw.PolicyAssign(
            id=1, subject_kind=subject_kind, subject_id=subject_id, policy_id=world.prompt.id
        )  # type: ignore[arg-type]
        outcome = await domain.admin_send(world.contoso_admin, request)
        assert outcome.result == aw.Assigned(
            subject_kind=subject_kind, subject_id=subject_id, policy_id=world.prompt.id
        )  # type: ignore[arg-type]
        assert events(outcome) == [(f"device/{world.alice.phone.id}", "device.state")]
    assert (await domain.store.tenant(world.contoso.id)).default_policy_id == world.prompt.id  # type: ignore[union-attr]
    assert (await domain.store.device(world.alice.phone.id)).policy_id == world.prompt.id  # type: ignore[union-attr]
    # The owner may assign in any tenant.
    outcome = await domain.admin_send(
        world.owner,
        aw.PolicyAssign(id=2, subject_kind="user", subject_id=world.carol.user.id, policy_id=None),
    )
    assert events(outcome) == [(f"device/{world.carol.phone.id}", "device.state")]


async def test_policies_are_created_updated_and_listed_per_tenant(
    domain: Domain, world: World
) -> None:
    domain.online(world.alice.phone)
    created = await domain.admin_send(
        world.contoso_admin,
        aw.PolicyCreate(
            id=1,
            name="Strict",
            allow_better_together="Disabled",
            proximity_join="prompt",
            beaconing=False,
            auto_confirm=True,
            default=True,
        ),
    )
    info = created.result
    assert isinstance(info, aw.PolicyInfo)
    assert (
        info.tenant_id,
        info.allow_better_together,
        info.proximity_join,
        info.beaconing,
        info.auto_confirm,
        info.is_default,
    ) == (world.contoso.id, "Disabled", "prompt", False, True, True)
    assert events(created) == [(f"device/{world.alice.phone.id}", "device.state")]
    plain = await domain.admin_send(world.contoso_admin, aw.PolicyCreate(id=2, name="Plain"))
    assert isinstance(plain.result, aw.PolicyInfo) and not plain.result.is_default
    assert plain.deliveries == [] and not plain.result.auto_confirm
    updated = await domain.admin_send(
        world.contoso_admin, aw.PolicyUpdate(id=3, policy_id=info.id, beaconing=True)
    )
    assert isinstance(updated.result, aw.PolicyInfo)
    assert (
        updated.result.beaconing,
        updated.result.auto_confirm,
        updated.result.allow_better_together,
    ) == (
        True,
        True,
        "Disabled",
    )
    assert events(updated) == [(f"device/{world.alice.phone.id}", "device.state")]
    cleared = await domain.admin_send(
        world.contoso_admin, aw.PolicyUpdate(id=4, policy_id=info.id, auto_confirm=False)
    )
    assert isinstance(cleared.result, aw.PolicyInfo) and not cleared.result.auto_confirm
    listed = (await domain.admin_send(world.contoso_admin, aw.PolicyList(id=5))).result
    assert isinstance(listed, aw.Policies)
    assert [p.name for p in listed.policies] == [
        "Ask the room",
        "No Better Together",
        "No proximity join",
        "Plain",
        "Strict",
    ]
    assert (
        await domain.admin_send(world.fabrikam_admin, aw.PolicyList(id=6))
    ).result == aw.Policies(policies=[])


async def test_a_store_refusal_is_wrong_state_and_audited(domain: Domain, world: World) -> None:
    await domain.admin_send(world.contoso_admin, aw.PolicyCreate(id=1, name="Twice"))
    error = await refused(
        domain.admin_send(world.contoso_admin, aw.PolicyCreate(id=2, name="Twice"))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "refused: a policy with this name already exists",
    )
    entry = domain.store.audit_[-1]
    assert (entry.action, entry.outcome, entry.tenant_id) == (
        "policy.create",
        "wrong_state",
        world.contoso.id,
    )


async def test_an_admin_api_refusal_is_not_found_and_audited(domain: Domain, world: World) -> None:
    error = await refused(
        domain.admin_send(world.owner, aw.CredentialIssue(id=1, user_id="u_nobody"))
    )
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "no user 'u_nobody'")
    assert domain.store.audit_[-1].outcome == "not_found"


# --- devices -----------------------------------------------------------------------------------
async def test_listing_a_device_by_mac(domain: Domain, world: World) -> None:
    outcome = await domain.admin_send(
        world.contoso_admin,
        aw.DeviceAdd(id=1, mac="00-1b-44-11-3a-b7", location=" Floor 2 ", kind="room_system"),
    )
    info = outcome.result
    assert isinstance(info, aw.DeviceInfo)
    assert (
        info.mac,
        info.location,
        info.name,
        info.kind,
        info.mode,
        info.state,
        info.tenant_id,
    ) == (
        "00:1B:44:11:3A:B7",
        "Floor 2",
        "Floor 2",
        "room_system",
        "meeting_room",
        "waiting_for_activation",
        world.contoso.id,
    )
    stored = await domain.store.device(info.id)
    assert stored is not None and stored.capabilities == ("join",)
    named = await domain.admin_send(
        world.contoso_admin, aw.DeviceAdd(id=2, mac="02:00:00:00:00:01", name="Desk")
    )
    assert isinstance(named.result, aw.DeviceInfo) and named.result.name == "Desk"
    bare = await domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=3, mac="02:00:00:00:00:02"))
    assert isinstance(bare.result, aw.DeviceInfo) and bare.result.name == "02:00:00:00:00:02"


async def test_listing_a_mac_twice_in_a_tenant_is_wrong_state(domain: Domain, world: World) -> None:
    await domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=1, mac="02:00:00:00:00:01"))
    error = await refused(
        domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=2, mac="02:00:00:00:00:01"))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "02:00:00:00:00:01 is already listed in this tenant",
    )
    # Another tenant may list the same MAC: it is not told the first tenant has it.
    await domain.admin_send(world.fabrikam_admin, aw.DeviceAdd(id=3, mac="02:00:00:00:00:01"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mac": "nope"}, "'nope' is not a MAC address (expected e.g. 00:1B:44:11:3A:B7)"),
        (
            {"mac": "02:00:00:00:00:01", "location": "a\x07b"},
            "location contains control characters",
        ),
    ],
)
async def test_a_bad_mac_or_location_is_invalid(
    domain: Domain, world: World, fields: dict[str, str], message: str
) -> None:
    error = await refused(domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=1, **fields)))  # type: ignore[arg-type]
    assert (error.code, error.message) == (ErrorCode.INVALID_REQUEST, message)


async def test_importing_devices_refuses_bad_rows_unless_asked_to_skip_them(
    domain: Domain, world: World
) -> None:
    csv = "MAC address,Name,Kind\n02:00:00:00:00:01,A,desk_phone\nnope,B,desk_phone\n"
    error = await refused(domain.admin_send(world.contoso_admin, aw.DeviceImport(id=1, csv=csv)))
    assert error.code is ErrorCode.INVALID_REQUEST and error.message.startswith(
        "nothing imported: line 3"
    )
    assert len(await domain.store.devices(world.contoso.id)) == 8
    outcome = await domain.admin_send(
        world.contoso_admin, aw.DeviceImport(id=2, csv=csv, skip_bad_rows=True)
    )
    result = outcome.result
    assert isinstance(result, aw.ImportResult)
    assert [d.mac for d in result.added] == ["02:00:00:00:00:01"]
    assert [e.line for e in result.errors] == [3]
    # Nothing to add: nothing written.
    empty = await domain.admin_send(world.contoso_admin, aw.DeviceImport(id=3, csv="MAC address\n"))
    assert empty.result == aw.ImportResult(added=[], errors=[])


async def test_importing_many_bad_rows_lists_twenty_and_counts_the_rest(
    domain: Domain, world: World
) -> None:
    csv = "MAC address,Kind\n" + "".join(f"bad{n},desk_phone\n" for n in range(25))
    error = await refused(domain.admin_send(world.contoso_admin, aw.DeviceImport(id=1, csv=csv)))
    assert error.message.endswith("; and 5 more") and error.message.count("line ") == 20


async def test_removing_a_device_ends_its_pairings_and_its_session(
    domain: Domain, world: World
) -> None:
    laptop, _ = await domain.paired(world.alice)
    await domain.send(laptop, wire.AudioSelect(id=1, phone_id=world.alice.phone.id, meeting_id="m"))
    outcome = await domain.admin_send(
        world.contoso_admin, aw.DeviceRemove(id=2, device_id=world.alice.phone.id)
    )
    laptop_address = f"laptop/{world.alice.user.id}/laptop-1"
    assert outcome.result == aw.Removed(removed=world.alice.phone.id)
    assert events(outcome) == [(laptop_address, "pair.removed"), (laptop_address, "audio.state")]
    assert outcome.ends == [
        SessionEnd(("device", world.alice.phone.id), CloseCode.REVOKED, "the device was removed")
    ]
    assert await domain.store.device(world.alice.phone.id) is None


async def test_signing_a_device_out_ends_its_session_and_tells_its_laptops(
    domain: Domain, world: World
) -> None:
    await domain.paired(world.alice)
    outcome = await domain.admin_send(
        world.contoso_admin, aw.DeviceSignOut(id=1, device_id=world.alice.phone.id)
    )
    info = outcome.result
    assert isinstance(info, aw.DeviceInfo) and (info.state, info.user_id) == (
        "waiting_for_sign_in",
        None,
    )
    assert events(outcome) == [
        (f"laptop/{world.alice.user.id}/laptop-1", "pair.removed"),
        (f"device/{world.alice.phone.id}", "device.state"),
    ]
    assert outcome.ends == [
        SessionEnd(
            ("device", world.alice.phone.id),
            CloseCode.SESSION_CHANGED,
            "the device's account changed; reconnect",
        )
    ]
    error = await refused(
        domain.admin_send(
            world.contoso_admin, aw.DeviceSignOut(id=2, device_id=world.alice.phone.id)
        )
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"device {world.alice.phone.id} is not signed in",
    )


async def test_an_administrator_gets_a_login_code_and_signs_an_account_in(
    domain: Domain, world: World
) -> None:
    await domain.admin.sign_out_device(world.alice.phone.id)
    phone = await domain.phone(world.alice)

    async def device_answers(address: str, message: str) -> None:
        event = wire.SERVER_MESSAGE_ADAPTER.validate_json(message)
        assert isinstance(event, wire.LoginCodeRequest)
        await domain.send(
            phone, wire.LoginCodeReport(id=9, request_id=event.request_id, code="QRST-UVWX")
        )

    domain.router.on_deliver = device_answers
    got = await domain.admin_send(
        world.contoso_admin, aw.LoginCodeGet(id=1, device_id=world.alice.phone.id)
    )
    assert got.result == aw.LoginCode(
        device_id=world.alice.phone.id, code="QRST-UVWX", expires_at=domain.now + 900
    )
    signed = await domain.admin_send(
        world.contoso_admin,
        aw.DeviceSignIn(
            id=2, device_id=world.alice.phone.id, user_id=world.bob.user.id, code="qrstuvwx"
        ),
    )
    assert isinstance(signed.result, aw.DeviceInfo) and signed.result.user_id == world.bob.user.id
    assert signed.ends[0].code == CloseCode.SESSION_CHANGED
    # The code is redacted in the audit log.
    entry = domain.store.audit_[-1]
    assert entry.action == "device.sign_in" and entry.detail["code"] == "<redacted>"


async def test_a_login_code_request_that_cannot_be_delivered_is_device_offline(
    domain: Domain, world: World
) -> None:
    await domain.admin.sign_out_device(world.alice.phone.id)
    await domain.phone(world.alice)

    async def gone(address: str, message: str) -> bool:
        return False

    domain.router.deliver = gone  # type: ignore[method-assign]
    error = await refused(
        domain.admin_send(
            world.contoso_admin, aw.LoginCodeGet(id=1, device_id=world.alice.phone.id)
        )
    )
    assert (error.code, error.message) == (
        ErrorCode.DEVICE_OFFLINE,
        f"device {world.alice.phone.id} is not connected",
    )


async def test_the_device_list_shows_presence_consoles_and_guessing_alerts(
    domain: Domain, world: World
) -> None:
    domain.online(world.room)
    listed = (await domain.admin_send(world.contoso_admin, aw.DeviceList(id=1, limit=5000))).result
    assert isinstance(listed, aw.Devices) and listed.next is None
    by_id = {d.id: d for d in listed.devices}
    assert by_id[world.room.id].online and not by_id[world.prompt_room.id].online
    assert by_id[world.console.id].console_of == world.room.id
    assert by_id[world.room.id].console_of is None and by_id[world.room.id].locked_out_until is None


async def test_lists_page(domain: Domain, world: World) -> None:
    first = (await domain.admin_send(world.contoso_admin, aw.DeviceList(id=1, limit=4))).result
    assert (
        isinstance(first, aw.Devices)
        and len(first.devices) == 4
        and first.next == first.devices[-1].id
    )
    rest = (
        await domain.admin_send(
            world.contoso_admin, aw.DeviceList(id=2, limit=10, after=first.next)
        )
    ).result
    assert isinstance(rest, aw.Devices) and len(rest.devices) == 4 and rest.next is None
    users = (await domain.admin_send(world.contoso_admin, aw.UserList(id=3, limit=2))).result
    assert (
        isinstance(users, aw.Users) and len(users.users) == 2 and users.next == users.users[-1].id
    )
    more = (
        await domain.admin_send(world.contoso_admin, aw.UserList(id=4, limit=2, after=users.next))
    ).result
    assert isinstance(more, aw.Users) and len(more.users) == 1 and more.next is None
    await domain.paired(world.alice)
    await domain.paired(world.bob)
    pairings = (await domain.admin_send(world.contoso_admin, aw.PairingList(id=5, limit=1))).result
    assert isinstance(pairings, aw.Pairings) and len(pairings.pairings) == 1
    first_pairing = sorted(
        [(world.alice.user.id, world.alice.phone.id), (world.bob.user.id, world.bob.phone.id)]
    )[0]
    assert pairings.next == f"{first_pairing[0]}/laptop-1/{first_pairing[1]}"
    assert pairings.pairings[0].phone_name in ("alice's phone", "bob's phone")
    last = (
        await domain.admin_send(
            world.contoso_admin, aw.PairingList(id=6, limit=1, after=pairings.next)
        )
    ).result
    assert isinstance(last, aw.Pairings) and len(last.pairings) == 1 and last.next is None


# --- consoles ------------------------------------------------------------------------------------
async def test_pairing_a_console_with_a_room(domain: Domain, world: World) -> None:
    domain.online(world.common_phone)
    outcome = await domain.admin_send(
        world.contoso_admin,
        aw.ConsolePair(id=1, console_id=world.common_phone.id, room_id=world.prompt_room.id),
    )
    assert outcome.result == aw.ConsoleInfo(
        console_id=world.common_phone.id,
        console_name="Lobby phone",
        room_id=world.prompt_room.id,
        room_name="Boardroom",
        created_at=domain.now,
    )
    assert events(outcome) == [(f"device/{world.common_phone.id}", "device.state")]
    listed = (await domain.admin_send(world.contoso_admin, aw.ConsoleList(id=2))).result
    assert isinstance(listed, aw.Consoles)
    assert {c.console_id for c in listed.consoles} == {world.console.id, world.common_phone.id}
    unpaired = await domain.admin_send(
        world.contoso_admin, aw.ConsoleUnpair(id=3, console_id=world.common_phone.id)
    )
    assert unpaired.result == aw.Removed(removed=world.common_phone.id)
    assert events(unpaired) == [(f"device/{world.common_phone.id}", "device.state")]
    error = await refused(
        domain.admin_send(
            world.contoso_admin, aw.ConsoleUnpair(id=4, console_id=world.common_phone.id)
        )
    )
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"{world.common_phone.id} is not paired with a room",
    )


async def test_the_owner_cannot_pair_a_console_with_another_tenants_room(
    domain: Domain, world: World
) -> None:
    error = await refused(
        domain.admin_send(
            world.owner,
            aw.ConsolePair(id=1, console_id=world.common_phone.id, room_id=world.fabrikam_room.id),
        )
    )
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"no device {world.fabrikam_room.id!r}",
    )


@pytest.mark.parametrize("room", ["a phone", "itself", "a console"])
async def test_a_console_pairs_only_with_a_room_system(
    domain: Domain, world: World, room: str
) -> None:
    if room == "a console":  # a room system that is itself another room's console
        await domain.store.pair_console(
            ConsolePairing(world.prompt_room.id, world.off_room.id, world.contoso.id, 0)
        )
    target = {
        "a phone": world.alice.phone,
        "itself": world.common_phone,
        "a console": world.prompt_room,
    }[room]
    error = await refused(
        domain.admin_send(
            world.contoso_admin,
            aw.ConsolePair(id=1, console_id=world.common_phone.id, room_id=target.id),
        )
    )
    message = (
        f"{target.name!r} is itself a console"
        if room == "a console"
        else f"{target.name!r} is not a room system"
    )
    assert (error.code, error.message) == (ErrorCode.INVALID_REQUEST, message)


async def test_a_phone_in_meeting_room_mode_may_be_a_consoles_room(
    domain: Domain, world: World
) -> None:
    roomish = await domain.admin.create_device(
        world.contoso.id, "Huddle", "conference_phone", "meeting_room"
    )
    await domain.admin_send(
        world.contoso_admin,
        aw.ConsolePair(id=1, console_id=world.common_phone.id, room_id=roomish.id),
    )


# --- credentials -----------------------------------------------------------------------------------
async def test_revoking_a_user_credential_ends_its_sessions(domain: Domain, world: World) -> None:
    credential_id = world.alice.credential.credential_id
    outcome = await domain.admin_send(
        world.owner, aw.CredentialRevoke(id=1, credential_id=credential_id)
    )
    assert outcome.result == aw.Removed(removed=credential_id)
    assert outcome.ends == [
        SessionEnd(("credential", credential_id), CloseCode.REVOKED, "the credential was revoked")
    ]
    error = await refused(
        domain.admin_send(world.owner, aw.CredentialRevoke(id=2, credential_id=credential_id))
    )
    assert (error.code, error.message) == (
        ErrorCode.NOT_FOUND,
        f"no active credential {credential_id!r}",
    )


async def test_revoking_an_administrators_credential(domain: Domain, world: World) -> None:
    outcome = await domain.admin_send(
        world.owner, aw.CredentialRevoke(id=1, credential_id="ac_a_contoso")
    )
    assert outcome.ends == [
        SessionEnd(("credential", "ac_a_contoso"), CloseCode.REVOKED, "the credential was revoked")
    ]
    assert await domain.admin_service.authenticate("x") is None
    assert (
        await domain.store.admin_by_token_hash(__import__("hashlib").sha256(b"c" * 32).digest())
        is None
    )
    for credential_id in ("ac_a_contoso", "ac_nobody"):
        error = await refused(
            domain.admin_send(world.owner, aw.CredentialRevoke(id=2, credential_id=credential_id))
        )
        assert (error.code, error.message) == (
            ErrorCode.NOT_FOUND,
            f"no active credential {credential_id!r}",
        )


async def test_the_owner_lists_administrators_and_their_credentials(
    domain: Domain, world: World
) -> None:
    await domain.admin_send(world.owner, aw.CredentialRevoke(id=1, credential_id="ac_a_fabrikam"))
    listed = (await domain.admin_send(world.owner, aw.AdminList(id=2))).result
    assert isinstance(listed, aw.Admins)
    rows = {a.admin.admin_id: [(c.id, c.revoked_at) for c in a.credentials] for a in listed.admins}
    assert rows == {
        "a_owner": [("ac_a_owner", None)],
        "a_contoso": [("ac_a_contoso", None)],
        "a_fabrikam": [("ac_a_fabrikam", domain.now)],
    }


# --- the audit log ---------------------------------------------------------------------------------
async def test_each_tenants_audit_log_keeps_to_itself(domain: Domain, world: World) -> None:
    await domain.admin_send(world.contoso_admin, aw.DeviceAdd(id=1, mac="02:00:00:00:00:01"))
    await domain.admin_send(world.fabrikam_admin, aw.DeviceAdd(id=2, mac="02:00:00:00:00:02"))
    # A device administrator's refusal naming another tenant's id goes to its own log.
    await refused(
        domain.admin_send(world.fabrikam_admin, aw.CodeCreate(id=3, device_id=world.room.id))
    )
    contoso = (await domain.admin_send(world.contoso_admin, aw.AuditList(id=4))).result
    fabrikam = (await domain.admin_send(world.fabrikam_admin, aw.AuditList(id=5))).result
    assert isinstance(contoso, aw.AuditEntries) and isinstance(fabrikam, aw.AuditEntries)
    assert [(e.action, e.outcome) for e in contoso.entries] == [("device.add", "ok")]
    assert [(e.action, e.outcome, e.target) for e in fabrikam.entries] == [
        ("device.add", "ok", "02:00:00:00:00:02"),
        ("code.create", "not_found", world.room.id),
    ]
    assert contoso.entries[0].actor == "Connie (device_admin a_contoso)"
    everything = (await domain.admin_send(world.owner, aw.AuditList(id=6))).result
    assert isinstance(everything, aw.AuditEntries) and len(everything.entries) == 3
    page = (
        await domain.admin_send(
            world.owner, aw.AuditList(id=7, limit=1, before=everything.entries[-1].seq)
        )
    ).result
    assert isinstance(page, aw.AuditEntries) and [e.action for e in page.entries] == ["device.add"]


@pytest.mark.parametrize(
    "request_",
    [
        lambda w: aw.CodeCreate(id=1, device_id=w.room.id),
        lambda w: aw.ConsoleUnpair(id=1, console_id=w.room.id),
        lambda w: aw.PolicyUpdate(id=1, policy_id=w.prompt.id, beaconing=False),
        lambda w: aw.PolicyAssign(
            id=1, subject_kind="user", subject_id=w.alice.user.id, policy_id=None
        ),
        lambda w: aw.PolicyAssign(
            id=1, subject_kind="device", subject_id=w.room.id, policy_id=None
        ),
        lambda w: aw.PolicyAssign(
            id=1, subject_kind="tenant", subject_id=w.contoso.id, policy_id=None
        ),
        lambda w: aw.UserRename(id=1, user_id=w.alice.user.id, name="Alicia"),
        lambda w: aw.DeviceAdd(id=1, tenant_id=w.contoso.id, mac="02:00:00:00:00:07"),
    ],
    ids=[
        "device",
        "console",
        "policy",
        "assign-user",
        "assign-device",
        "assign-tenant",
        "user",
        "tenant",
    ],
)
async def test_an_owners_action_is_logged_in_the_tenant_of_what_it_names(
    domain: Domain, world: World, request_: Any
) -> None:
    with contextlib.suppress(Exception):
        await domain.admin_send(world.owner, request_(world))
    entry = domain.store.audit_[-1]
    assert entry.tenant_id == world.contoso.id and entry.actor == "Olivia (owner a_owner)"


async def test_an_owners_action_naming_nothing_known_is_logged_without_a_tenant(
    domain: Domain, world: World
) -> None:
    await refused(domain.admin_send(world.owner, aw.CodeCreate(id=1, device_id="d_nothing")))
    await refused(domain.admin_send(world.owner, aw.PolicyDelete(id=2, policy_id="p_nothing")))
    await refused(domain.admin_send(world.owner, aw.UserDelete(id=3, user_id="u_nothing")))
    assert [e.tenant_id for e in domain.store.audit_[-3:]] == [None, None, None]
    assert [e.target for e in domain.store.audit_[-3:]] == ["d_nothing", "p_nothing", "u_nothing"]


# --- renames and deletions -----------------------------------------------------------------------
async def test_account_names_are_unique_in_a_tenant(domain: Domain, world: World) -> None:
    error = await refused(
        domain.admin_send(
            world.owner, aw.UserCreate(id=1, tenant_id=world.contoso.id, name=" ALICE ")
        )
    )
    assert error.code is ErrorCode.WRONG_STATE and f"({world.alice.user.id})" in error.message
    await domain.admin_send(
        world.owner, aw.UserCreate(id=2, tenant_id=world.fabrikam.id, name="alice")
    )
    error = await refused(
        domain.admin_send(world.owner, aw.UserRename(id=3, user_id=world.bob.user.id, name="Alice"))
    )
    assert error.message == (
        f"an account called 'alice' exists already in this tenant ({world.alice.user.id}); pick another name"
    )
    renamed = await domain.admin_send(
        world.owner, aw.UserRename(id=4, user_id=world.alice.user.id, name="Alice")
    )
    assert renamed.result == aw.UserInfo(
        id=world.alice.user.id, tenant_id=world.contoso.id, name="Alice", policy_id=None
    )


async def test_renaming_an_account_tells_the_devices_signed_in_as_it(
    domain: Domain, world: World
) -> None:
    domain.online(world.alice.phone)
    outcome = await domain.admin_send(
        world.owner, aw.UserRename(id=1, user_id=world.alice.user.id, name="Ali")
    )
    assert events(outcome) == [(f"device/{world.alice.phone.id}", "device.state")]
    state = outcome.deliveries[0].event
    assert isinstance(state, wire.DeviceStateEvent) and state.user_name == "Ali"


async def test_an_account_signed_in_on_a_device_cannot_be_deleted(
    domain: Domain, world: World
) -> None:
    error = await refused(
        domain.admin_send(world.owner, aw.UserDelete(id=1, user_id=world.alice.user.id))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"'alice' is signed in on 1 device(s) ({world.alice.phone.id}); sign them out first "
        "(btogether admin devices sign-out DEVICE)",
    )
    await domain.admin_send(world.owner, aw.DeviceSignOut(id=2, device_id=world.alice.phone.id))
    outcome = await domain.admin_send(world.owner, aw.UserDelete(id=3, user_id=world.alice.user.id))
    assert outcome.result == aw.Removed(removed=world.alice.user.id)
    assert (
        await domain.service.authenticate(world.alice.credential.token, "l", None, domain.now)
        is None
    )


async def test_user_edits_refuse_another_tenants_account_even_called_directly(
    domain: Domain, world: World
) -> None:
    """Defence in depth: renames and deletions are for owners, and the handler checks scope
    too, so a device administrator reaching it still finds no such account."""
    for type_, request in (
        ("user.rename", aw.UserRename(id=1, user_id=world.carol.user.id, name="C")),
        ("user.delete", aw.UserDelete(id=1, user_id=world.carol.user.id)),
    ):
        handler = domain.admin_service._handlers[type_]
        error = await refused(handler(world.contoso_admin, request, domain.now))
        assert (error.code, error.message) == (
            ErrorCode.NOT_FOUND,
            f"no user {world.carol.user.id!r}",
        )
    assert await domain.store.user(world.carol.user.id) == world.carol.user


async def test_a_tenant_with_accounts_or_devices_cannot_be_deleted(
    domain: Domain, world: World
) -> None:
    error = await refused(
        domain.admin_send(world.owner, aw.TenantDelete(id=1, tenant_id=world.fabrikam.id))
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        "the tenant still has 1 account(s) and 2 device(s); delete or remove them first",
    )
    empty = (await domain.admin_send(world.owner, aw.TenantCreate(id=2, name="Empty"))).result
    assert isinstance(empty, aw.TenantInfo)
    outcome = await domain.admin_send(world.owner, aw.TenantDelete(id=3, tenant_id=empty.id))
    assert outcome.result == aw.Removed(removed=empty.id)
    assert await domain.store.tenant(empty.id) is None


async def test_renaming_a_tenant_tells_its_connected_devices(domain: Domain, world: World) -> None:
    domain.online(world.room, world.carol.phone)
    outcome = await domain.admin_send(
        world.owner, aw.TenantRename(id=1, tenant_id=world.contoso.id, name="Contoso Ltd")
    )
    assert outcome.result == aw.TenantInfo(
        id=world.contoso.id, name="Contoso Ltd", default_policy_id=None
    )
    assert events(outcome) == [(f"device/{world.room.id}", "device.state")]


async def test_renaming_a_device(domain: Domain, world: World) -> None:
    outcome = await domain.admin_send(
        world.contoso_admin,
        aw.DeviceRename(id=1, device_id=world.room.id, name="R", location=" L "),
    )
    assert isinstance(outcome.result, aw.DeviceInfo) and (
        outcome.result.name,
        outcome.result.location,
    ) == ("R", "L")
    kept = await domain.admin_send(
        world.contoso_admin, aw.DeviceRename(id=2, device_id=world.room.id, name="S")
    )
    assert isinstance(kept.result, aw.DeviceInfo) and kept.result.location == "L"
    error = await refused(
        domain.admin_send(
            world.contoso_admin,
            aw.DeviceRename(id=3, device_id=world.room.id, name="S", location="\x00"),
        )
    )
    assert (error.code, error.message) == (
        ErrorCode.INVALID_REQUEST,
        "location contains control characters",
    )


async def test_policy_names_are_unique_in_a_tenant(domain: Domain, world: World) -> None:
    error = await refused(
        domain.admin_send(
            world.contoso_admin,
            aw.PolicyRename(id=1, policy_id=world.prompt.id, name="no  proximity JOIN"),
        )
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"a policy called 'No proximity join' exists already in this tenant ({world.off.id})",
    )
    renamed = await domain.admin_send(
        world.contoso_admin, aw.PolicyRename(id=2, policy_id=world.prompt.id, name="Ask the Room")
    )
    assert isinstance(renamed.result, aw.PolicyInfo) and renamed.result.name == "Ask the Room"


async def test_deleting_a_policy_falls_back_and_tells_the_devices(
    domain: Domain, world: World
) -> None:
    domain.online(world.prompt_room)
    outcome = await domain.admin_send(
        world.contoso_admin, aw.PolicyDelete(id=1, policy_id=world.prompt.id)
    )
    assert outcome.result == aw.Removed(removed=world.prompt.id)
    assert (f"device/{world.prompt_room.id}", "device.state") in events(outcome)
    room = await domain.store.device(world.prompt_room.id)
    assert room is not None and room.policy_id is None


async def test_an_admin_request_changes_are_seen_at_once(domain: Domain, world: World) -> None:
    laptop = await domain.laptop(world.bob)
    domain.online(world.room)
    await domain.sight(laptop, world.room)
    await domain.admin_send(
        world.contoso_admin,
        aw.PolicyAssign(
            id=1, subject_kind="device", subject_id=world.room.id, policy_id=world.off.id
        ),
    )
    error = await refused(
        domain.send(laptop, wire.JoinRequest(id=2, room_id=world.room.id, meeting_id="m"))
    )
    assert error.code is ErrorCode.POLICY_DENIED


def _outcome_types(outcome: AdminOutcome) -> list[str]:
    return [d.event.type for d in outcome.deliveries]


async def test_a_device_administrator_record_without_a_tenant_is_not_trusted(
    domain: Domain, world: World
) -> None:
    broken = AdminRecord("a_x", "X", "device_admin", world.contoso.id, domain.now)
    listed = (await domain.admin_send(broken, aw.DeviceList(id=1))).result
    assert isinstance(listed, aw.Devices) and {d.tenant_id for d in listed.devices} == {
        world.contoso.id
    }


async def test_the_audit_log_names_the_target_of_each_action(domain: Domain, world: World) -> None:
    await domain.admin_send(world.owner, aw.TenantCreate(id=1, name="Northwind"))
    await domain.admin_send(
        world.contoso_admin,
        aw.DeviceImport(id=2, csv="MAC address\n02:00:00:00:00:05\n", kind="desk_phone"),
    )
    await domain.admin_send(
        world.owner,
        aw.DeviceImport(
            id=3,
            tenant_id=world.fabrikam.id,
            csv="MAC address\n02:00:00:00:00:06\n",
            kind="desk_phone",
        ),
    )
    await domain.admin_send(
        world.contoso_admin, aw.DeviceAdd(id=4, mac="02:00:00:00:00:07", location="Hall")
    )
    targets = [(e.action, e.target) for e in domain.store.audit_[-4:]]
    assert targets == [
        ("tenant.create", "Northwind"),
        ("device.import", "-"),
        ("device.import", world.fabrikam.id),
        ("device.add", "02:00:00:00:00:07"),
    ]
    # What was asked is kept, secrets aside.
    assert domain.store.audit_[-1].detail == {
        "tenant_id": None,
        "mac": "02:00:00:00:00:07",
        "location": "Hall",
        "name": None,
        "kind": "desk_phone",
    }
    assert domain.store.audit_[-2].detail["csv"] == "<redacted>"


async def test_a_page_exactly_full_has_no_next(domain: Domain, world: World) -> None:
    devices = (await domain.admin_send(world.contoso_admin, aw.DeviceList(id=1, limit=8))).result
    assert isinstance(devices, aw.Devices) and len(devices.devices) == 8 and devices.next is None
    users = (await domain.admin_send(world.contoso_admin, aw.UserList(id=2, limit=3))).result
    assert isinstance(users, aw.Users) and len(users.users) == 3 and users.next is None
    page = (await domain.admin_send(world.contoso_admin, aw.DeviceList(id=3, limit=3))).result
    assert isinstance(page, aw.Devices) and page.next == page.devices[2].id
    await domain.admin.create_user(world.contoso.id, "erin")
    people = (await domain.admin_send(world.contoso_admin, aw.UserList(id=4, limit=3))).result
    assert isinstance(people, aw.Users) and people.next == people.users[2].id


@pytest.mark.parametrize(("bad", "more"), [(1, ""), (20, ""), (21, "; and 1 more")])
async def test_an_import_refusal_lists_up_to_twenty_bad_rows(
    domain: Domain, world: World, bad: int, more: str
) -> None:
    csv = "MAC address,Kind\n" + "".join(f"bad{n},desk_phone\n" for n in range(bad))
    error = await refused(domain.admin_send(world.contoso_admin, aw.DeviceImport(id=1, csv=csv)))
    assert error.message.startswith("nothing imported: line 2: ") and error.message.count(
        "line "
    ) == min(bad, 20)
    assert error.message.endswith(more or "(expected e.g. 00:1B:44:11:3A:B7)")


async def test_imported_devices_are_stored(domain: Domain, world: World) -> None:
    outcome = await domain.admin_send(
        world.contoso_admin,
        aw.DeviceImport(id=1, csv="MAC address\n02:00:00:00:00:05\n", kind="room_system"),
    )
    assert isinstance(outcome.result, aw.ImportResult)
    (added,) = outcome.result.added
    stored = await domain.store.device(added.id)
    assert stored is not None and (stored.kind, stored.mode, stored.state) == (
        "room_system",
        "meeting_room",
        "waiting_for_activation",
    )


async def test_a_room_system_in_any_mode_may_be_a_consoles_room_but_not_its_own(
    domain: Domain, world: World
) -> None:
    hall = await domain.admin.create_device(world.contoso.id, "Hall", "room_system", "common_area")
    await domain.admin_send(
        world.contoso_admin, aw.ConsolePair(id=1, console_id=world.common_phone.id, room_id=hall.id)
    )
    error = await refused(
        domain.admin_send(
            world.contoso_admin, aw.ConsolePair(id=2, console_id=hall.id, room_id=hall.id)
        )
    )
    assert (error.code, error.message) == (ErrorCode.INVALID_REQUEST, "'Hall' is not a room system")


async def test_the_owner_updates_and_deletes_any_tenants_policy(
    domain: Domain, world: World
) -> None:
    theirs = await domain.admin.create_policy(world.fabrikam.id, "Theirs")
    outcome = await domain.admin_send(
        world.owner, aw.PolicyUpdate(id=1, policy_id=theirs.id, proximity_join="off")
    )
    assert isinstance(outcome.result, aw.PolicyInfo) and outcome.result.proximity_join == "off"
    await domain.admin_send(world.owner, aw.PolicyDelete(id=2, policy_id=theirs.id))
    assert await domain.store.policy(theirs.id) is None


async def test_a_new_default_policy_tells_only_its_tenants_devices(
    domain: Domain, world: World
) -> None:
    domain.online(world.alice.phone, world.carol.phone)
    created = await domain.admin_send(
        world.fabrikam_admin, aw.PolicyCreate(id=1, name="F", default=True)
    )
    assert events(created) == [(f"device/{world.carol.phone.id}", "device.state")]


async def test_consoles_and_pairings_of_devices_gone_are_listed_by_id(
    domain: Domain, world: World
) -> None:
    await domain.paired(world.alice)
    domain.store.devices_.pop(world.console.id)  # by hand: the rows outlived the devices
    domain.store.devices_.pop(world.room.id)
    consoles = (await domain.admin_send(world.contoso_admin, aw.ConsoleList(id=1))).result
    assert isinstance(consoles, aw.Consoles)
    (console,) = consoles.consoles
    assert (console.console_name, console.room_name) == (world.console.id, world.room.id)
    domain.store.devices_.pop(world.alice.phone.id)
    pairings = (await domain.admin_send(world.contoso_admin, aw.PairingList(id=2))).result
    assert isinstance(pairings, aw.Pairings)
    assert [p.phone_name for p in pairings.pairings] == [world.alice.phone.id]


@pytest.mark.parametrize("left", ["an account", "a device"])
async def test_a_tenant_with_anything_left_cannot_be_deleted(
    domain: Domain, world: World, left: str
) -> None:
    tenant = (await domain.admin_send(world.owner, aw.TenantCreate(id=1, name="Small"))).result
    assert isinstance(tenant, aw.TenantInfo)
    if left == "an account":
        await domain.admin.create_user(tenant.id, "one")
    else:
        await domain.admin.create_device(tenant.id, "one", "desk_phone", "personal")
    error = await refused(
        domain.admin_send(world.owner, aw.TenantDelete(id=2, tenant_id=tenant.id))
    )
    counts = (
        "1 account(s) and 0 device(s)" if left == "an account" else "0 account(s) and 1 device(s)"
    )
    assert (error.code, error.message) == (
        ErrorCode.WRONG_STATE,
        f"the tenant still has {counts}; delete or remove them first",
    )
    assert await domain.store.tenant(tenant.id) is not None


async def test_a_revocation_is_audited_against_the_credential(domain: Domain, world: World) -> None:
    credential_id = world.alice.credential.credential_id
    await domain.admin_send(world.owner, aw.CredentialRevoke(id=1, credential_id=credential_id))
    assert (domain.store.audit_[-1].action, domain.store.audit_[-1].target) == (
        "credential.revoke",
        credential_id,
    )
