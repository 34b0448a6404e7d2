"""What administrators may do, and the record of what they did.

:class:`AdminService` carries out one admin request (:mod:`relay.protocol.admin_wire`)
for an authenticated administrator: it checks the role first, keeps tenants apart
(an id of another tenant is "not found", as on the device protocol), does the work
through :class:`relay.admin.store_admin.Admin` and :class:`relay.domain.provisioning.Provisioning`,
records the action in the audit log (who, what, when, and the outcome — refusals
too), and says which connected devices must be told their new ``device.state``.

Roles: an *owner* may do everything, in every tenant; a *device administrator*
manages one tenant's devices, verification codes, login codes and sign-ins,
consoles and policies, and reads its users, pairings and audit log, but creates no
tenants, administrators, accounts or account credentials.

:func:`bootstrap_owner` makes the first owner, for the relay host's command line.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import structlog

from relay.admin.edits import AdminEdits
from relay.admin.outcome import AdminOutcome, Handler
from relay.admin.store_admin import DEFAULT_CAPABILITIES, Admin, AdminError
from relay.domain.credentials import hash_token, new_token
from relay.domain.device_import import (
    InvalidMac,
    check_location,
    kinds_for_rows,
    parse_device_csv,
    parse_mac,
)
from relay.domain.errors import RelayError
from relay.domain.handlers import handlers_of, handles, require_handlers
from relay.domain.model import AdminRecord, ConsolePairing, Device, Pairing, Policy
from relay.domain.provisioning import DEFAULT_MODE, Provisioning
from relay.domain.routing import Router
from relay.domain.service import Delivery, RelayService, device_address, laptop_address
from relay.domain.sessions import SessionEnd
from relay.domain.store import AdminStore, DirectoryStore, EditStore, PairingStore, StoreConflict
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.eid import DEFAULT_ROTATION_EXPONENT, IDENTITY_KEY_LEN
from relay.protocol.wire import CloseCode, ErrorCode

log = structlog.get_logger("relay.admin")

SECRET_FIELDS = frozenset({"code", "csv", "credential"})


class AdminServiceStore(AdminStore, DirectoryStore, PairingStore, EditStore, Protocol):
    """The roles of the store administration reads and writes."""


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def actor_label(admin: AdminRecord) -> str:
    return f"{admin.name} ({admin.role} {admin.id})"


async def bootstrap_owner(
    store: AdminServiceStore, name: str, now: float, *, new_id: Callable[[str], str] = _id
) -> tuple[AdminRecord, str]:
    """Create an owner and return it with its credential token (shown once)."""
    owner = AdminRecord(new_id("a_"), name, "owner", None, now)
    token = new_token()
    await store.add_admin(owner, hash_token(token), new_id("ac_"))
    await store.add_audit(
        now, "relay host", None, "admin.bootstrap", owner.id, "ok", {"name": name}
    )
    return owner, token


def device_info(device: Device, online: bool = False, **extra: Any) -> aw.DeviceInfo:
    return aw.DeviceInfo(
        id=device.id,
        tenant_id=device.tenant_id,
        name=device.name,
        mac=device.mac,
        location=device.location,
        kind=device.kind,
        mode=device.mode,
        state=device.state,
        user_id=device.user_id,
        policy_id=device.policy_id,
        online=online,
        **extra,
    )


class AdminService:
    def __init__(
        self,
        store: AdminServiceStore,
        provisioning: Provisioning,
        service: RelayService,
        router: Router,
        *,
        clock: Callable[[], float],
        handlers: dict[str, Handler] | None = None,
        extensions: Sequence[Callable[[AdminService], dict[str, Handler]]] = (),
        new_id: Callable[[str], str] = _id,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.store = store
        self.provisioning = provisioning
        self.service = service
        self.directory = service.directory
        self.router = router
        self._clock = clock  # the login-code wait reads the time as it passes
        self._new_id = new_id
        self._random_bytes = random_bytes
        # Its own, then renames, deletions and unique account names (relay.admin.edits),
        # then whatever the composition root adds (the browser side's account requests).
        self._handlers: dict[str, Handler] = {
            **handlers_of(self),
            **AdminEdits(self, self._user_create).handlers(),
            **(handlers or {}),
        }
        # Requests whose handlers act through this service themselves (the identity
        # provider check revokes credentials with credential.revoke): built with it.
        for extension in extensions:
            self._handlers.update(extension(self))
        require_handlers(aw.ADMIN_REQUESTS, self._handlers, "the admin service")

    async def authenticate(self, token: str) -> AdminRecord | None:
        return await self.store.admin_by_token_hash(hash_token(token))

    async def handle(
        self, admin: AdminRecord, request: aw.AdminRequest, now: float
    ) -> AdminOutcome:
        """Check the role, carry the request out, and record it (refusals too)."""
        tenant_id = await self._audit_tenant(admin, request)
        target = self._target(request)
        detail = {
            k: ("<redacted>" if k in SECRET_FIELDS else v)
            for k, v in request.model_dump(exclude={"type", "id"}).items()
        }
        try:
            if request.type in aw.OWNER_ONLY_REQUESTS and admin.role != "owner":
                raise RelayError(
                    ErrorCode.FORBIDDEN,
                    f"{request.type} needs the owner role; you are a device admin",
                )
            outcome = await self._handlers[request.type](admin, request, now)
        except AdminError as exc:
            refusal = RelayError(ErrorCode.NOT_FOUND, str(exc))
            await self._audit(admin, now, tenant_id, request.type, target, refusal.code, detail)
            raise refusal from None
        except StoreConflict as exc:
            refusal = RelayError(ErrorCode.WRONG_STATE, f"refused: {exc}")
            await self._audit(admin, now, tenant_id, request.type, target, refusal.code, detail)
            raise refusal from None
        except RelayError as refusal:
            await self._audit(admin, now, tenant_id, request.type, target, refusal.code, detail)
            raise
        if not request.type.endswith((".list", "whoami")):
            await self._audit(admin, now, tenant_id, request.type, target, "ok", detail)
            await self.directory.refresh(now, force=True)
        return outcome

    async def _audit(
        self,
        admin: AdminRecord,
        now: float,
        tenant_id: str | None,
        action: str,
        target: str,
        outcome: str,
        detail: dict[str, Any],
    ) -> None:
        await self.store.add_audit(
            now, actor_label(admin), tenant_id, action, target, str(outcome), detail
        )
        log.info("admin_action", admin=admin.id, action=action, target=target, outcome=outcome)

    async def _audit_tenant(self, admin: AdminRecord, request: aw.AdminRequest) -> str | None:
        """The tenant whose audit view shows this action. A device administrator's actions
        go to its own tenant's log whatever ids they name (another tenant's log must not
        learn of them, nor may the refusal tell its ids from unknown ones); an owner's go
        to the tenant of what they name."""
        if admin.role != "owner":
            return admin.tenant_id
        # policy.assign names its subject by kind and id.
        kind, subject = getattr(request, "subject_kind", None), getattr(request, "subject_id", None)
        named = subject if kind == "tenant" else getattr(request, "tenant_id", None)
        if isinstance(named, str):
            return named
        for name in ("device_id", "console_id"):
            device_id = subject if kind == "device" else getattr(request, name, None)
            device = await self.store.device(device_id) if isinstance(device_id, str) else None
            if device is not None:
                return device.tenant_id
        policy_id = getattr(request, "policy_id", None)
        policy = await self.store.policy(policy_id) if isinstance(policy_id, str) else None
        if policy is not None:
            return policy.tenant_id
        user_id = subject if kind == "user" else getattr(request, "user_id", None)
        user = await self.store.user(user_id) if isinstance(user_id, str) else None
        return user.tenant_id if user is not None else None

    @staticmethod
    def _target(request: aw.AdminRequest) -> str:
        for name in (
            "device_id", "console_id", "subject_id", "policy_id", "user_id", "credential_id", "mac"
        ):
            value = getattr(request, name, None)
            if isinstance(value, str):
                return value
        return str(getattr(request, "name", "") or getattr(request, "tenant_id", "") or "-")

    # --- scope checks ------------------------------------------------------------------------
    async def _tenant(self, admin: AdminRecord, tenant_id: str | None) -> str:
        """The tenant a request works on; another tenant's id is 'not found'."""
        if admin.role == "owner":
            if tenant_id is None:
                raise RelayError(ErrorCode.INVALID_REQUEST, "an owner must name the tenant")
            if await self.store.tenant(tenant_id) is None:
                raise RelayError(ErrorCode.NOT_FOUND, f"no tenant {tenant_id!r}")
            return tenant_id
        assert admin.tenant_id is not None
        if tenant_id is not None and tenant_id != admin.tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no tenant {tenant_id!r}")
        return admin.tenant_id

    async def _device(self, admin: AdminRecord, device_id: str) -> Device:
        device = await self.store.device(device_id)
        if device is None or (admin.role != "owner" and device.tenant_id != admin.tenant_id):
            raise RelayError(ErrorCode.NOT_FOUND, f"no device {device_id!r}")
        return device

    async def _policy(self, admin: AdminRecord, policy_id: str) -> Policy:
        policy = await self.store.policy(policy_id)
        if policy is None or (admin.role != "owner" and policy.tenant_id != admin.tenant_id):
            raise RelayError(ErrorCode.NOT_FOUND, f"no policy {policy_id!r}")
        return policy

    async def _device_info(self, device: Device, now: float) -> aw.DeviceInfo:
        alert = await self.provisioning.alert(device.id, now)
        console = await self.store.console_pairing(device.id)
        return device_info(
            device,
            await self.router.is_online(device_address(device.id)),
            console_of=console.room_id if console else None,
            locked_out_until=alert.until if alert else None,
            lockout_reason=alert.reason if alert else None,
        )

    async def phone_account_changed(
        self, device: Device, before: list[Pairing], now: float
    ) -> tuple[list[Delivery], list[SessionEnd]]:
        """After a device's account changed: the laptops whose pairing ended are told, its
        audio hand-off ends, and its connection closes (after its new ``device.state``)
        so it reconnects as what it is now."""
        still = {(p.user_id, p.laptop_id) for p in await self.store.pairings_of_phone(device.id)}
        out = [
            Delivery(
                laptop_address(p.user_id, p.laptop_id),
                wire.PairRemoved(laptop_id=p.laptop_id, phone_id=device.id),
            )
            for p in before
            if (p.user_id, p.laptop_id) not in still
        ]
        out += await self.service.end_phone_handoff(device.id, "the phone changed account", now)
        out += await self.provisioning.state_deliveries([device.id], now)
        end = SessionEnd(
            ("device", device.id),
            CloseCode.SESSION_CHANGED,
            "the device's account changed; reconnect",
        )
        return out, [end]

    async def _policy_info(self, policy: Policy) -> aw.PolicyInfo:
        tenant = await self.store.tenant(policy.tenant_id)
        return aw.PolicyInfo(
            id=policy.id,
            tenant_id=policy.tenant_id,
            name=policy.name,
            allow_better_together=policy.allow_better_together,
            proximity_join=policy.proximity_join,
            beaconing=policy.beaconing,
            auto_confirm=await self.store.policy_auto_confirm(policy.id),
            is_default=tenant is not None and tenant.default_policy_id == policy.id,
        )

    async def _tell_tenant_devices(self, tenant_id: str, now: float) -> list[Delivery]:
        devices = await self.store.devices(tenant_id)
        return await self.provisioning.state_deliveries([d.id for d in devices], now)

    def _admin_api(self, now: float) -> Admin:
        return Admin(self.store, clock=lambda: now, new_id=self._new_id)

    # --- tenants, administrators, accounts -------------------------------------------------------
    @handles(aw.WhoAmI)
    async def _whoami(self, admin: AdminRecord, request: aw.WhoAmI, now: float) -> AdminOutcome:
        return AdminOutcome(
            aw.AdminInfo(
                admin_id=admin.id, name=admin.name, role=admin.role, tenant_id=admin.tenant_id
            )
        )

    @handles(aw.TenantCreate)
    async def _tenant_create(
        self, admin: AdminRecord, request: aw.TenantCreate, now: float
    ) -> AdminOutcome:
        tenant = await self._admin_api(now).create_tenant(request.name)
        return AdminOutcome(aw.TenantInfo(id=tenant.id, name=tenant.name, default_policy_id=None))

    @handles(aw.TenantList)
    async def _tenant_list(
        self, admin: AdminRecord, request: aw.TenantList, now: float
    ) -> AdminOutcome:
        tenants = await self.store.tenants()
        return AdminOutcome(
            aw.Tenants(
                tenants=[
                    aw.TenantInfo(id=t.id, name=t.name, default_policy_id=t.default_policy_id)
                    for t in tenants
                    if admin.role == "owner" or t.id == admin.tenant_id
                ]
            )
        )

    @handles(aw.AdminCreate)
    async def _admin_create(
        self, admin: AdminRecord, request: aw.AdminCreate, now: float
    ) -> AdminOutcome:
        tenant_id: str | None = None
        if request.role == "device_admin":
            tenant_id = await self._tenant(admin, request.tenant_id)
        record = AdminRecord(self._new_id("a_"), request.name, request.role, tenant_id, now)
        token = new_token()
        credential_id = self._new_id("ac_")
        await self.store.add_admin(record, hash_token(token), credential_id)
        info = aw.AdminInfo(
            admin_id=record.id, name=record.name, role=record.role, tenant_id=tenant_id
        )
        return AdminOutcome(aw.AdminCreated(admin=info, credential_id=credential_id, token=token))

    @handles(aw.UserCreate)
    async def _user_create(
        self, admin: AdminRecord, request: aw.UserCreate, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        user = await self._admin_api(now).create_user(tenant_id, request.name, request.policy_id)
        return AdminOutcome(
            aw.UserInfo(id=user.id, tenant_id=tenant_id, name=user.name, policy_id=user.policy_id)
        )

    @handles(aw.UserList)
    async def _user_list(
        self, admin: AdminRecord, request: aw.UserList, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        users = await self.store.users(tenant_id, after=request.after, limit=request.limit + 1)
        more = len(users) > request.limit
        users = users[: request.limit]
        return AdminOutcome(
            aw.Users(
                users=[
                    aw.UserInfo(id=u.id, tenant_id=u.tenant_id, name=u.name, policy_id=u.policy_id)
                    for u in users
                ],
                next=users[-1].id if more else None,
            )
        )

    @handles(aw.CredentialIssue)
    async def _credential_issue(
        self, admin: AdminRecord, request: aw.CredentialIssue, now: float
    ) -> AdminOutcome:
        issued = await self._admin_api(now).issue_credential("user", request.user_id)
        return AdminOutcome(
            aw.CredentialIssued(
                credential_id=issued.credential_id, user_id=request.user_id, token=issued.token
            )
        )

    @handles(aw.CredentialRevoke)
    async def _credential_revoke(
        self, admin: AdminRecord, request: aw.CredentialRevoke, now: float
    ) -> AdminOutcome:
        """Revoke a user's or an administrator's credential and close what it opened."""
        credential_id = request.credential_id
        why = "the credential was revoked"
        if credential_id.startswith("ac_"):
            holder = await self.store.admin_by_credential(credential_id)
            if holder is None or not await self.store.revoke_admin_credential(credential_id, now):
                raise RelayError(ErrorCode.NOT_FOUND, f"no active credential {credential_id!r}")
        elif not await self._admin_api(now).revoke_credential(credential_id):
            raise RelayError(ErrorCode.NOT_FOUND, f"no active credential {credential_id!r}")
        return AdminOutcome(
            aw.Removed(removed=credential_id),
            ends=[SessionEnd(("credential", credential_id), CloseCode.REVOKED, why)],
        )

    @handles(aw.AdminList)
    async def _admin_list(
        self, admin: AdminRecord, request: aw.AdminList, now: float
    ) -> AdminOutcome:
        listings = []
        for record in await self.store.admins(None):
            credentials = await self.store.admin_credentials(record.id)
            listings.append(
                aw.AdminListing(
                    admin=aw.AdminInfo(
                        admin_id=record.id,
                        name=record.name,
                        role=record.role,
                        tenant_id=record.tenant_id,
                    ),
                    created_at=record.created_at,
                    credentials=[
                        aw.AdminCredentialInfo(
                            id=c.id, created_at=c.created_at, revoked_at=c.revoked_at
                        )
                        for c in credentials
                    ],
                )
            )
        return AdminOutcome(aw.Admins(admins=listings))

    # --- the device list -------------------------------------------------------------------
    def _listed_device(
        self, tenant_id: str, mac: str, location: str, name: str | None, kind: wire.DeviceKind
    ) -> Device:
        """A device as the administrator lists it: waiting for activation. Its identity key
        is a placeholder nobody knows; provisioning issues the real one."""
        return Device(
            id=self._new_id("d_"),
            tenant_id=tenant_id,
            name=name or location or mac,
            kind=kind,
            mode=DEFAULT_MODE[kind],
            identity_key=self._random_bytes(IDENTITY_KEY_LEN),
            rotation_exponent=DEFAULT_ROTATION_EXPONENT,
            location=location,
            mac=mac,
            state="waiting_for_activation",
            capabilities=tuple(DEFAULT_CAPABILITIES[kind]),
        )

    async def _known_macs(self, tenant_id: str) -> frozenset[str]:
        """MAC addresses already listed in a tenant (another tenant's are not its business)."""
        return frozenset(d.mac for d in await self.store.devices(tenant_id) if d.mac)

    @handles(aw.DeviceAdd)
    async def _device_add(
        self, admin: AdminRecord, request: aw.DeviceAdd, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        try:
            mac = parse_mac(request.mac)
            location = check_location(request.location)
        except (InvalidMac, ValueError) as exc:
            raise RelayError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        if mac in await self._known_macs(tenant_id):
            raise RelayError(ErrorCode.WRONG_STATE, f"{mac} is already listed in this tenant")
        device = self._listed_device(tenant_id, mac, location, request.name, request.kind)
        await self.store.add_device(device)
        return AdminOutcome(await self._device_info(device, now))

    @handles(aw.DeviceImport)
    async def _device_import(
        self, admin: AdminRecord, request: aw.DeviceImport, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        plan = parse_device_csv(request.csv, await self._known_macs(tenant_id))
        rows, problems = kinds_for_rows(plan, request.kind)
        errors = [aw.RowProblem(line=e.line, message=e.message) for e in problems]
        if errors and not request.skip_bad_rows:
            raise RelayError(
                ErrorCode.INVALID_REQUEST,
                "nothing imported: "
                + "; ".join(str(e) for e in problems[:20])
                + (f"; and {len(errors) - 20} more" if len(errors) > 20 else ""),
            )
        devices = [
            self._listed_device(tenant_id, row.mac, row.location, row.name, kind)
            for row, kind in rows
        ]
        if devices:
            await self.store.add_devices(devices)
        return AdminOutcome(
            aw.ImportResult(added=[await self._device_info(d, now) for d in devices], errors=errors)
        )

    @handles(aw.DeviceList)
    async def _device_list(
        self, admin: AdminRecord, request: aw.DeviceList, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        devices = await self.store.devices(
            tenant_id, after=request.after, limit=request.limit + 1, state=request.state
        )
        more = len(devices) > request.limit
        devices = devices[: request.limit]
        return AdminOutcome(
            aw.Devices(
                devices=[await self._device_info(d, now) for d in devices],
                next=devices[-1].id if more else None,
            )
        )

    @handles(aw.DeviceRemove)
    async def _device_remove(
        self, admin: AdminRecord, request: aw.DeviceRemove, now: float
    ) -> AdminOutcome:
        device = await self._device(admin, request.device_id)
        before = await self.store.pairings_of_phone(device.id)
        handoff_ends = await self.service.end_phone_handoff(device.id, "the phone was removed", now)
        await self.store.remove_device(device.id, now)
        deliveries = [
            Delivery(
                laptop_address(p.user_id, p.laptop_id),
                wire.PairRemoved(laptop_id=p.laptop_id, phone_id=device.id),
            )
            for p in before
        ]
        return AdminOutcome(
            aw.Removed(removed=device.id),
            deliveries + [d for d in handoff_ends if d.address != device_address(device.id)],
            [SessionEnd(("device", device.id), CloseCode.REVOKED, "the device was removed")],
        )

    # --- codes and sign-in -----------------------------------------------------------------------
    @handles(aw.CodeCreate)
    async def _code_create(
        self, admin: AdminRecord, request: aw.CodeCreate, now: float
    ) -> AdminOutcome:
        device = await self._device(admin, request.device_id)
        code, expires_at = await self.provisioning.issue_verification_code(device, now)
        return AdminOutcome(
            aw.VerificationCode(device_id=device.id, code=code, expires_at=expires_at)
        )

    @handles(aw.LoginCodeGet)
    async def _login_code_get(
        self, admin: AdminRecord, request: aw.LoginCodeGet, now: float
    ) -> AdminOutcome:
        """Ask the connected device for its login code and wait for its report (which may
        reach another relay node: the wait meets it in the shared state)."""
        device = await self._device(admin, request.device_id)
        request_id, event = await self.provisioning.ask_login_code(device, now)
        if not await self.router.deliver(device_address(device.id), event.model_dump_json()):
            raise RelayError(ErrorCode.DEVICE_OFFLINE, f"device {device.id} is not connected")
        code, expires_at = await self.provisioning.wait_login_code(request_id, self._clock)
        return AdminOutcome(aw.LoginCode(device_id=device.id, code=code, expires_at=expires_at))

    @handles(aw.DeviceSignIn)
    async def _device_sign_in(
        self, admin: AdminRecord, request: aw.DeviceSignIn, now: float
    ) -> AdminOutcome:
        device = await self._device(admin, request.device_id)
        before = await self.store.pairings_of_phone(device.id)
        signed_in = await self.provisioning.sign_in(
            device, request.user_id, request.code, request.mode, now, by=f"admin {admin.id}"
        )
        deliveries, ends = await self.phone_account_changed(signed_in, before, now)
        return AdminOutcome(await self._device_info(signed_in, now), deliveries, ends)

    @handles(aw.DeviceSignOut)
    async def _device_sign_out(
        self, admin: AdminRecord, request: aw.DeviceSignOut, now: float
    ) -> AdminOutcome:
        device = await self._device(admin, request.device_id)
        if device.state != "signed_in":
            raise RelayError(ErrorCode.WRONG_STATE, f"device {device.id} is not signed in")
        before = await self.store.pairings_of_phone(device.id)
        signed_out = await self.provisioning.sign_out(device, now)
        deliveries, ends = await self.phone_account_changed(signed_out, before, now)
        return AdminOutcome(await self._device_info(signed_out, now), deliveries, ends)

    # --- policies --------------------------------------------------------------------------------
    @handles(aw.PolicyCreate)
    async def _policy_create(
        self, admin: AdminRecord, request: aw.PolicyCreate, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        policy = await self._admin_api(now).create_policy(
            tenant_id,
            request.name,
            allow_better_together=request.allow_better_together,
            proximity_join=request.proximity_join,
            beaconing=request.beaconing,
            make_default=request.default,
        )
        if request.auto_confirm:
            await self.store.update_policy(policy, auto_confirm=True)
        deliveries = await self._tell_tenant_devices(tenant_id, now) if request.default else []
        return AdminOutcome(await self._policy_info(policy), deliveries)

    @handles(aw.PolicyUpdate)
    async def _policy_update(
        self, admin: AdminRecord, request: aw.PolicyUpdate, now: float
    ) -> AdminOutcome:
        policy = await self._policy(admin, request.policy_id)
        changes = request.model_dump(
            include={"allow_better_together", "proximity_join", "beaconing"}, exclude_none=True
        )
        updated = replace(policy, **changes)
        auto_confirm = (
            request.auto_confirm
            if request.auto_confirm is not None
            else await self.store.policy_auto_confirm(policy.id)
        )
        await self.store.update_policy(updated, auto_confirm)
        return AdminOutcome(
            await self._policy_info(updated),
            await self._tell_tenant_devices(policy.tenant_id, now),
        )

    @handles(aw.PolicyAssign)
    async def _policy_assign(
        self, admin: AdminRecord, request: aw.PolicyAssign, now: float
    ) -> AdminOutcome:
        api = self._admin_api(now)
        if request.subject_kind == "tenant":
            tenant_id = await self._tenant(admin, request.subject_id)
            await api.set_default_policy(tenant_id, request.policy_id)
        elif request.subject_kind == "device":
            device = await self._device(admin, request.subject_id)
            tenant_id = device.tenant_id
            await api.set_device_policy(device.id, request.policy_id)
        else:
            user = await self.store.user(request.subject_id)
            if user is None or (admin.role != "owner" and user.tenant_id != admin.tenant_id):
                raise RelayError(ErrorCode.NOT_FOUND, f"no user {request.subject_id!r}")
            tenant_id = user.tenant_id
            await api.set_user_policy(user.id, request.policy_id)
        return AdminOutcome(
            aw.Assigned(
                subject_kind=request.subject_kind,
                subject_id=request.subject_id,
                policy_id=request.policy_id,
            ),
            await self._tell_tenant_devices(tenant_id, now),
        )

    @handles(aw.PolicyList)
    async def _policy_list(
        self, admin: AdminRecord, request: aw.PolicyList, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        policies = []
        for policy_id in await self.store.policy_ids(tenant_id):
            policy = await self.store.policy(policy_id)
            if policy is not None:
                policies.append(await self._policy_info(policy))
        return AdminOutcome(aw.Policies(policies=policies))

    # --- consoles, pairings, audit -----------------------------------------------------------
    async def _console_info(self, pairing: ConsolePairing) -> aw.ConsoleInfo:
        console = await self.store.device(pairing.console_id)
        room = await self.store.device(pairing.room_id)
        return aw.ConsoleInfo(
            console_id=pairing.console_id,
            console_name=console.name if console else pairing.console_id,
            room_id=pairing.room_id,
            room_name=room.name if room else pairing.room_id,
            created_at=pairing.created_at,
        )

    @handles(aw.ConsolePair)
    async def _console_pair(
        self, admin: AdminRecord, request: aw.ConsolePair, now: float
    ) -> AdminOutcome:
        console = await self._device(admin, request.console_id)
        room = await self._device(admin, request.room_id)
        if room.tenant_id != console.tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no device {request.room_id!r}")
        if room.id == console.id or not (room.kind == "room_system" or room.mode == "meeting_room"):
            raise RelayError(ErrorCode.INVALID_REQUEST, f"{room.name!r} is not a room system")
        if await self.store.console_pairing(room.id) is not None:
            raise RelayError(ErrorCode.INVALID_REQUEST, f"{room.name!r} is itself a console")
        pairing = ConsolePairing(console.id, room.id, console.tenant_id, now)
        await self.store.pair_console(pairing)
        return AdminOutcome(
            await self._console_info(pairing),
            await self.provisioning.state_deliveries([console.id], now),
        )

    @handles(aw.ConsoleUnpair)
    async def _console_unpair(
        self, admin: AdminRecord, request: aw.ConsoleUnpair, now: float
    ) -> AdminOutcome:
        console = await self._device(admin, request.console_id)
        if not await self.store.unpair_console(console.id):
            raise RelayError(ErrorCode.NOT_FOUND, f"{console.id} is not paired with a room")
        return AdminOutcome(
            aw.Removed(removed=console.id),
            await self.provisioning.state_deliveries([console.id], now),
        )

    @handles(aw.ConsoleList)
    async def _console_list(
        self, admin: AdminRecord, request: aw.ConsoleList, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        pairings = await self.store.console_pairings(tenant_id)
        return AdminOutcome(aw.Consoles(consoles=[await self._console_info(p) for p in pairings]))

    @handles(aw.PairingList)
    async def _pairing_list(
        self, admin: AdminRecord, request: aw.PairingList, now: float
    ) -> AdminOutcome:
        tenant_id = await self._tenant(admin, request.tenant_id)
        pairings = await self.store.tenant_pairings(
            tenant_id, after=request.after, limit=request.limit + 1
        )
        more = len(pairings) > request.limit
        pairings = pairings[: request.limit]
        out = []
        for pairing in pairings:
            phone = await self.store.device(pairing.phone_id)
            out.append(
                wire.PairingInfo(
                    laptop_id=pairing.laptop_id,
                    laptop_name=pairing.laptop_name,
                    phone_id=pairing.phone_id,
                    phone_name=phone.name if phone else pairing.phone_id,
                    created_at=pairing.created_at,
                )
            )
        last = pairings[-1] if pairings else None
        return AdminOutcome(
            aw.Pairings(
                pairings=out,
                next=f"{last.user_id}/{last.laptop_id}/{last.phone_id}" if more and last else None,
            )
        )

    @handles(aw.AuditList)
    async def _audit_list(
        self, admin: AdminRecord, request: aw.AuditList, now: float
    ) -> AdminOutcome:
        tenant_id = (
            request.tenant_id
            if admin.role == "owner"
            else await self._tenant(admin, request.tenant_id)
        )
        entries = await self.store.audit(tenant_id, request.limit, before=request.before)
        return AdminOutcome(
            aw.AuditEntries(
                entries=[
                    aw.AuditEntry(
                        seq=e.seq,
                        at=e.at,
                        actor=e.actor,
                        tenant_id=e.tenant_id,
                        action=e.action,
                        target=e.target,
                        outcome=e.outcome,
                        detail=e.detail,
                    )
                    for e in entries
                ]
            )
        )
