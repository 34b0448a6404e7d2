"""No page or API answer leaks another tenant's data: Contoso's device administrator, signed in
through the web, sends every admin request with Fabrikam's ids (alone, and mixed with
Contoso's own), reads every list, and asks the event stream and the last-seen view for
Fabrikam; every answer is a refusal or Contoso's own data, and Fabrikam is unchanged.

(Owners administer every tenant, so a device administrator is the one bound to a tenant.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, get_args

import pytest

from relay.protocol import admin_wire as aw
from tests.web.conftest import HttpPerson, WebRelay, http_person

UNION = get_args(get_args(aw.AnyAdminRequest)[0])
KINDS = {model.model_fields["type"].default: model for model in UNION}


@pytest.fixture
async def contoso_admin(web_relay: WebRelay) -> AsyncIterator[HttpPerson]:
    async with http_person(web_relay.base) as person:
        assert await person.sign_in("contoso-admin") == 200
        yield person


async def fabrikam_estate(relay: WebRelay) -> dict[str, str]:
    """Fabrikam's devices, console pairing, policy and laptop credential (ids), plus a
    Contoso device and user to mix in."""
    owner = await relay.admin_link()
    try:
        fab = relay.fabrikam.id
        phone = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=fab,
                                  mac="02:00:00:00:0f:01", name="Fab desk phone",
                                  location="Fab HQ / Desk 1")
        room = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=fab,
                                 mac="02:00:00:00:0f:02", name="Fab boardroom",
                                 kind="room_system")
        await owner.typed(aw.ConsoleInfo, aw.ConsolePair, console_id=phone.id, room_id=room.id)
        policy = await owner.typed(aw.PolicyInfo, aw.PolicyCreate, tenant_id=fab,
                                   name="Fab secret policy")
        credential = await owner.typed(aw.CredentialIssued, aw.CredentialIssue,
                                       user_id=relay.fabrikam.user.id)
        await owner.typed(aw.SsoInfo, aw.SsoSet, tenant_id=fab, label="Fab identity",
                          issuer="https://id.fabrikam.example", client_id="fab-client",
                          client_secret="fab secret", check=False)
        await owner.typed(aw.UserEmail, aw.UserEmailSet, user_id=relay.fabrikam.user.id,
                          email="fay@fabrikam.example")
        own = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=relay.contoso.id,
                                mac="02:00:00:00:0c:01", name="Contoso desk")
        own_room = await owner.typed(aw.DeviceInfo, aw.DeviceAdd, tenant_id=relay.contoso.id,
                                     mac="02:00:00:00:0c:02", name="Contoso room",
                                     kind="room_system")
    finally:
        await owner.close()
    return {
        "tenant": fab, "phone": phone.id, "room": room.id, "policy": policy.id,
        "credential": credential.credential_id, "user": relay.fabrikam.user.id,
        "admin": relay.fabrikam.device_admin.id, "own_device": own.id,
        "own_room": own_room.id, "own_user": relay.contoso.user.id,
    }


def attempts(ids: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Every admin request type, each with Fabrikam ids wherever it takes an id or a tenant."""
    fab_ids = {
        "tenant_id": ids["tenant"], "device_id": ids["phone"], "console_id": ids["phone"],
        "room_id": ids["room"], "user_id": ids["user"], "policy_id": ids["policy"],
        "credential_id": ids["credential"],
    }
    filler: dict[str, Any] = {
        "name": "Probe", "mac": "02:00:00:00:0e:01", "csv": "MAC address,Location\n"
        "02:00:00:00:0e:02,Probe\n", "code": "ABCD-EFGH", "password": "long enough password",
        "role": "device_admin", "issuer": "https://probe.example", "client_id": "probe",
    }
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, model in KINDS.items():
        fields = model.model_fields
        body = {k: v for k, v in fab_ids.items() if k in fields}
        for name, field in fields.items():
            if name not in body and name in filler and field.is_required():
                body[name] = filler[name]
        if "subject_kind" in fields:
            subjects = {"user": ids["user"], "device": ids["phone"], "tenant": ids["tenant"],
                        "admin": ids["admin"]}
            allowed = get_args(fields["subject_kind"].annotation)
            for subject_kind in allowed or ("user",):
                out.append((kind, {**body, "subject_kind": subject_kind,
                                   "subject_id": subjects[subject_kind]}))
            continue
        if body or kind not in ("whoami", "tenant.list", "tenant.create"):
            out.append((kind, body))
    # Contoso's own subject with a Fabrikam id beside it.
    out += [
        ("device.sign_in", {"device_id": ids["own_device"], "user_id": ids["user"],
                            "code": "ABCD-EFGH"}),
        ("console.pair", {"console_id": ids["own_device"], "room_id": ids["room"]}),
        ("console.pair", {"console_id": ids["phone"], "room_id": ids["own_room"]}),
        ("policy.assign", {"subject_kind": "device", "subject_id": ids["own_device"],
                           "policy_id": ids["policy"]}),
        ("policy.assign", {"subject_kind": "user", "subject_id": ids["own_user"],
                           "policy_id": ids["policy"]}),
        ("credential.list", {"user_id": ids["user"]}),
        ("user.create", {"name": "Probe", "policy_id": ids["policy"]}),
    ]
    return out


def secrets_of(ids: dict[str, str], relay: WebRelay) -> set[str]:
    names = {"Fabrikam", "Fab desk phone", "Fab HQ", "Fab boardroom", "Fab secret policy",
             "02:00:00:00:0f:01", "02:00:00:00:0f:02", "Fab identity", "id.fabrikam.example",
             "fab-client", "fab secret", "fay@fabrikam.example"}
    fabrikam_ids = {v for k, v in ids.items() if not k.startswith("own")}
    return names | fabrikam_ids | {relay.fabrikam.device_admin.token}


async def test_a_device_administrator_gets_nothing_of_another_tenant(
    web_relay: WebRelay, contoso_admin: HttpPerson
) -> None:
    ids = await fabrikam_estate(web_relay)
    secret = secrets_of(ids, web_relay)
    tried = attempts(ids)
    assert {kind for kind, _ in tried} >= set(KINDS) - {"whoami", "tenant.list", "tenant.create"}
    probed: set[str] = set()
    for kind, body in tried:
        status, text = await contoso_admin.post(f"/admin/api/{kind}", body)
        assert status in (403, 404), f"{kind} {body} -> {status} {text}"
        sent = {str(v) for v in body.values()}
        probed |= sent
        leaked = {s for s in secret - sent if s in text}
        assert not leaked, f"{kind} leaked {leaked}: {text}"
    # Reads of its own tenant show nothing of Fabrikam (its own audit log names the ids it
    # tried, which it knew already).
    secret -= probed
    for kind in sorted(KINDS):
        if kind.endswith(".list") or kind == "whoami":
            body = {"limit": 1000} if kind == "audit.list" else {}
            status, text = await contoso_admin.post(f"/admin/api/{kind}", body)
            if kind in aw.OWNER_ONLY_REQUESTS:  # administrators are listed to owners only
                assert status == 403, f"{kind} -> {status} {text}"
                continue
            assert status == 200, f"{kind} -> {status} {text}"
            assert not {s for s in secret if s in text}, f"{kind} shows Fabrikam: {text}"
    for path in (f"/admin/api/events?tenant={ids['tenant']}",
                 f"/admin/api/last_seen?tenant={ids['tenant']}"):
        status, text = await contoso_admin.get(path)
        assert status == 404 and "Fabrikam" not in text
    # Fabrikam is as it was.
    owner = await web_relay.admin_link()
    try:
        devices = await owner.typed(aw.Devices, aw.DeviceList, tenant_id=ids["tenant"])
        consoles = await owner.typed(aw.Consoles, aw.ConsoleList, tenant_id=ids["tenant"])
        policies = await owner.typed(aw.Policies, aw.PolicyList, tenant_id=ids["tenant"])
        laptops = await owner.typed(aw.Credentials, aw.CredentialList, tenant_id=ids["tenant"])
        users = await owner.typed(aw.Users, aw.UserList, tenant_id=ids["tenant"])
    finally:
        await owner.close()
    assert {d.id for d in devices.devices} == {ids["phone"], ids["room"]}
    assert all(d.policy_id is None for d in devices.devices)
    assert [c.console_id for c in consoles.consoles] == [ids["phone"]]
    assert [p.name for p in policies.policies] == ["Fab secret policy"]
    assert [c.revoked_at for c in laptops.credentials] == [None]
    assert [u.id for u in users.users] == [ids["user"]]
    async with http_person(web_relay.base) as owner_page:
        assert await owner_page.sign_in("olivia") == 200
        _, text = await owner_page.post("/admin/api/sso.list", {"tenant_id": ids["tenant"]})
        assert "id.fabrikam.example" in text and "fab secret" not in text
        _, text = await owner_page.post("/admin/api/user_email.list", {"tenant_id": ids["tenant"]})
        assert "fay@fabrikam.example" in text
    assert json.dumps(users.model_dump()).count("Probe") == 0
