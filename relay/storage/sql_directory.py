"""The directory writes whose SQL reads the same in every SQL store, written once.

A store mixes in :class:`DirectoryWrites` and says how to run them: ``_statement`` builds
its own statement object from SQL written with ``?`` placeholders (PostgreSQL's driver
wants ``%s``: :func:`percent_placeholders`), and ``_directory_write`` runs statements in
one transaction of directory changes, returning each one's outcome (the row count, for
these). Writes whose SQL differs between the dialects stay in each store.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from relay.domain.model import Credential, Device, User
from relay.storage import store_rows

DEVICE_INSERT = (
    "INSERT INTO devices (id, tenant_id, name, kind, mode, identity_key, rotation_exponent,"
    " location, mac, state, user_id, policy_id, capabilities)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
CREDENTIAL_INSERT = (
    "INSERT INTO credentials (id, token_hash, subject_kind, subject_id, tenant_id,"
    " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@functools.cache
def percent_placeholders(sql: str) -> str:
    """``sql`` with ``%s`` placeholders instead of ``?`` (none of these statements holds a
    literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


class DirectoryWrites:
    """The part of :class:`relay.domain.store.DirectoryStore` every SQL store shares."""

    def _statement(
        self, sql: str, params: Any, *, many: bool = False, expect_one: str | None = None
    ) -> Any:
        raise NotImplementedError

    async def _directory_write(self, *statements: Any) -> list[Any]:
        raise NotImplementedError

    async def _update_one(self, sql: str, params: tuple[Any, ...], what: str) -> None:
        await self._directory_write(self._statement(sql, params, expect_one=f"no such {what}"))

    async def set_default_policy(self, tenant_id: str, policy_id: str | None) -> None:
        await self._update_one(
            "UPDATE tenants SET default_policy_id = ? WHERE id = ?",
            (policy_id, tenant_id),
            "tenant",
        )

    async def add_user(self, user: User) -> None:
        await self.add_users([user])

    async def add_users(self, users: Sequence[User]) -> None:
        await self._directory_write(
            self._statement(
                "INSERT INTO users (id, tenant_id, name, policy_id) VALUES (?, ?, ?, ?)",
                [(u.id, u.tenant_id, u.name, u.policy_id) for u in users],
                many=True,
            )
        )

    async def set_user_policy(self, user_id: str, policy_id: str | None) -> None:
        await self._update_one(
            "UPDATE users SET policy_id = ? WHERE id = ?", (policy_id, user_id), "user"
        )

    async def add_device(self, device: Device) -> None:
        await self.add_devices([device])

    async def add_devices(self, devices: Sequence[Device]) -> None:
        await self._directory_write(
            self._statement(
                DEVICE_INSERT, [store_rows.device_values(d) for d in devices], many=True
            )
        )

    async def set_device_policy(self, device_id: str, policy_id: str | None) -> None:
        await self._update_one(
            "UPDATE devices SET policy_id = ? WHERE id = ?", (policy_id, device_id), "device"
        )

    async def add_credentials(self, credentials: Sequence[Credential]) -> None:
        await self._directory_write(
            self._statement(
                CREDENTIAL_INSERT,
                [
                    (
                        c.id,
                        c.token_hash,
                        c.subject_kind,
                        c.subject_id,
                        c.tenant_id,
                        c.created_at,
                        c.revoked_at,
                    )
                    for c in credentials
                ],
                many=True,
            )
        )

    async def revoke_credential(self, credential_id: str, now: float) -> bool:
        (count,) = await self._directory_write(
            self._statement(
                "UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, credential_id),
            )
        )
        return bool(count == 1)

    # --- renaming (relay.admin.edits) --------------------------------------------------
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


__all__ = ["CREDENTIAL_INSERT", "DEVICE_INSERT", "DirectoryWrites", "percent_placeholders"]
