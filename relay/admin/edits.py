"""Renaming and deleting what administrators made: tenants, accounts, devices and policies.

:class:`AdminEdits` carries out the ``*.rename`` and ``*.delete`` admin requests for an
:class:`~relay.admin.service.AdminService` (which checks roles and records every action
in the audit log, refusals too), and keeps account names unique within a tenant, on
``user.create`` as on ``user.rename``: people pick accounts by name (``btogether admin
devices sign-in PHONE "Alex Doe"``), so two accounts of one name would make that
ambiguous. Policy names are unique per tenant in the database already.

What each deletion takes with it, and when it is refused:

* an account: refused while a device is signed in as it (sign the device out first);
  otherwise its laptop credentials are revoked and its pairings removed;
* a policy: whoever had it (accounts, devices, the tenant's default) falls back to the
  tenant's default, or to the built-in one; connected devices are told their new state;
* a tenant: refused while it has accounts or devices; its policies and its device
  administrators (and their credentials) go with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.admin.outcome import AdminOutcome, Handler
from relay.domain.device_import import check_location
from relay.domain.errors import RelayError
from relay.domain.handlers import handlers_of, handles
from relay.protocol import admin_wire as aw
from relay.protocol.wire import ErrorCode

if TYPE_CHECKING:
    from relay.admin.service import AdminService
    from relay.domain.model import AdminRecord, User


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class AdminEdits:
    """The rename and delete handlers, and the unique-name check on ``user.create``."""

    def __init__(self, service: AdminService, create_user: Handler) -> None:
        self._service = service
        self._store = service.store
        self._create_user = create_user

    def handlers(self) -> dict[str, Handler]:
        """The admin requests this serves, by type (its methods marked ``@handles``)."""
        return handlers_of(self)

    def _outcome(self, result: Any, deliveries: Any = ()) -> AdminOutcome:
        return AdminOutcome(result, list(deliveries))

    async def _refresh(self, now: float) -> None:
        # Requests are judged against the directory as it is now: drop the cached one.
        await self._service.provisioning.directory.refresh(now, force=True)

    # --- accounts ----------------------------------------------------------------------
    async def _name_free(self, tenant_id: str, name: str, besides: str | None = None) -> None:
        for user in await self._store.users(tenant_id):
            if user.id != besides and _same_name(user.name, name):
                raise RelayError(
                    ErrorCode.WRONG_STATE,
                    f"an account called {user.name!r} exists already in this tenant "
                    f"({user.id}); pick another name",
                )

    async def _user(self, admin: AdminRecord, user_id: str) -> User:
        user = await self._store.user(user_id)
        if user is None or (admin.role != "owner" and user.tenant_id != admin.tenant_id):
            raise RelayError(ErrorCode.NOT_FOUND, f"no user {user_id!r}")
        return user

    @handles(aw.UserCreate)
    async def _user_create(
        self, admin: AdminRecord, request: aw.UserCreate, now: float
    ) -> AdminOutcome:
        tenant_id = await self._service._tenant(admin, request.tenant_id)
        await self._name_free(tenant_id, request.name)
        return await self._create_user(admin, request, now)

    @handles(aw.UserRename)
    async def _user_rename(
        self, admin: AdminRecord, request: aw.UserRename, now: float
    ) -> AdminOutcome:
        user = await self._user(admin, request.user_id)
        await self._name_free(user.tenant_id, request.name, besides=user.id)
        await self._store.rename_user(user.id, request.name)
        await self._refresh(now)
        devices = await self._store.devices_signed_in_as(user.id)
        return self._outcome(
            aw.UserInfo(
                id=user.id, tenant_id=user.tenant_id, name=request.name, policy_id=user.policy_id
            ),
            # A device signed in as the account shows its name.
            await self._service.provisioning.state_deliveries(devices, now),
        )

    @handles(aw.UserDelete)
    async def _user_delete(
        self, admin: AdminRecord, request: aw.UserDelete, now: float
    ) -> AdminOutcome:
        user = await self._user(admin, request.user_id)
        devices = await self._store.devices_signed_in_as(user.id)
        if devices:
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"{user.name!r} is signed in on {len(devices)} device(s) ({', '.join(devices)}); "
                "sign them out first (btogether admin devices sign-out DEVICE)",
            )
        await self._store.delete_user(user.id, now)
        await self._refresh(now)
        return self._outcome(aw.Removed(removed=user.id))

    # --- tenants -----------------------------------------------------------------------
    @handles(aw.TenantRename)
    async def _tenant_rename(
        self, admin: AdminRecord, request: aw.TenantRename, now: float
    ) -> AdminOutcome:
        tenant_id = await self._service._tenant(admin, request.tenant_id)
        tenant = await self._store.tenant(tenant_id)
        assert tenant is not None
        await self._store.rename_tenant(tenant_id, request.name)
        await self._refresh(now)
        return self._outcome(
            aw.TenantInfo(
                id=tenant_id, name=request.name, default_policy_id=tenant.default_policy_id
            ),
            # Devices show their organisation's name.
            await self._service._tell_tenant_devices(tenant_id, now),
        )

    @handles(aw.TenantDelete)
    async def _tenant_delete(
        self, admin: AdminRecord, request: aw.TenantDelete, now: float
    ) -> AdminOutcome:
        tenant_id = await self._service._tenant(admin, request.tenant_id)
        users = await self._store.users(tenant_id)
        devices = await self._store.devices(tenant_id)
        if users or devices:
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"the tenant still has {len(users)} account(s) and {len(devices)} device(s); "
                "delete or remove them first",
            )
        await self._store.delete_tenant(tenant_id)
        await self._refresh(now)
        return self._outcome(aw.Removed(removed=tenant_id))

    # --- devices -----------------------------------------------------------------------
    @handles(aw.DeviceRename)
    async def _device_rename(
        self, admin: AdminRecord, request: aw.DeviceRename, now: float
    ) -> AdminOutcome:
        device = await self._service._device(admin, request.device_id)
        try:
            location = check_location(request.location) if request.location is not None else None
        except ValueError as exc:
            raise RelayError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        await self._store.rename_device(device.id, request.name, location)
        await self._refresh(now)
        renamed = await self._store.device(device.id)
        assert renamed is not None
        return self._outcome(await self._service._device_info(renamed, now))

    # --- policies ----------------------------------------------------------------------
    @handles(aw.PolicyRename)
    async def _policy_rename(
        self, admin: AdminRecord, request: aw.PolicyRename, now: float
    ) -> AdminOutcome:
        policy = await self._service._policy(admin, request.policy_id)
        for other_id in await self._store.policy_ids(policy.tenant_id):
            other = await self._store.policy(other_id)
            if other is not None and other.id != policy.id and _same_name(other.name, request.name):
                raise RelayError(
                    ErrorCode.WRONG_STATE,
                    f"a policy called {other.name!r} exists already in this tenant ({other.id})",
                )
        await self._store.rename_policy(policy.id, request.name)
        await self._refresh(now)
        renamed = await self._store.policy(policy.id)
        assert renamed is not None
        return self._outcome(await self._service._policy_info(renamed))

    @handles(aw.PolicyDelete)
    async def _policy_delete(
        self, admin: AdminRecord, request: aw.PolicyDelete, now: float
    ) -> AdminOutcome:
        policy = await self._service._policy(admin, request.policy_id)
        await self._store.delete_policy(policy.id)
        await self._refresh(now)
        return self._outcome(
            aw.Removed(removed=policy.id),
            await self._service._tell_tenant_devices(policy.tenant_id, now),
        )
