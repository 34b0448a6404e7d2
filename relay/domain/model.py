"""The relay's domain records: tenants, accounts, devices, policies, credentials, pairings, locks.

Plain frozen dataclasses, shared by the store (which persists them) and the service
(which decides with them). Enumerated values are the wire protocol's strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from relay.protocol.wire import DeviceKind, DeviceMode, LockState

DeviceState = Literal["waiting_for_activation", "waiting_for_sign_in", "signed_in"]
AllowBetterTogether = Literal["Enabled", "Disabled"]
ProximityJoin = Literal["auto", "prompt", "off"]
SubjectKind = Literal["user", "device"]
AdminRole = Literal["owner", "device_admin"]


class Capability(StrEnum):
    LOCK = "lock"
    AUDIO = "audio"
    JOIN = "join"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    default_policy_id: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A named policy; subjects without one use their tenant's default, then these defaults."""

    id: str
    tenant_id: str
    name: str
    allow_better_together: AllowBetterTogether = "Enabled"
    proximity_join: ProximityJoin = "auto"
    beaconing: bool = True


GLOBAL_DEFAULT_POLICY = Policy(id="global-default", tenant_id="", name="Global default")


@dataclass(frozen=True, slots=True)
class User:
    id: str
    tenant_id: str
    name: str
    policy_id: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    tenant_id: str
    name: str
    kind: DeviceKind
    mode: DeviceMode
    identity_key: bytes
    rotation_exponent: int
    location: str = ""
    mac: str | None = None
    state: DeviceState = "waiting_for_sign_in"
    user_id: str | None = None
    policy_id: str | None = None
    capabilities: tuple[str, ...] = ()

    @property
    def is_personal_phone(self) -> bool:
        return self.kind == "desk_phone" and self.mode == "personal"


@dataclass(frozen=True, slots=True)
class Credential:
    """A connection credential; only the SHA-256 of the secret token is ever stored."""

    id: str
    token_hash: bytes
    subject_kind: SubjectKind
    subject_id: str
    tenant_id: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class Pairing:
    """A Better Together pairing: a user's laptop (client id) and that user's phone."""

    user_id: str
    laptop_id: str
    laptop_name: str
    phone_id: str
    tenant_id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class LockRecord:
    """A phone's latest desired lock state; ``seq`` grows by one per change."""

    phone_id: str
    seq: int
    state: LockState
    user_id: str
    laptop_id: str
    updated_at: float
    acked_seq: int = 0

    @property
    def pending(self) -> bool:
        return self.acked_seq < self.seq

    def acked(self, seq: int) -> LockRecord:
        """This record with ``seq`` acknowledged (``dataclasses.replace`` looks the fields
        up on every call: this is on every lock round trip)."""
        return LockRecord(
            self.phone_id, self.seq, self.state, self.user_id, self.laptop_id, self.updated_at, seq
        )


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """What a phone's acknowledgement of a lock command found: the phone's record after
    it, and whether it was news (it raised ``acked_seq``) rather than a repeated or late
    ack. Read and written at once, so no other change can come in between."""

    record: LockRecord
    news: bool


@dataclass(frozen=True, slots=True)
class AdminRecord:
    """An administrator: an owner (every tenant) or a device administrator of one tenant."""

    id: str
    name: str
    role: AdminRole
    tenant_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class AdminCredential:
    """An administrator's credential (``ac_…``); like every credential, stored hashed."""

    id: str
    admin_id: str
    created_at: float
    revoked_at: float | None = None


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


ChangeKind = Literal["tenants", "policies", "users", "devices", "credentials"]


@dataclass(frozen=True, slots=True)
class DirectoryChange:
    """One row of the directory that changed at ``version`` (added, edited or deleted)."""

    version: int
    kind: ChangeKind
    id: str
