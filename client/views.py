"""What the laptop client shows: typed views of its state, one model per answer.

The core (:mod:`client.core`) builds these; the control socket (:mod:`client.api`) sends
them as JSON; the command line (``client status --json`` and the others) and the tray
read them back with the same models (:mod:`client.operations` names which command
answers with which view). Pure data (pydantic), no I/O. Field order is the JSON's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from relay.protocol import wire

HandoffState = Literal["pending", "active", "failed", "released"]


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- ``status`` ---------------------------------------------------------------------------


class RelayView(View):
    url: str
    connected: bool
    error: str | None
    connections: int
    tenant_id: str | None
    user_id: str | None


class ScanView(View):
    status: str
    mode: str | None
    adverts_heard: int
    reports_sent: int
    nearby: int


class AppliedLock(View):
    """The latest lock state a phone applied (``lock.applied``)."""

    seq: int
    state: wire.LockState


class LockView(View):
    watch: str
    session: str | None
    locked: bool | None
    sync: bool
    unsent: bool
    last_reported: wire.LockState | None
    last_error: str | None
    applied: dict[str, AppliedLock]


class PendingView(View):
    """The pair request this laptop is part of, until it completes or ends."""

    request_id: str
    phone_id: str
    phone_name: str
    code: str
    expires_at: float
    confirmed_by_me: bool


class HandoffView(View):
    handoff_id: str
    phone_id: str
    meeting_id: str
    state: HandoffState
    reason: str


class Status(View):
    laptop_id: str
    laptop_name: str
    relay: RelayView
    scan: ScanView
    lock: LockView
    pairings: list[wire.PairingInfo]
    pending: PendingView | None
    audio: HandoffView | None
    meeting_id: str | None
    settings_file: str | None = None  # the client.toml in use (the daemon adds it)


# --- the other answers --------------------------------------------------------------------


class NearbyEntry(View):
    """One room or phone heard and named by the relay (``nearby``: nearest first)."""

    device_id: str
    name: str
    kind: str
    mode: str
    location: str
    own: bool
    connectable: bool
    paired: bool
    distance_m: float
    rssi: float
    age_s: float


class PairStarted(View):
    request_id: str
    code: str
    phone_id: str
    phone_name: str
    expires_at: float


class PairConfirmed(View):
    request_id: str
    state: str


class PairOutcome(View):
    """How a pair request ended: paired (with the pairing), declined, expired, or pending."""

    request_id: str
    outcome: str
    pairing: wire.PairingInfo | None = None


class Unpaired(View):
    phone_id: str
    paired: Literal[False] = False


class LockSyncView(View):
    lock_sync: bool


class MeetingView(View):
    meeting_id: str | None


class JoinView(View):
    join_id: str
    room_id: str
    meeting_id: str
    outcome: str


class ConnectedView(View):
    connected: bool
    error: str | None


class ReloginView(View):
    relay_url: str


class Stopping(View):
    stopping: Literal[True] = True


# --- the tray ------------------------------------------------------------------------------


class NearbyRoom(View):
    room_id: str
    name: str
    distance_m: float | None = None


class NearbyPhone(View):
    """A phone of mine heard nearby and not paired yet."""

    phone_id: str
    name: str
    distance_m: float | None = None


class PairedPhone(View):
    phone_id: str
    name: str
    online: bool = True


class PendingPairing(View):
    """A pairing waiting for a confirmation: mine (``needs_my_confirmation``) or the phone's."""

    phone_id: str
    name: str
    needs_my_confirmation: bool


class JoinOutcome(View):
    """A room's answer to the latest join request of this laptop."""

    join_id: str
    room_name: str
    outcome: str  # accepted, declined, expired, pending, refused…
    meeting_id: str


class PairingCode(View):
    """The code of the pairing in progress (both screens show it)."""

    request_id: str
    phone_name: str
    code: str


class TrayState(View):
    """What the laptop client knows and the tray shows."""

    relay_connected: bool = False
    rooms: tuple[NearbyRoom, ...] = ()
    phones: tuple[NearbyPhone, ...] = ()
    paired: tuple[PairedPhone, ...] = ()
    pending: PendingPairing | None = None
    lock_sync: bool = False
    audio_phone_id: str | None = None
    meeting_id: str | None = None
    pairing_code: PairingCode | None = None
    last_join: JoinOutcome | None = None
