"""Administration over the store: tenants, policies, accounts, devices, credentials, pairings.

The Python API that tests, the benchmark, the demo and ``btogether admin`` use to set
a relay up. It works on the store directly (for SQLite: the database file, also while
a relay is running on it — the relay notices directory changes within
``directory_check_s``). Every check that keeps tenants apart is made here too: a user
signs in only to a device of their own tenant, policies apply within their tenant.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypedDict, Unpack

from relay.domain.credentials import hash_token, new_token
from relay.domain.model import (
    AllowBetterTogether,
    Capability,
    Credential,
    Device,
    DeviceState,
    Pairing,
    Policy,
    ProximityJoin,
    SubjectKind,
    Tenant,
    User,
)
from relay.domain.store import DirectoryStore, PairingStore
from relay.protocol.eid import DEFAULT_ROTATION_EXPONENT, IDENTITY_KEY_LEN, check_rotation_exponent
from relay.protocol.wire import DeviceKind, DeviceMode


class AdminApiStore(DirectoryStore, PairingStore, Protocol):
    """The roles of the store this API writes."""


class AdminError(ValueError):
    """An administrative request that cannot be carried out (unknown id, wrong tenant...)."""


DEFAULT_CAPABILITIES: dict[DeviceKind, tuple[str, ...]] = {
    "desk_phone": (Capability.LOCK, Capability.AUDIO),
    "conference_phone": (Capability.JOIN, Capability.AUDIO),
    "room_system": (Capability.JOIN,),
}


class DeviceOptions(TypedDict, total=False):
    """The optional settings of a new device; what is left out gets ``Admin._device``'s default."""

    location: str
    mac: str | None
    policy_id: str | None
    capabilities: Sequence[str] | None
    rotation_exponent: int
    identity_key: bytes | None
    state: DeviceState


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A credential and its secret token; the token is not stored and cannot be shown again."""

    credential_id: str
    token: str
    subject_kind: SubjectKind
    subject_id: str


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


class Admin:
    def __init__(
        self,
        store: AdminApiStore,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[str], str] = _new_id,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        token_hex: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        self.store = store
        self._clock = clock
        self._new_id = new_id
        self._random_bytes = random_bytes
        self._token_hex = token_hex

    async def _tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.store.tenant(tenant_id)
        if tenant is None:
            raise AdminError(f"no tenant {tenant_id!r}")
        return tenant

    async def _policy_in(self, policy_id: str | None, tenant_id: str) -> None:
        if policy_id is None:
            return
        policy = await self.store.policy(policy_id)
        if policy is None or policy.tenant_id != tenant_id:
            raise AdminError(f"no policy {policy_id!r} in tenant {tenant_id!r}")

    async def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(self._new_id("t_"), name)
        await self.store.add_tenant(tenant)
        return tenant

    async def create_policy(
        self,
        tenant_id: str,
        name: str,
        *,
        allow_better_together: AllowBetterTogether = "Enabled",
        proximity_join: ProximityJoin = "auto",
        beaconing: bool = True,
        make_default: bool = False,
    ) -> Policy:
        await self._tenant(tenant_id)
        policy = Policy(
            self._new_id("p_"), tenant_id, name, allow_better_together, proximity_join, beaconing
        )
        await self.store.add_policy(policy)
        if make_default:
            await self.store.set_default_policy(tenant_id, policy.id)
        return policy

    async def set_default_policy(self, tenant_id: str, policy_id: str | None) -> None:
        await self._tenant(tenant_id)
        await self._policy_in(policy_id, tenant_id)
        await self.store.set_default_policy(tenant_id, policy_id)

    async def create_user(self, tenant_id: str, name: str, policy_id: str | None = None) -> User:
        await self._tenant(tenant_id)
        await self._policy_in(policy_id, tenant_id)
        user = User(self._new_id("u_"), tenant_id, name, policy_id)
        await self.store.add_user(user)
        return user

    async def set_user_policy(self, user_id: str, policy_id: str | None) -> None:
        user = await self.store.user(user_id)
        if user is None:
            raise AdminError(f"no user {user_id!r}")
        await self._policy_in(policy_id, user.tenant_id)
        await self.store.set_user_policy(user_id, policy_id)

    def _device(
        self,
        tenant_id: str,
        name: str,
        kind: DeviceKind,
        mode: DeviceMode,
        *,
        location: str = "",
        mac: str | None = None,
        policy_id: str | None = None,
        capabilities: Sequence[str] | None = None,
        rotation_exponent: int = DEFAULT_ROTATION_EXPONENT,
        identity_key: bytes | None = None,
        state: DeviceState = "signed_in",
    ) -> Device:
        key = identity_key if identity_key is not None else self._random_bytes(IDENTITY_KEY_LEN)
        if len(key) != IDENTITY_KEY_LEN:
            raise AdminError("identity key must be 16 bytes")
        try:
            check_rotation_exponent(rotation_exponent)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        return Device(
            id=self._new_id("d_"),
            tenant_id=tenant_id,
            name=name,
            kind=kind,
            mode=mode,
            identity_key=key,
            rotation_exponent=rotation_exponent,
            location=location,
            mac=mac,
            state=state,
            policy_id=policy_id,
            capabilities=tuple(
                capabilities if capabilities is not None else DEFAULT_CAPABILITIES[kind]
            ),
        )

    async def create_device(
        self,
        tenant_id: str,
        name: str,
        kind: DeviceKind,
        mode: DeviceMode,
        **options: Unpack[DeviceOptions],
    ) -> Device:
        """A new device, already set up (signed in, without an account unless one is signed in
        later), with a fresh identity key unless one is given: for tests, benchmarks and
        scripted set-ups that skip provisioning."""
        await self._tenant(tenant_id)
        await self._policy_in(options.get("policy_id"), tenant_id)
        device = self._device(tenant_id, name, kind, mode, **options)
        await self.store.add_device(device)
        return device

    async def _known_device(self, device_id: str) -> Device:
        device = await self.store.device(device_id)
        if device is None:
            raise AdminError(f"no device {device_id!r}")
        return device

    async def set_device_policy(self, device_id: str, policy_id: str | None) -> None:
        device = await self._known_device(device_id)
        await self._policy_in(policy_id, device.tenant_id)
        await self.store.set_device_policy(device_id, policy_id)

    async def sign_in_device(self, device_id: str, user_id: str) -> Device:
        """Sign an account in to a device (a personal phone then belongs to that user)."""
        device = await self._known_device(device_id)
        user = await self.store.user(user_id)
        if user is None or user.tenant_id != device.tenant_id:
            raise AdminError(f"no user {user_id!r} in the device's tenant")
        await self.store.sign_in_device(device_id, user_id, "signed_in")
        return await self._must_device(device_id)

    async def sign_out_device(self, device_id: str) -> Device:
        await self._known_device(device_id)
        await self.store.sign_in_device(device_id, None, "waiting_for_sign_in")
        return await self._must_device(device_id)

    async def _must_device(self, device_id: str) -> Device:
        device = await self.store.device(device_id)
        assert device is not None
        return device

    async def issue_credential(
        self, subject_kind: SubjectKind, subject_id: str
    ) -> IssuedCredential:
        """A new connection credential for a user (laptops) or a device."""
        (issued,) = await self.issue_credentials(subject_kind, [subject_id])
        return issued

    async def issue_credentials(
        self, subject_kind: SubjectKind, subject_ids: Sequence[str]
    ) -> list[IssuedCredential]:
        """Credentials for many subjects of one kind in one write (for bulk set-ups)."""
        now = self._clock()
        records: list[Credential] = []
        issued: list[IssuedCredential] = []
        for subject_id in subject_ids:
            subject = (
                await self.store.user(subject_id)
                if subject_kind == "user"
                else await self.store.device(subject_id)
            )
            if subject is None:
                raise AdminError(f"no {subject_kind} {subject_id!r}")
            token = new_token(self._token_hex)
            credential_id = self._new_id("c_")
            records.append(
                Credential(
                    credential_id,
                    hash_token(token),
                    subject_kind,
                    subject_id,
                    subject.tenant_id,
                    now,
                )
            )
            issued.append(IssuedCredential(credential_id, token, subject_kind, subject_id))
        await self.store.add_credentials(records)
        return issued

    async def revoke_credential(self, credential_id: str) -> bool:
        return await self.store.revoke_credential(credential_id, self._clock())

    async def pair(
        self, user_id: str, laptop_id: str, phone_id: str, laptop_name: str | None = None
    ) -> Pairing:
        """Store a pairing directly, skipping the confirmation dance (set-ups and benchmarks)."""
        user = await self.store.user(user_id)
        phone = await self.store.device(phone_id)
        if user is None or phone is None or phone.tenant_id != user.tenant_id:
            raise AdminError("no such user and phone in one tenant")
        if phone.user_id != user_id:
            raise AdminError("the phone is not signed in to this user")
        pairing = Pairing(
            user_id, laptop_id, laptop_name or laptop_id, phone_id, user.tenant_id, self._clock()
        )
        await self.store.add_pairing(pairing)
        return pairing

    async def create_phone_fleet(
        self, tenant_id: str, count: int, *, pair: bool = True
    ) -> list[tuple[User, Device, IssuedCredential, IssuedCredential]]:
        """``count`` users, each with a signed-in personal desk phone, credentials for both,
        and (optionally) a pairing with laptop id ``laptop-<n>``; for tests and benchmarks."""
        await self._tenant(tenant_id)
        users = [User(self._new_id("u_"), tenant_id, f"user {n}") for n in range(count)]
        await self.store.add_users(users)
        phones = [
            self._device(tenant_id, f"phone {n}", "desk_phone", "personal") for n in range(count)
        ]
        phones = [
            replace(p, user_id=u.id, state="signed_in") for p, u in zip(phones, users, strict=True)
        ]
        await self.store.add_devices(phones)
        user_creds = await self.issue_credentials("user", [u.id for u in users])
        phone_creds = await self.issue_credentials("device", [p.id for p in phones])
        if pair:
            await self.store.add_pairings(
                [
                    Pairing(user.id, f"laptop-{n}", f"laptop {n}", phone.id, tenant_id, 0.0)
                    for n, (user, phone) in enumerate(zip(users, phones, strict=True))
                ]
            )
        return list(zip(users, phones, user_creds, phone_creds, strict=True))
