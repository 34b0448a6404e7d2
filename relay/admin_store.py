"""Durable state of provisioning and administration, on the relay's SQLite file.

:class:`SqliteAdminStore` is the :class:`~relay.sqlite_store.SqliteStore` plus the
tables of schema version 2: administrators and their credentials, verification
codes, console pairings, the audit log, and each policy's ``auto_confirm``. Each
method that changes several rows does so in one job of the group-committing writer,
so it is all-or-nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from relay.model import Credential, Device, DeviceState, Pairing, Policy
from relay.protocol.wire import DeviceMode
from relay.sqlite_store import SqliteStore
from relay.store import StoreConflict
from relay.verification import IssuedCode

AdminRole = Literal["owner", "device_admin"]


@dataclass(frozen=True, slots=True)
class AdminRecord:
    """An administrator: an owner (every tenant) or a device administrator of one tenant."""

    id: str
    name: str
    role: AdminRole
    tenant_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: float
    actor: str
    tenant_id: str | None
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConsolePairing:
    console_id: str
    room_id: str
    tenant_id: str
    created_at: float


def _revoke_device_credentials(device_id: str, now: float) -> tuple[str, Sequence[Any], bool]:
    return (
        "UPDATE credentials SET revoked_at = ? WHERE subject_kind = 'device'"
        " AND subject_id = ? AND revoked_at IS NULL",
        (now, device_id),
        False,
    )


def _credential_row(c: Credential) -> tuple[Any, ...]:
    return (c.id, c.token_hash, c.subject_kind, c.subject_id, c.tenant_id, c.created_at, None)


_CREDENTIAL_INSERT = (
    "INSERT INTO credentials (id, token_hash, subject_kind, subject_id, tenant_id,"
    " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SqliteAdminStore(SqliteStore):
    # --- administrators ------------------------------------------------------------------
    async def add_admin(self, admin: AdminRecord, token_hash: bytes, credential_id: str) -> None:
        await self._write(
            (
                "INSERT INTO admins (id, name, role, tenant_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (admin.id, admin.name, admin.role, admin.tenant_id, admin.created_at),
                False,
            ),
            (
                "INSERT INTO admin_credentials (id, token_hash, admin_id, created_at)"
                " VALUES (?, ?, ?, ?)",
                (credential_id, token_hash, admin.id, admin.created_at),
                False,
            ),
        )

    async def admin_by_token_hash(self, token_hash: bytes) -> AdminRecord | None:
        row = self._one(
            "SELECT a.* FROM admin_credentials c JOIN admins a ON a.id = c.admin_id"
            " WHERE c.token_hash = ? AND c.revoked_at IS NULL",
            token_hash,
        )
        if row is None:
            return None
        return AdminRecord(row["id"], row["name"], row["role"], row["tenant_id"], row["created_at"])

    async def owner_count(self) -> int:
        row = self._one("SELECT count(*) FROM admins WHERE role = 'owner'")
        return int(row[0]) if row else 0

    # --- verification codes and provisioning -----------------------------------------------
    async def set_verification_code(self, device_id: str, code: IssuedCode) -> None:
        """Store a device's code; the previous one (used or not) is gone."""
        await self._write(
            (
                "INSERT OR REPLACE INTO verification_codes"
                " (device_id, code_hash, issued_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
                (device_id, code.code_hash, code.issued_at, code.expires_at, code.used_at),
                False,
            )
        )

    async def verification_code(self, device_id: str) -> IssuedCode | None:
        row = self._one("SELECT * FROM verification_codes WHERE device_id = ?", device_id)
        if row is None:
            return None
        return IssuedCode(row["code_hash"], row["issued_at"], row["expires_at"], row["used_at"])

    async def device_by_mac(self, mac: str) -> Device | None:
        row = self._one("SELECT id FROM devices WHERE mac = ?", mac)
        return await self.device(row["id"]) if row else None

    async def provision_device(
        self, device_id: str, identity_key: bytes, credential: Credential, now: float
    ) -> None:
        """Use the code, bind the device (waiting for sign-in, new key) and give it the one
        valid credential."""
        await self._write(
            (
                "UPDATE verification_codes SET used_at = ? WHERE device_id = ?",
                (now, device_id),
                False,
            ),
            (
                "UPDATE devices SET state = 'waiting_for_sign_in', user_id = NULL,"
                " identity_key = ? WHERE id = ?",
                (identity_key, device_id),
                False,
            ),
            _revoke_device_credentials(device_id, now),
            (_CREDENTIAL_INSERT, _credential_row(credential), False),
        )

    async def reset_device(self, device_id: str, now: float) -> None:
        """Factory reset: credentials revoked, back to waiting for activation, pairings gone."""
        await self._write(
            _revoke_device_credentials(device_id, now),
            (
                "UPDATE devices SET state = 'waiting_for_activation', user_id = NULL WHERE id = ?",
                (device_id,),
                False,
            ),
            ("DELETE FROM pairings WHERE phone_id = ?", (device_id,), False),
            ("DELETE FROM lock_states WHERE phone_id = ?", (device_id,), False),
        )

    async def remove_device(self, device_id: str, now: float) -> None:
        await self._write(
            _revoke_device_credentials(device_id, now),
            ("DELETE FROM verification_codes WHERE device_id = ?", (device_id,), False),
            (
                "DELETE FROM console_pairings WHERE console_id = ? OR room_id = ?",
                (device_id, device_id),
                False,
            ),
            ("DELETE FROM pairings WHERE phone_id = ?", (device_id,), False),
            ("DELETE FROM lock_states WHERE phone_id = ?", (device_id,), False),
            ("DELETE FROM devices WHERE id = ?", (device_id,), False),
        )

    async def sign_in_device_as(
        self, device_id: str, user_id: str | None, state: DeviceState, mode: DeviceMode
    ) -> None:
        (count,) = await self._write(
            (
                "UPDATE devices SET user_id = ?, state = ?, mode = ? WHERE id = ?",
                (user_id, state, mode, device_id),
                False,
            )
        )
        if count != 1:
            raise StoreConflict("no such device")

    # --- policies --------------------------------------------------------------------------
    async def update_policy(self, policy: Policy, auto_confirm: bool) -> None:
        await self._write(
            (
                "UPDATE policies SET allow_better_together = ?, proximity_join = ?,"
                " beaconing = ?, auto_confirm = ? WHERE id = ?",
                (
                    policy.allow_better_together,
                    policy.proximity_join,
                    int(policy.beaconing),
                    int(auto_confirm),
                    policy.id,
                ),
                False,
            )
        )

    async def policy_auto_confirm(self, policy_id: str) -> bool:
        row = self._one("SELECT auto_confirm FROM policies WHERE id = ?", policy_id)
        return bool(row[0]) if row else False

    async def policy_ids(self, tenant_id: str) -> list[str]:
        rows = self._all("SELECT id FROM policies WHERE tenant_id = ? ORDER BY name", tenant_id)
        return [r["id"] for r in rows]

    # --- consoles ----------------------------------------------------------------------------
    async def pair_console(self, pairing: ConsolePairing) -> None:
        await self._write(
            (
                "INSERT OR REPLACE INTO console_pairings (console_id, room_id, tenant_id,"
                " created_at) VALUES (?, ?, ?, ?)",
                (pairing.console_id, pairing.room_id, pairing.tenant_id, pairing.created_at),
                False,
            )
        )

    async def unpair_console(self, console_id: str) -> bool:
        (count,) = await self._write(
            ("DELETE FROM console_pairings WHERE console_id = ?", (console_id,), False)
        )
        return count == 1

    async def console_pairing(self, console_id: str) -> ConsolePairing | None:
        row = self._one("SELECT * FROM console_pairings WHERE console_id = ?", console_id)
        return _console(row) if row else None

    async def console_pairings(self, tenant_id: str) -> list[ConsolePairing]:
        rows = self._all(
            "SELECT * FROM console_pairings WHERE tenant_id = ? ORDER BY console_id", tenant_id
        )
        return [_console(r) for r in rows]

    # --- pairings and audit --------------------------------------------------------------
    async def tenant_pairings(self, tenant_id: str) -> list[Pairing]:
        rows = self._all(
            "SELECT * FROM pairings WHERE tenant_id = ? ORDER BY user_id, laptop_id", tenant_id
        )
        return [
            Pairing(
                r["user_id"],
                r["laptop_id"],
                r["laptop_name"],
                r["phone_id"],
                r["tenant_id"],
                r["created_at"],
            )
            for r in rows
        ]

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
        await self._write(
            (
                "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, actor, tenant_id, action, target, outcome, json.dumps(detail, default=str)),
                False,
            )
        )

    async def audit(self, tenant_id: str | None, limit: int) -> list[AuditRecord]:
        """The newest ``limit`` entries (of one tenant, or all), oldest first."""
        if tenant_id is None:
            rows = self._all("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", limit)
        else:
            rows = self._all(
                "SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?",
                tenant_id,
                limit,
            )
        return [
            AuditRecord(
                r["seq"],
                r["at"],
                r["actor"],
                r["tenant_id"],
                r["action"],
                r["target"],
                r["outcome"],
                json.loads(r["detail"]),
            )
            for r in reversed(rows)
        ]

    # --- renaming and deleting (relay.admin_edits) ---------------------------------------
    async def rename_tenant(self, tenant_id: str, name: str) -> None:
        await self._update_one(
            "UPDATE tenants SET name = ? WHERE id = ?", (name, tenant_id), "tenant"
        )

    async def rename_user(self, user_id: str, name: str) -> None:
        await self._update_one("UPDATE users SET name = ? WHERE id = ?", (name, user_id), "user")

    async def rename_device(self, device_id: str, name: str, location: str | None) -> None:
        await self._update_one(
            "UPDATE devices SET name = ?, location = coalesce(?, location) WHERE id = ?",
            (name, location, device_id),
            "device",
        )

    async def rename_policy(self, policy_id: str, name: str) -> None:
        await self._update_one(
            "UPDATE policies SET name = ? WHERE id = ?", (name, policy_id), "policy"
        )

    async def devices_signed_in_as(self, user_id: str) -> list[str]:
        rows = self._all("SELECT id FROM devices WHERE user_id = ? ORDER BY id", user_id)
        return [r["id"] for r in rows]

    async def delete_user(self, user_id: str, now: float) -> None:
        """The account, its pairings and lock states gone, its laptop credentials revoked."""
        await self._write(
            (
                "UPDATE credentials SET revoked_at = ? WHERE subject_kind = 'user'"
                " AND subject_id = ? AND revoked_at IS NULL",
                (now, user_id),
                False,
            ),
            ("DELETE FROM pairings WHERE user_id = ?", (user_id,), False),
            ("DELETE FROM lock_states WHERE user_id = ?", (user_id,), False),
            ("DELETE FROM users WHERE id = ?", (user_id,), False),
        )

    async def delete_policy(self, policy_id: str) -> None:
        """The policy gone; whoever had it falls back to the default."""
        await self._write(
            ("UPDATE users SET policy_id = NULL WHERE policy_id = ?", (policy_id,), False),
            ("UPDATE devices SET policy_id = NULL WHERE policy_id = ?", (policy_id,), False),
            (
                "UPDATE tenants SET default_policy_id = NULL WHERE default_policy_id = ?",
                (policy_id,),
                False,
            ),
            ("DELETE FROM policies WHERE id = ?", (policy_id,), False),
        )

    async def tenant_admins(self, tenant_id: str) -> list[AdminRecord]:
        rows = self._all("SELECT * FROM admins WHERE tenant_id = ? ORDER BY id", tenant_id)
        return [
            AdminRecord(r["id"], r["name"], r["role"], r["tenant_id"], r["created_at"])
            for r in rows
        ]

    async def delete_tenant(self, tenant_id: str) -> None:
        """An empty tenant gone, with its policies and its device administrators (and their
        credentials: a deleted administrator's token stops working)."""
        await self._write(
            (
                "DELETE FROM admin_credentials WHERE admin_id IN"
                " (SELECT id FROM admins WHERE tenant_id = ?)",
                (tenant_id,),
                False,
            ),
            ("DELETE FROM admins WHERE tenant_id = ?", (tenant_id,), False),
            ("UPDATE tenants SET default_policy_id = NULL WHERE id = ?", (tenant_id,), False),
            ("DELETE FROM policies WHERE tenant_id = ?", (tenant_id,), False),
            ("DELETE FROM credentials WHERE tenant_id = ?", (tenant_id,), False),
            ("DELETE FROM tenants WHERE id = ?", (tenant_id,), False),
        )


def _console(row: Any) -> ConsolePairing:
    return ConsolePairing(row["console_id"], row["room_id"], row["tenant_id"], row["created_at"])
