"""The relay's durable state, as role interfaces: directory, pairings, lock state, administration.

Each consumer depends on the role it needs (the service on the directory, pairings and
lock state; provisioning and the admin service on administration too), and a backend
implements them all as one :class:`RelayStore`: SQLite (:mod:`relay.storage.sqlite_store`,
the embedded default) or PostgreSQL, so several relay processes share state. The
contract tests (``tests/contract``) hold every backend to the same behaviour.

Rules every backend keeps:

* a method that changes state returns only once the change is durable;
* writes that must be race-free across processes are decided in the database: a lock
  ``seq`` is computed by the update itself, a verification code is used by a
  conditional update (``… WHERE used_at IS NULL``), versions are bumped by every writer;
* every change to the directory tables (tenants, policies, users, devices,
  credentials) bumps ``directory_version`` and is listed by :meth:`changes_since`, so
  each relay's read cache can drop exactly what changed;
* a refused write (duplicate, unknown reference) raises :class:`StoreConflict` with a
  message fit for a person, never the database's own text; an unreachable database
  raises :class:`StoreUnavailable` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from relay.domain.model import (
    Acknowledged,
    AdminCredential,
    AdminRecord,
    AuditRecord,
    ConsolePairing,
    Credential,
    Device,
    DeviceState,
    DirectoryChange,
    LockRecord,
    Pairing,
    Policy,
    Tenant,
    User,
)
from relay.domain.verification import IssuedCode
from relay.protocol.wire import DeviceMode, LockState

DEFAULT_PAGE = 500
MAX_PAGE = 5000


class StoreConflict(Exception):
    """A write broke a uniqueness or reference rule (duplicate, unknown tenant...)."""


class StoreUnavailable(Exception):
    """The database cannot be reached; nothing was changed."""


class SharedStateUnavailable(StoreUnavailable):
    """The short-lived state shared by a cluster's nodes (Redis) cannot be reached;
    nothing was changed."""


class Lifecycle(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve."""

    async def close(self) -> None:
        """Finish pending writes and release the database."""

    async def ready(self) -> bool:
        """True when the store can serve requests."""


class DirectoryStore(Protocol):
    """Tenants, policies, accounts, devices and credentials."""

    async def directory_version(self) -> int:
        """A number that grows whenever the directory changes, by any process."""

    async def changes_since(self, version: int) -> list[DirectoryChange] | None:
        """What changed after ``version`` (oldest first), or None if that is no longer known."""

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
    ) -> None:
        """Set the device's account and state; when the account changes, its pairings and
        lock state end with it (in the same transaction)."""

    async def add_credentials(self, credentials: Sequence[Credential]) -> None: ...
    async def revoke_credential(self, credential_id: str, now: float) -> bool: ...

    async def tenant(self, tenant_id: str) -> Tenant | None: ...
    async def tenants(self) -> list[Tenant]: ...
    async def policy(self, policy_id: str) -> Policy | None: ...
    async def user(self, user_id: str) -> User | None: ...
    async def users(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[User]: ...
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

    async def credential(self, credential_id: str) -> Credential | None: ...
    async def credential_by_hash(self, token_hash: bytes) -> Credential | None: ...
    async def credentials_of(self, tenant_id: str, subject_id: str | None) -> list[Credential]:
        """Credentials of a tenant (of one subject if given), revoked ones too."""


class PairingStore(Protocol):
    async def pairings_version(self) -> int:
        """A number that changes whenever a pairing is added or removed, by any process."""

    async def add_pairing(self, pairing: Pairing) -> None: ...
    async def add_pairings(self, pairings: Sequence[Pairing]) -> None: ...
    async def remove_pairing(self, user_id: str, laptop_id: str, phone_id: str) -> bool: ...
    async def pairings_of_laptop(self, user_id: str, laptop_id: str) -> list[Pairing]: ...
    async def pairings_of_phone(self, phone_id: str) -> list[Pairing]: ...
    async def tenant_pairings(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[Pairing]: ...


class LockStore(Protocol):
    async def set_desired_lock(
        self, phone_ids: Sequence[str], state: LockState, user_id: str, laptop_id: str, now: float
    ) -> list[LockRecord]:
        """Record a new desired state for each phone, its ``seq`` one more than the stored
        one (computed by the database, so concurrent writers never share a seq), durably."""

    async def ack_lock(self, phone_id: str, seq: int) -> Acknowledged | None:
        """Record that the phone applied ``seq`` and return its record after that, with
        whether the ack was news (None if the phone has no state up to ``seq``). May
        return before it is durable: losing an ack only causes a redundant re-delivery,
        which the phone ignores by its seq."""

    async def lock_record(self, phone_id: str) -> LockRecord | None:
        """The phone's stored lock record, as the database holds it now."""


class AdminStore(Protocol):
    """Administrators, provisioning, consoles and the audit log."""

    async def add_admin(
        self, admin: AdminRecord, token_hash: bytes, credential_id: str
    ) -> None: ...
    async def add_admin_credential(
        self, admin_id: str, token_hash: bytes, credential_id: str, now: float
    ) -> None: ...
    async def admin_by_token_hash(self, token_hash: bytes) -> AdminRecord | None: ...
    async def admin_credential_by_hash(self, token_hash: bytes) -> AdminCredential | None: ...
    async def admin_by_credential(self, credential_id: str) -> AdminRecord | None:
        """The administrator an active credential belongs to."""

    async def admin(self, admin_id: str) -> AdminRecord | None: ...
    async def admins(self, tenant_id: str | None) -> list[AdminRecord]:
        """Administrators (of one tenant's device administrators, or all when None)."""

    async def admin_credentials(self, admin_id: str) -> list[AdminCredential]: ...
    async def revoke_admin_credential(self, credential_id: str, now: float) -> bool: ...
    async def owner_count(self) -> int: ...

    async def set_verification_code(self, device_id: str, code: IssuedCode) -> None: ...
    async def verification_code(self, device_id: str) -> IssuedCode | None: ...
    async def devices_by_mac(self, mac: str) -> list[Device]:
        """Every listed device with this MAC address (one per tenant at most)."""

    async def provision_device(
        self,
        device_id: str,
        code_hash: str,
        identity_key: bytes,
        credential: Credential,
        now: float,
    ) -> None:
        """Use the verification code (only if it is this one, unused and unexpired:
        otherwise StoreConflict and nothing changes), bind the device (waiting for
        sign-in, new key) and make ``credential`` its one valid credential."""

    async def reset_device(self, device_id: str, now: float) -> None: ...
    async def remove_device(self, device_id: str, now: float) -> None: ...
    async def sign_in_device_as(
        self, device_id: str, user_id: str | None, state: DeviceState, mode: DeviceMode
    ) -> None: ...

    async def update_policy(self, policy: Policy, auto_confirm: bool) -> None: ...
    async def policy_auto_confirm(self, policy_id: str) -> bool: ...
    async def policy_ids(self, tenant_id: str) -> list[str]: ...

    async def pair_console(self, pairing: ConsolePairing) -> None: ...
    async def unpair_console(self, console_id: str) -> bool: ...
    async def console_pairing(self, console_id: str) -> ConsolePairing | None: ...
    async def console_pairings(self, tenant_id: str) -> list[ConsolePairing]: ...

    async def add_audit(
        self,
        at: float,
        actor: str,
        tenant_id: str | None,
        action: str,
        target: str,
        outcome: str,
        detail: dict[str, Any],
    ) -> None: ...
    async def audit(
        self, tenant_id: str | None, limit: int, *, before: int | None = None
    ) -> list[AuditRecord]:
        """The newest ``limit`` entries (of one tenant, or all) with seq below ``before``,
        oldest first."""


class EditStore(Protocol):
    """Renaming and deleting what administrators made (relay.admin.edits)."""

    async def rename_tenant(self, tenant_id: str, name: str) -> None: ...
    async def rename_user(self, user_id: str, name: str) -> None: ...
    async def rename_device(self, device_id: str, name: str, location: str | None) -> None: ...
    async def rename_policy(self, policy_id: str, name: str) -> None: ...
    async def devices_signed_in_as(self, user_id: str) -> list[str]: ...
    async def delete_user(self, user_id: str, now: float) -> None: ...
    async def delete_policy(self, policy_id: str) -> None: ...
    async def tenant_admins(self, tenant_id: str) -> list[AdminRecord]: ...
    async def delete_tenant(self, tenant_id: str) -> None: ...


class RelayStore(
    Lifecycle, DirectoryStore, PairingStore, LockStore, AdminStore, EditStore, Protocol
):
    """Everything a relay node keeps durably: what a backend implements."""

    async def prune(self, now: float) -> None:
        """Forget what no longer matters (old change-log rows); cheap, call it now and then."""
