"""An in-memory :class:`relay.domain.store.RelayStore`: the relay's durable state in dictionaries.

For tests that call the relay's decisions directly (``tests/domain``): no file, no
writer thread, no event-loop hops, so a decision is checked in microseconds. It keeps
the rules the SQLite store keeps — references must exist (a foreign key), duplicates
are refused, a refused write changes nothing (every check runs before the first
change), every directory row changed bumps ``directory_version`` and is listed by
``changes_since``, lock ``seq`` grows by one per change, a verification code is used
only once — and the store contract suite (``tests/contract``, backend ``memory``) runs
the same checks against it as against SQLite and PostgreSQL, so a test that passes here does not pass because of the
fake. Records are frozen dataclasses, so what a caller holds never changes under it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from relay.domain.model import (
    Acknowledged,
    AdminCredential,
    AdminRecord,
    AuditRecord,
    ChangeKind,
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
from relay.domain.store import MAX_PAGE, StoreConflict, StoreUnavailable
from relay.domain.verification import IssuedCode
from relay.protocol.wire import DeviceMode, LockState

# The SQLite store's words for the same refusals (relay.storage.sqlite_store._conflict_message).
MISSING_REFERENCE = "it refers to something that does not exist"
DUPLICATE = "that already exists"
CHANGE_LOG_KEPT = 200_000


@dataclass(frozen=True, slots=True)
class _AdminToken:
    credential: AdminCredential
    token_hash: bytes


class MemoryStore:
    """:class:`relay.domain.store.RelayStore` in this process's memory (for tests)."""

    def __init__(self) -> None:
        self._open = False
        self.tenants_: dict[str, Tenant] = {}
        self.policies_: dict[str, Policy] = {}
        self.auto_confirm_: dict[str, bool] = {}
        self.users_: dict[str, User] = {}
        self.devices_: dict[str, Device] = {}
        self.credentials_: dict[str, Credential] = {}
        self.pairings_: dict[tuple[str, str, str], Pairing] = {}
        self.locks_: dict[str, LockRecord] = {}
        self.admins_: dict[str, AdminRecord] = {}
        self.admin_tokens_: dict[str, _AdminToken] = {}
        self.codes_: dict[str, IssuedCode] = {}
        self.consoles_: dict[str, ConsolePairing] = {}
        self.audit_: list[AuditRecord] = []
        self._version = 0
        self._changes: list[DirectoryChange] = []
        self._changes_floor = 0
        self._pairings_version = 0
        self.writes = 0  # how many write calls changed something or were refused (tests read it)

    # --- life cycle -----------------------------------------------------------------
    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ready(self) -> bool:
        return self._open

    async def prune(self, now: float) -> None:
        floor = self._version - CHANGE_LOG_KEPT
        if floor > 0:
            self._changes = [c for c in self._changes if c.version > floor]
            self._changes_floor = max(self._changes_floor, floor)

    # --- plumbing -------------------------------------------------------------------------
    def _write(self) -> None:
        if not self._open:
            raise StoreUnavailable("store is not open")
        self.writes += 1

    def _changed(self, kind: ChangeKind, ids: Iterable[str]) -> None:
        """One directory change per row, as the SQLite triggers log them."""
        for row_id in ids:
            self._version += 1
            self._changes.append(DirectoryChange(self._version, kind, row_id))

    def _bump_pairings(self) -> None:
        self._pairings_version += 1

    @staticmethod
    def _require(condition: bool, message: str = MISSING_REFERENCE) -> None:
        if not condition:
            raise StoreConflict(message)

    def _tenant_exists(self, tenant_id: str | None) -> bool:
        return tenant_id is None or tenant_id in self.tenants_

    def _policy_exists(self, policy_id: str | None) -> bool:
        return policy_id is None or policy_id in self.policies_

    def _user_exists(self, user_id: str | None) -> bool:
        return user_id is None or user_id in self.users_

    def _token_hashes(self) -> set[bytes]:
        return {c.token_hash for c in self.credentials_.values()}

    # --- directory --------------------------------------------------------------------------
    async def directory_version(self) -> int:
        return self._version

    async def changes_since(self, version: int) -> list[DirectoryChange] | None:
        if version < self._changes_floor:
            return None
        return [c for c in self._changes if c.version > version]

    async def add_tenant(self, tenant: Tenant) -> None:
        self._write()
        self._require(tenant.id not in self.tenants_, DUPLICATE)
        self._require(self._policy_exists(tenant.default_policy_id))
        self.tenants_[tenant.id] = tenant
        self._changed("tenants", [tenant.id])

    async def add_policy(self, policy: Policy) -> None:
        self._write()
        self._require(policy.id not in self.policies_, DUPLICATE)
        self._require(
            not any(
                p.tenant_id == policy.tenant_id and p.name == policy.name
                for p in self.policies_.values()
            ),
            "a policy with this name already exists",
        )
        self._require(policy.tenant_id in self.tenants_)
        self.policies_[policy.id] = policy
        self.auto_confirm_[policy.id] = False
        self._changed("policies", [policy.id])

    async def set_default_policy(self, tenant_id: str, policy_id: str | None) -> None:
        self._write()
        self._require(tenant_id in self.tenants_, "no such tenant")
        self._require(self._policy_exists(policy_id))
        self.tenants_[tenant_id] = replace(self.tenants_[tenant_id], default_policy_id=policy_id)
        self._changed("tenants", [tenant_id])

    async def add_user(self, user: User) -> None:
        await self.add_users([user])

    async def add_users(self, users: Sequence[User]) -> None:
        self._write()
        ids = [u.id for u in users]
        self._require(len(set(ids)) == len(ids), DUPLICATE)
        for user in users:
            self._require(user.id not in self.users_, DUPLICATE)
            self._require(user.tenant_id in self.tenants_)
            self._require(self._policy_exists(user.policy_id))
        for user in users:
            self.users_[user.id] = user
        self._changed("users", ids)

    async def set_user_policy(self, user_id: str, policy_id: str | None) -> None:
        self._write()
        self._require(user_id in self.users_, "no such user")
        self._require(self._policy_exists(policy_id))
        self.users_[user_id] = replace(self.users_[user_id], policy_id=policy_id)
        self._changed("users", [user_id])

    async def add_device(self, device: Device) -> None:
        await self.add_devices([device])

    def _check_device(self, device: Device, taken_macs: set[tuple[str, str]]) -> None:
        self._require(device.id not in self.devices_, DUPLICATE)
        self._require(device.tenant_id in self.tenants_)
        self._require(self._user_exists(device.user_id))
        self._require(self._policy_exists(device.policy_id))
        self._require(len(device.identity_key) == 16, "a value is out of range")
        self._require(0 <= device.rotation_exponent <= 15, "a value is out of range")
        if device.mac is not None:
            key = (device.tenant_id, device.mac)
            self._require(key not in taken_macs, "a device with this MAC address is already listed")
            taken_macs.add(key)

    async def add_devices(self, devices: Sequence[Device]) -> None:
        self._write()
        ids = [d.id for d in devices]
        self._require(len(set(ids)) == len(ids), DUPLICATE)
        taken = {(d.tenant_id, d.mac) for d in self.devices_.values() if d.mac is not None}
        for device in devices:
            self._check_device(device, taken)
        for device in devices:
            self.devices_[device.id] = device
        self._changed("devices", ids)

    async def set_device_policy(self, device_id: str, policy_id: str | None) -> None:
        self._write()
        self._require(device_id in self.devices_, "no such device")
        self._require(self._policy_exists(policy_id))
        self.devices_[device_id] = replace(self.devices_[device_id], policy_id=policy_id)
        self._changed("devices", [device_id])

    def _end_phone_session(self, phone_id: str, new_user_id: str | None) -> None:
        """What ends when a phone's account changes: its pairings with other accounts, and
        any lock command of another account not yet applied (the seq is kept)."""
        gone = [
            k
            for k, p in self.pairings_.items()
            if p.phone_id == phone_id and p.user_id != new_user_id
        ]
        for key in gone:
            del self.pairings_[key]
        self._bump_pairings()
        record = self.locks_.get(phone_id)
        if record is not None and record.user_id != new_user_id:
            self.locks_[phone_id] = replace(record, acked_seq=record.seq)

    async def sign_in_device(self, device_id: str, user_id: str | None, state: DeviceState) -> None:
        device = self.devices_.get(device_id)
        await self.sign_in_device_as(
            device_id, user_id, state, device.mode if device else "personal"
        )

    async def add_credentials(self, credentials: Sequence[Credential]) -> None:
        self._write()
        ids = [c.id for c in credentials]
        hashes = [c.token_hash for c in credentials]
        self._require(len(set(ids)) == len(ids), DUPLICATE)
        self._require(len(set(hashes)) == len(hashes), "this credential already exists")
        existing = self._token_hashes()
        for credential in credentials:
            self._require(credential.id not in self.credentials_, DUPLICATE)
            self._require(credential.token_hash not in existing, "this credential already exists")
            self._require(credential.tenant_id in self.tenants_)
        for credential in credentials:
            self.credentials_[credential.id] = credential
        self._changed("credentials", ids)

    def _revoke(self, credential_ids: Iterable[str], now: float) -> None:
        changed = []
        for credential_id in credential_ids:
            credential = self.credentials_[credential_id]
            if credential.revoked_at is None:
                self.credentials_[credential_id] = replace(credential, revoked_at=now)
                changed.append(credential_id)
        self._changed("credentials", changed)

    async def revoke_credential(self, credential_id: str, now: float) -> bool:
        self._write()
        credential = self.credentials_.get(credential_id)
        if credential is None or credential.revoked_at is not None:
            return False
        self._revoke([credential_id], now)
        return True

    async def tenant(self, tenant_id: str) -> Tenant | None:
        return self.tenants_.get(tenant_id)

    async def tenants(self) -> list[Tenant]:
        return sorted(self.tenants_.values(), key=lambda t: t.id)

    async def policy(self, policy_id: str) -> Policy | None:
        return self.policies_.get(policy_id)

    async def user(self, user_id: str) -> User | None:
        return self.users_.get(user_id)

    async def users(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[User]:
        found = sorted(
            (u for u in self.users_.values() if u.tenant_id == tenant_id and u.id > (after or "")),
            key=lambda u: u.id,
        )
        return found[:limit]

    async def device(self, device_id: str) -> Device | None:
        return self.devices_.get(device_id)

    async def devices(
        self,
        tenant_id: str | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
        state: DeviceState | None = None,
    ) -> list[Device]:
        found = sorted(
            (
                d
                for d in self.devices_.values()
                if d.id > (after or "")
                and (tenant_id is None or d.tenant_id == tenant_id)
                and (state is None or d.state == state)
            ),
            key=lambda d: d.id,
        )
        return found if limit is None else found[:limit]

    async def credential(self, credential_id: str) -> Credential | None:
        return self.credentials_.get(credential_id)

    async def credential_by_hash(self, token_hash: bytes) -> Credential | None:
        return next((c for c in self.credentials_.values() if c.token_hash == token_hash), None)

    async def credentials_of(self, tenant_id: str, subject_id: str | None) -> list[Credential]:
        return sorted(
            (
                c
                for c in self.credentials_.values()
                if c.tenant_id == tenant_id and (subject_id is None or c.subject_id == subject_id)
            ),
            key=lambda c: (c.created_at, c.id),
        )

    # --- pairings -----------------------------------------------------------------------------
    async def pairings_version(self) -> int:
        return self._pairings_version

    async def add_pairing(self, pairing: Pairing) -> None:
        await self.add_pairings([pairing])

    async def add_pairings(self, pairings: Sequence[Pairing]) -> None:
        self._write()
        for p in pairings:
            self._require(
                p.user_id in self.users_
                and p.phone_id in self.devices_
                and p.tenant_id in self.tenants_
            )
        for p in pairings:  # INSERT OR REPLACE
            self.pairings_[(p.user_id, p.laptop_id, p.phone_id)] = p
        self._bump_pairings()

    async def remove_pairing(self, user_id: str, laptop_id: str, phone_id: str) -> bool:
        self._write()
        removed = self.pairings_.pop((user_id, laptop_id, phone_id), None)
        self._bump_pairings()
        return removed is not None

    async def pairings_of_laptop(self, user_id: str, laptop_id: str) -> list[Pairing]:
        return sorted(
            (
                p
                for p in self.pairings_.values()
                if (p.user_id, p.laptop_id) == (user_id, laptop_id)
            ),
            key=lambda p: p.phone_id,
        )

    async def pairings_of_phone(self, phone_id: str) -> list[Pairing]:
        return sorted(
            (p for p in self.pairings_.values() if p.phone_id == phone_id),
            key=lambda p: (p.user_id, p.laptop_id),
        )

    async def tenant_pairings(
        self, tenant_id: str, *, after: str | None = None, limit: int = MAX_PAGE
    ) -> list[Pairing]:
        found = sorted(
            (
                p
                for p in self.pairings_.values()
                if p.tenant_id == tenant_id
                and f"{p.user_id}/{p.laptop_id}/{p.phone_id}" > (after or "")
            ),
            key=lambda p: (p.user_id, p.laptop_id, p.phone_id),
        )
        return found[:limit]

    # --- lock state ---------------------------------------------------------------------------
    async def set_desired_lock(
        self, phone_ids: Sequence[str], state: LockState, user_id: str, laptop_id: str, now: float
    ) -> list[LockRecord]:
        if not phone_ids:
            return []
        self._write()
        for phone_id in phone_ids:
            self._require(phone_id in self.devices_)
        records = []
        for phone_id in phone_ids:
            old = self.locks_.get(phone_id)
            record = LockRecord(
                phone_id=phone_id,
                seq=old.seq + 1 if old else 1,
                state=state,
                user_id=user_id,
                laptop_id=laptop_id,
                updated_at=now,
                acked_seq=old.acked_seq if old else 0,
            )
            self.locks_[phone_id] = record
            records.append(record)
        return records

    async def ack_lock(self, phone_id: str, seq: int) -> Acknowledged | None:
        record = self.locks_.get(phone_id)
        if record is None or seq > record.seq:
            return None
        if seq <= record.acked_seq:
            return Acknowledged(record, news=False)
        self._write()
        acked = record.acked(seq)
        self.locks_[phone_id] = acked
        return Acknowledged(acked, news=True)

    async def lock_record(self, phone_id: str) -> LockRecord | None:
        return self.locks_.get(phone_id)

    # --- administrators ------------------------------------------------------------------------
    def _check_admin_token(self, credential_id: str, token_hash: bytes) -> None:
        self._require(credential_id not in self.admin_tokens_, DUPLICATE)
        self._require(
            all(t.token_hash != token_hash for t in self.admin_tokens_.values()),
            "this credential already exists",
        )

    async def add_admin(self, admin: AdminRecord, token_hash: bytes, credential_id: str) -> None:
        self._write()
        self._require(admin.id not in self.admins_, DUPLICATE)
        self._require(admin.role in ("owner", "device_admin"), "a value is out of range")
        self._require(
            (admin.role == "owner") == (admin.tenant_id is None), "a value is out of range"
        )
        self._require(self._tenant_exists(admin.tenant_id))
        self._check_admin_token(credential_id, token_hash)
        self.admins_[admin.id] = admin
        self.admin_tokens_[credential_id] = _AdminToken(
            AdminCredential(credential_id, admin.id, admin.created_at), token_hash
        )

    async def add_admin_credential(
        self, admin_id: str, token_hash: bytes, credential_id: str, now: float
    ) -> None:
        self._write()
        self._require(admin_id in self.admins_)
        self._check_admin_token(credential_id, token_hash)
        self.admin_tokens_[credential_id] = _AdminToken(
            AdminCredential(credential_id, admin_id, now), token_hash
        )

    async def admin_by_token_hash(self, token_hash: bytes) -> AdminRecord | None:
        for token in self.admin_tokens_.values():
            if token.token_hash == token_hash and token.credential.revoked_at is None:
                return self.admins_.get(token.credential.admin_id)
        return None

    async def admin_credential_by_hash(self, token_hash: bytes) -> AdminCredential | None:
        return next(
            (t.credential for t in self.admin_tokens_.values() if t.token_hash == token_hash), None
        )

    async def admin_by_credential(self, credential_id: str) -> AdminRecord | None:
        token = self.admin_tokens_.get(credential_id)
        if token is None or token.credential.revoked_at is not None:
            return None
        return self.admins_.get(token.credential.admin_id)

    async def admin(self, admin_id: str) -> AdminRecord | None:
        return self.admins_.get(admin_id)

    async def admins(self, tenant_id: str | None) -> list[AdminRecord]:
        return sorted(
            (a for a in self.admins_.values() if tenant_id is None or a.tenant_id == tenant_id),
            key=lambda a: (a.created_at, a.id),
        )

    async def admin_credentials(self, admin_id: str) -> list[AdminCredential]:
        return sorted(
            (
                t.credential
                for t in self.admin_tokens_.values()
                if t.credential.admin_id == admin_id
            ),
            key=lambda c: (c.created_at, c.id),
        )

    async def revoke_admin_credential(self, credential_id: str, now: float) -> bool:
        self._write()
        token = self.admin_tokens_.get(credential_id)
        if token is None or token.credential.revoked_at is not None:
            return False
        self.admin_tokens_[credential_id] = replace(
            token, credential=replace(token.credential, revoked_at=now)
        )
        return True

    async def owner_count(self) -> int:
        return sum(1 for a in self.admins_.values() if a.role == "owner")

    # --- verification codes and provisioning ---------------------------------------------------
    async def set_verification_code(self, device_id: str, code: IssuedCode) -> None:
        self._write()
        self._require(device_id in self.devices_)
        self.codes_[device_id] = code

    async def verification_code(self, device_id: str) -> IssuedCode | None:
        return self.codes_.get(device_id)

    async def devices_by_mac(self, mac: str) -> list[Device]:
        return sorted((d for d in self.devices_.values() if d.mac == mac), key=lambda d: d.id)

    def _revoke_device_credentials(self, device_id: str, now: float) -> None:
        self._revoke(
            [
                c.id
                for c in self.credentials_.values()
                if c.subject_kind == "device" and c.subject_id == device_id
            ],
            now,
        )

    async def provision_device(
        self,
        device_id: str,
        code_hash: str,
        identity_key: bytes,
        credential: Credential,
        now: float,
    ) -> None:
        self._write()
        code = self.codes_.get(device_id)
        self._require(
            code is not None
            and code.code_hash == code_hash
            and code.used_at is None
            and code.expires_at > now,
            "the verification code was used or replaced meanwhile",
        )
        device = self.devices_.get(device_id)
        self._require(
            device is not None and device.state == "waiting_for_activation",
            "the device is no longer waiting for activation",
        )
        self._require(len(identity_key) == 16, "a value is out of range")
        self._require(credential.id not in self.credentials_, DUPLICATE)
        self._require(
            credential.token_hash not in self._token_hashes(), "this credential already exists"
        )
        self._require(credential.tenant_id in self.tenants_)
        assert code is not None and device is not None
        self.codes_[device_id] = replace(code, used_at=now)
        self.devices_[device_id] = replace(
            device, state="waiting_for_sign_in", user_id=None, identity_key=identity_key
        )
        self._changed("devices", [device_id])
        self._revoke_device_credentials(device_id, now)
        self.credentials_[credential.id] = replace(credential, revoked_at=None)
        self._changed("credentials", [credential.id])

    async def reset_device(self, device_id: str, now: float) -> None:
        self._write()
        self._revoke_device_credentials(device_id, now)
        device = self.devices_.get(device_id)
        if device is not None:
            self.devices_[device_id] = replace(device, state="waiting_for_activation", user_id=None)
            self._changed("devices", [device_id])
        self._end_phone_session(device_id, None)

    async def remove_device(self, device_id: str, now: float) -> None:
        self._write()
        self._revoke_device_credentials(device_id, now)
        self.codes_.pop(device_id, None)
        for console_id, pairing in list(self.consoles_.items()):
            if device_id in (console_id, pairing.room_id):
                del self.consoles_[console_id]
        for key in [k for k in self.pairings_ if k[2] == device_id]:
            del self.pairings_[key]
        self._bump_pairings()
        self.locks_.pop(device_id, None)
        if self.devices_.pop(device_id, None) is not None:
            self._changed("devices", [device_id])

    async def sign_in_device_as(
        self, device_id: str, user_id: str | None, state: DeviceState, mode: DeviceMode
    ) -> None:
        self._write()
        self._require(device_id in self.devices_, "no such device")
        self._require(self._user_exists(user_id))
        self._end_phone_session(device_id, user_id)
        self.devices_[device_id] = replace(
            self.devices_[device_id], user_id=user_id, state=state, mode=mode
        )
        self._changed("devices", [device_id])

    # --- policies ------------------------------------------------------------------------------
    async def update_policy(self, policy: Policy, auto_confirm: bool) -> None:
        self._write()
        old = self.policies_.get(policy.id)
        if old is None:
            return
        self.policies_[policy.id] = replace(
            old,
            allow_better_together=policy.allow_better_together,
            proximity_join=policy.proximity_join,
            beaconing=policy.beaconing,
        )
        self.auto_confirm_[policy.id] = auto_confirm
        self._changed("policies", [policy.id])

    async def policy_auto_confirm(self, policy_id: str) -> bool:
        return self.auto_confirm_.get(policy_id, False)

    async def policy_ids(self, tenant_id: str) -> list[str]:
        return [
            p.id
            for p in sorted(
                (p for p in self.policies_.values() if p.tenant_id == tenant_id),
                key=lambda p: p.name,
            )
        ]

    # --- consoles ------------------------------------------------------------------------------
    async def pair_console(self, pairing: ConsolePairing) -> None:
        self._write()
        self._require(
            pairing.console_id in self.devices_
            and pairing.room_id in self.devices_
            and pairing.tenant_id in self.tenants_
        )
        self.consoles_[pairing.console_id] = pairing

    async def unpair_console(self, console_id: str) -> bool:
        self._write()
        return self.consoles_.pop(console_id, None) is not None

    async def console_pairing(self, console_id: str) -> ConsolePairing | None:
        return self.consoles_.get(console_id)

    async def console_pairings(self, tenant_id: str) -> list[ConsolePairing]:
        return sorted(
            (p for p in self.consoles_.values() if p.tenant_id == tenant_id),
            key=lambda p: p.console_id,
        )

    # --- audit ---------------------------------------------------------------------------------
    async def add_audit(
        self,
        at: float,
        actor: str,
        tenant_id: str | None,
        action: str,
        target: str,
        outcome: str,
        detail: dict[str, Any],
    ) -> None:
        self._write()
        # Stored as JSON, as the databases do: what goes in is what a reader gets back.
        stored = json.loads(json.dumps(detail, default=str))
        seq = self.audit_[-1].seq + 1 if self.audit_ else 1
        self.audit_.append(AuditRecord(seq, at, actor, tenant_id, action, target, outcome, stored))

    async def audit(
        self, tenant_id: str | None, limit: int, *, before: int | None = None
    ) -> list[AuditRecord]:
        below = before if before is not None else 2**62
        found = [
            r
            for r in self.audit_
            if r.seq < below and (tenant_id is None or r.tenant_id == tenant_id)
        ]
        if limit < 0:  # SQL's LIMIT -1: no limit
            return found
        return found[len(found) - limit :] if limit else []

    # --- renaming and deleting --------------------------------------------------------------------
    async def rename_tenant(self, tenant_id: str, name: str) -> None:
        self._write()
        self._require(tenant_id in self.tenants_, "no such tenant")
        self.tenants_[tenant_id] = replace(self.tenants_[tenant_id], name=name)
        self._changed("tenants", [tenant_id])

    async def rename_user(self, user_id: str, name: str) -> None:
        self._write()
        self._require(user_id in self.users_, "no such user")
        self.users_[user_id] = replace(self.users_[user_id], name=name)
        self._changed("users", [user_id])

    async def rename_device(self, device_id: str, name: str, location: str | None) -> None:
        self._write()
        self._require(device_id in self.devices_, "no such device")
        device = self.devices_[device_id]
        self.devices_[device_id] = replace(
            device, name=name, location=location if location is not None else device.location
        )
        self._changed("devices", [device_id])

    async def rename_policy(self, policy_id: str, name: str) -> None:
        self._write()
        policy = self.policies_.get(policy_id)
        self._require(policy is not None, "no such policy")
        assert policy is not None
        self._require(
            not any(
                p.tenant_id == policy.tenant_id and p.name == name and p.id != policy_id
                for p in self.policies_.values()
            ),
            "a policy with this name already exists",
        )
        self.policies_[policy_id] = replace(policy, name=name)
        self._changed("policies", [policy_id])

    async def devices_signed_in_as(self, user_id: str) -> list[str]:
        return sorted(d.id for d in self.devices_.values() if d.user_id == user_id)

    async def delete_user(self, user_id: str, now: float) -> None:
        self._write()
        # A device still naming the account is a reference: the whole deletion is refused.
        self._require(all(d.user_id != user_id for d in self.devices_.values()))
        self._revoke(
            [
                c.id
                for c in self.credentials_.values()
                if c.subject_kind == "user" and c.subject_id == user_id
            ],
            now,
        )
        for key in [k for k in self.pairings_ if k[0] == user_id]:
            del self.pairings_[key]
        self._bump_pairings()
        for phone_id in [k for k, r in self.locks_.items() if r.user_id == user_id]:
            del self.locks_[phone_id]
        if self.users_.pop(user_id, None) is not None:
            self._changed("users", [user_id])

    async def delete_policy(self, policy_id: str) -> None:
        self._write()
        users = [u.id for u in self.users_.values() if u.policy_id == policy_id]
        for user_id in users:
            self.users_[user_id] = replace(self.users_[user_id], policy_id=None)
        self._changed("users", users)
        devices = [d.id for d in self.devices_.values() if d.policy_id == policy_id]
        for device_id in devices:
            self.devices_[device_id] = replace(self.devices_[device_id], policy_id=None)
        self._changed("devices", devices)
        tenants = [t.id for t in self.tenants_.values() if t.default_policy_id == policy_id]
        for tenant_id in tenants:
            self.tenants_[tenant_id] = replace(self.tenants_[tenant_id], default_policy_id=None)
        self._changed("tenants", tenants)
        if self.policies_.pop(policy_id, None) is not None:
            self.auto_confirm_.pop(policy_id, None)
            self._changed("policies", [policy_id])

    async def tenant_admins(self, tenant_id: str) -> list[AdminRecord]:
        return sorted(
            (a for a in self.admins_.values() if a.tenant_id == tenant_id), key=lambda a: a.id
        )

    async def delete_tenant(self, tenant_id: str) -> None:
        self._write()
        # Accounts, devices and consoles refer to the tenant: it must be empty.
        self._require(
            all(u.tenant_id != tenant_id for u in self.users_.values())
            and all(d.tenant_id != tenant_id for d in self.devices_.values())
            and all(p.tenant_id != tenant_id for p in self.pairings_.values())
            and all(c.tenant_id != tenant_id for c in self.consoles_.values())
        )
        admins = {a.id for a in self.admins_.values() if a.tenant_id == tenant_id}
        for credential_id in [
            k for k, t in self.admin_tokens_.items() if t.credential.admin_id in admins
        ]:
            del self.admin_tokens_[credential_id]
        for admin_id in admins:
            del self.admins_[admin_id]
        if tenant_id in self.tenants_:
            self.tenants_[tenant_id] = replace(self.tenants_[tenant_id], default_policy_id=None)
            self._changed("tenants", [tenant_id])
        policies = [p.id for p in self.policies_.values() if p.tenant_id == tenant_id]
        for policy_id in policies:
            del self.policies_[policy_id]
            self.auto_confirm_.pop(policy_id, None)
        self._changed("policies", policies)
        credentials = [c.id for c in self.credentials_.values() if c.tenant_id == tenant_id]
        for credential_id in credentials:
            del self.credentials_[credential_id]
        self._changed("credentials", credentials)
        if self.tenants_.pop(tenant_id, None) is not None:
            self._changed("tenants", [tenant_id])
