"""What the laptop hears and what the relay says it is: sighting batches, descriptors, ranking.

Pure: adverts (already decoded to EID, RSSI, calibrated power) and the time come in;
out come the next ``sightings.report`` batch, the device an EID stands for, and the
ranked list of nearby rooms and phones with their names.

The relay is the only one who knows who an EID is, so the :class:`SightingBook` keeps
reporting every EID heard within ``fresh_s`` (at most
:data:`~relay.protocol.wire.MAX_SIGHTINGS_PER_REPORT` per batch: resolved ones first,
then the loudest) and remembers the descriptors of those the relay resolved. EIDs
rotate; the device id does not, so proximity is tracked by device id and the caller
feeds a :class:`~client.proximity.tracker.ProximityTracker` only with resolved adverts.
Times are monotonic seconds.

With a scanner that does not report every advert (BlueZ's passive scanning signals a
still beacon once), ``hold_until_lost`` keeps the latest EID of each address fresh
until :meth:`SightingBook.lost` says the radio stack lost that address.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.proximity.tracker import RankedDevice
from relay.protocol import wire

PHONE_KINDS = frozenset({"desk_phone", "conference_phone"})


@dataclass(slots=True)
class _Heard:
    rssi: int
    tx_power: int
    last: float
    reported: bool = False


@dataclass(frozen=True, slots=True)
class NearbyDevice:
    """One room or phone nearby, nearest first in a ranking."""

    device_id: str
    name: str
    kind: str
    mode: str
    location: str
    own: bool
    capabilities: tuple[str, ...]
    distance_m: float
    rssi: float
    last_seen: float

    @property
    def is_room(self) -> bool:
        return self.kind == "room_system"

    @property
    def is_phone(self) -> bool:
        return self.kind in PHONE_KINDS

    @property
    def connectable(self) -> bool:
        """A phone this user may pair with: their own personal desk phone."""
        return self.own and self.kind == "desk_phone" and self.mode == "personal"


class SightingBook:
    """EIDs heard, the next batch to report, and what the relay resolved them to."""

    def __init__(self, fresh_s: float = 3.0, forget_after_s: float = 10.0) -> None:
        self.fresh_s = fresh_s
        self.forget_after_s = forget_after_s
        self._heard: dict[bytes, _Heard] = {}
        self._device_of_eid: dict[bytes, str] = {}
        self._descriptors: dict[str, wire.DeviceDescriptor] = {}
        self._device_seen: dict[str, float] = {}
        self._eid_of_address: dict[str, bytes] = {}  # the EID each address sent last
        self.hold_until_lost = False

    def heard(
        self, eid: bytes, rssi: int, tx_power: int, t: float, address: str | None = None
    ) -> str | None:
        """Record an advert; the device id if the relay already resolved this EID."""
        if address is not None:
            self._eid_of_address[address] = eid
        entry = self._heard.get(eid)
        if entry is None:
            self._heard[eid] = _Heard(rssi, tx_power, t)
        else:
            entry.rssi, entry.tx_power, entry.last = rssi, tx_power, t
        device_id = self._device_of_eid.get(eid)
        if device_id is not None:
            self._device_seen[device_id] = t
        return device_id

    def lost(self, address: str) -> list[str]:
        """The radio stack lost ``address``: its EID is no longer held; the device ids it was."""
        eid = self._eid_of_address.pop(address, None)
        if eid is None or eid in self._eid_of_address.values():
            return []
        self._heard.pop(eid, None)
        device_id = self._device_of_eid.get(eid)
        return [device_id] if device_id is not None else []

    def _held(self) -> set[bytes]:
        return set(self._eid_of_address.values()) if self.hold_until_lost else set()

    def batch(self, t: float) -> list[tuple[bytes, int]]:
        """The (EID, RSSI) pairs to report now: heard within ``fresh_s`` (or held), at most 64."""
        self._forget(t)
        held = self._held()
        fresh = [
            (eid, h)
            for eid, h in self._heard.items()
            if t - h.last <= self.fresh_s or eid in held
        ]
        fresh.sort(
            key=lambda item: (
                item[0] not in self._device_of_eid,  # ours first: keep their sightings fresh
                item[1].reported,  # then EIDs never asked about
                -item[1].rssi,
            )
        )
        return [(eid, h.rssi) for eid, h in fresh[: wire.MAX_SIGHTINGS_PER_REPORT]]

    def resolved(
        self, reported: list[tuple[bytes, int]], devices: list[wire.DeviceDescriptor], t: float
    ) -> list[str]:
        """Take the relay's answer to a batch; returns the device ids newly known."""
        for eid, _ in reported:
            entry = self._heard.get(eid)
            if entry is not None:
                entry.reported = True
        new: list[str] = []
        for descriptor in devices:
            try:
                eid = bytes.fromhex(descriptor.eid)
            except ValueError:
                continue
            if descriptor.device_id not in self._descriptors:
                new.append(descriptor.device_id)
            self._device_of_eid[eid] = descriptor.device_id
            self._descriptors[descriptor.device_id] = descriptor
            heard = self._heard.get(eid)
            self._device_seen[descriptor.device_id] = heard.last if heard is not None else t
        return new

    def tx_power(self, eid: bytes) -> int | None:
        entry = self._heard.get(eid)
        return entry.tx_power if entry is not None else None

    def descriptor(self, device_id: str) -> wire.DeviceDescriptor | None:
        return self._descriptors.get(device_id)

    def descriptors(self) -> list[wire.DeviceDescriptor]:
        return list(self._descriptors.values())

    def _forget(self, t: float) -> None:
        horizon = t - self.forget_after_s
        held = self._held()  # present, says the radio stack, however long ago last heard
        held_devices = {self._device_of_eid[e] for e in held if e in self._device_of_eid}
        for eid in [e for e, h in self._heard.items() if h.last < horizon and e not in held]:
            del self._heard[eid]
            self._device_of_eid.pop(eid, None)
        for device_id in [
            d for d, seen in self._device_seen.items() if seen < horizon and d not in held_devices
        ]:
            del self._device_seen[device_id]
            self._descriptors.pop(device_id, None)


def rank_nearby(
    ranking: list[RankedDevice], descriptor_of: dict[str, wire.DeviceDescriptor]
) -> list[NearbyDevice]:
    """The tracker's ranking joined with the relay's descriptors (unknown ids are left out)."""
    out: list[NearbyDevice] = []
    for ranked in ranking:
        d = descriptor_of.get(ranked.device_id)
        if d is None:
            continue
        out.append(
            NearbyDevice(
                device_id=d.device_id,
                name=d.name,
                kind=d.kind,
                mode=d.mode,
                location=d.location,
                own=d.own,
                capabilities=tuple(d.capabilities),
                distance_m=ranked.distance_m,
                rssi=ranked.rssi,
                last_seen=ranked.last_seen,
            )
        )
    return out
