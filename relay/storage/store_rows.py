"""Database rows to the relay's records and back, shared by every SQL store.

A row is anything indexed by column name (``sqlite3.Row``, psycopg's dict rows); the
columns are the same in every backend's schema.
"""

from __future__ import annotations

from typing import Any

from relay.domain.model import (
    AdminCredential,
    AdminRecord,
    ConsolePairing,
    Credential,
    Device,
    LockRecord,
    Pairing,
    Policy,
    Tenant,
    User,
)


def device(row: Any) -> Device:
    caps = row["capabilities"]
    return Device(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        kind=row["kind"],
        mode=row["mode"],
        identity_key=bytes(row["identity_key"]),
        rotation_exponent=row["rotation_exponent"],
        location=row["location"],
        mac=row["mac"],
        state=row["state"],
        user_id=row["user_id"],
        policy_id=row["policy_id"],
        capabilities=tuple(caps.split(",")) if caps else (),
    )


def device_values(d: Device) -> tuple[Any, ...]:
    """The columns of ``devices`` in insertion order."""
    return (
        d.id,
        d.tenant_id,
        d.name,
        d.kind,
        d.mode,
        d.identity_key,
        d.rotation_exponent,
        d.location,
        d.mac,
        d.state,
        d.user_id,
        d.policy_id,
        ",".join(d.capabilities),
    )


def pairing(row: Any) -> Pairing:
    return Pairing(
        user_id=row["user_id"],
        laptop_id=row["laptop_id"],
        laptop_name=row["laptop_name"],
        phone_id=row["phone_id"],
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
    )


def credential(row: Any) -> Credential:
    return Credential(
        id=row["id"],
        token_hash=bytes(row["token_hash"]),
        subject_kind=row["subject_kind"],
        subject_id=row["subject_id"],
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def credential_values(c: Credential) -> tuple[Any, ...]:
    """The columns of ``credentials`` in insertion order (a new credential: not revoked)."""
    return (c.id, c.token_hash, c.subject_kind, c.subject_id, c.tenant_id, c.created_at, None)


def admin(row: Any) -> AdminRecord:
    return AdminRecord(row["id"], row["name"], row["role"], row["tenant_id"], row["created_at"])


def admin_credential(row: Any) -> AdminCredential:
    return AdminCredential(row["id"], row["admin_id"], row["created_at"], row["revoked_at"])


def console(row: Any) -> ConsolePairing:
    return ConsolePairing(row["console_id"], row["room_id"], row["tenant_id"], row["created_at"])


def lock(row: Any) -> LockRecord:
    return LockRecord(
        phone_id=row["phone_id"],
        seq=row["seq"],
        state=row["state"],
        user_id=row["user_id"],
        laptop_id=row["laptop_id"],
        updated_at=row["updated_at"],
        acked_seq=row["acked_seq"],
    )


def policy(row: Any) -> Policy:
    return Policy(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        allow_better_together=row["allow_better_together"],
        proximity_join=row["proximity_join"],
        beaconing=bool(row["beaconing"]),
    )


def tenant(row: Any) -> Tenant:
    return Tenant(row["id"], row["name"], row["default_policy_id"])


def user(row: Any) -> User:
    return User(row["id"], row["tenant_id"], row["name"], row["policy_id"])
