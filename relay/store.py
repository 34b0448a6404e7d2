"""The relay's state-access interface: everything durable goes through a :class:`Store`.

The SQLite implementation (:mod:`relay.sqlite_store`) is the default; a PostgreSQL one
can be added behind the same methods so several relay processes share state. Methods
that change state return only once the change is durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from relay.model import (
    Credential,
    Device,
    DeviceState,
    LockRecord,
    Pairing,
    Policy,
    Tenant,
    User,
)
from relay.protocol.wire import LockState


class StoreConflict(Exception):
    """A write broke a uniqueness or reference rule (duplicate id, unknown tenant...)."""


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve."""

    async def close(self) -> None:
        """Finish pending writes and release the database."""

    async def ready(self) -> bool:
        """True when the store can serve requests."""

    async def directory_version(self) -> int:
        """A number that changes whenever the directory (accounts, devices, policies...) changes."""

    async def pairings_version(self) -> int:
        """A number that changes whenever a pairing is added or removed, by any process."""

    # --- directory -------------------------------------------------------------------
    async def add_tenant(self, tenant: Tenant) -> None: ...
    async def add_policy(self, policy: Policy) -> None: ...
    async def set_default_policy(self, tenant_id: str, policy_id: str | None) -> None: ...
    async def add_user(self, user: User) -> None: ...
    async def add_users(self, users: Sequence[User]) -> None: ...
    async def set_user_policy(self, user_id: str, policy_id: str | None) -> None: ...
    async def add_device(self, device: Device) -> None: ...
    async def add_devices(self, devices: Sequence[Device]) -> None: ...
    async def set_device_policy(self, device_id: str, policy_id: str | None) -> None: ...
    async def sign_in_device(
        self, device_id: str, user_id: str | None, state: DeviceState
    ) -> None: ...
    async def add_credentials(self, credentials: Sequence[Credential]) -> None: ...
    async def revoke_credential(self, credential_id: str, now: float) -> bool: ...

    async def tenant(self, tenant_id: str) -> Tenant | None: ...
    async def tenants(self) -> list[Tenant]: ...
    async def policy(self, policy_id: str) -> Policy | None: ...
    async def user(self, user_id: str) -> User | None: ...
    async def users(self, tenant_id: str) -> list[User]: ...
    async def device(self, device_id: str) -> Device | None: ...
    async def devices(
        self,
        tenant_id: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
        state: DeviceState | None = None,
    ) -> list[Device]:
        """Devices ordered by id (of one tenant or all), ``limit`` of them after ``after``."""
    async def credential_by_hash(self, token_hash: bytes) -> Credential | None: ...

    # --- pairings --------------------------------------------------------------------
    async def add_pairing(self, pairing: Pairing) -> None: ...
    async def add_pairings(self, pairings: Sequence[Pairing]) -> None: ...
    async def remove_pairing(self, user_id: str, laptop_id: str, phone_id: str) -> bool: ...
    async def pairings_of_laptop(self, user_id: str, laptop_id: str) -> list[Pairing]: ...
    async def pairings_of_phone(self, phone_id: str) -> list[Pairing]: ...

    # --- lock state --------------------------------------------------------------------
    async def set_desired_lock(
        self, phone_ids: Sequence[str], state: LockState, user_id: str, laptop_id: str, now: float
    ) -> list[LockRecord]:
        """Record a new desired state for each phone (seq + 1), durably, and return the records."""

    async def ack_lock(self, phone_id: str, seq: int) -> LockRecord | None:
        """Record that the phone applied ``seq`` (None if the phone has no state up to
        ``seq``). May return before it is durable: losing an ack only causes a redundant
        re-delivery, which the phone ignores by its seq."""

    async def lock_record(self, phone_id: str) -> LockRecord | None: ...
