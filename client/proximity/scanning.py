"""From raw adverts to sightings: decode our frame, recognise known keys, track NEW/CHG/DEL.

Pure: events and the current time come in, sighting events go out.  A beacon is
tracked by its address; it is *new* when first heard, *changed* when its EID or name
changes or its RSSI has moved by at least ``rssi_step_db`` since last reported, and
*lost* when the OS stack forgets it (:class:`~hw.scanner.AdvertLost`) or, when the
scanner reports every advert it hears, when it has not been heard for
``lost_after_s``.  With a scanner that does not (``lost_after_s=None``: BlueZ's passive
scanning signals a still beacon once), silence proves nothing and only the stack's
word counts: the scanner's advertisement monitor hears ``DeviceLost`` when BlueZ has
not heard the beacon for its lost timeout, and BlueZ removes a device its
TemporaryTimeout (30 s by default) after it last heard it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog

from hw.radio_model import distance_from_rssi
from hw.scanner import AdvertLost, RawAdvert
from relay.protocol.eid import eids_around, window_start
from relay.protocol.frame import DEFAULT_COMPANY_ID, decode_manufacturer_data

DEFAULT_LOST_AFTER_S = 10.0
DEFAULT_RSSI_STEP_DB = 3.0
_log = structlog.get_logger(__name__)

EventKind = Literal["new", "change", "lost"]


@dataclass(frozen=True, slots=True)
class Sighting:
    """One beacon heard: its address, current EID, loudness and when."""

    address: str
    eid: bytes
    rssi: int
    tx_power: int
    rotation_exponent: int
    t: float  # wall-clock seconds
    monotonic: float
    name: str | None = None

    @property
    def distance_m(self) -> float:
        """Estimated distance from the path-loss model, for this one reading."""
        return distance_from_rssi(self.rssi, self.tx_power)


@dataclass(frozen=True, slots=True)
class SightingEvent:
    kind: EventKind
    sighting: Sighting

    def as_json(self) -> dict[str, object]:
        s = self.sighting
        return {
            "event": self.kind,
            "address": s.address,
            "eid": s.eid.hex(),
            "rssi": s.rssi,
            "tx_power": s.tx_power,
            "distance_m": round(s.distance_m, 2),
            "name": s.name,
            "t": round(s.t, 3),
        }


@dataclass
class KeyRing:
    """Identity keys we may recognise, by name; resolves EIDs around a given time."""

    keys: Mapping[str, bytes]
    neighbours: int = 1
    _cache: dict[tuple[int, int], dict[bytes, str]] = field(default_factory=dict, repr=False)

    def resolve(self, eid: bytes, unix_time: float, k: int) -> str | None:
        window = window_start(int(unix_time), k)
        table = self._cache.get((k, window))
        if table is None:
            table = {}
            for name, key in self.keys.items():
                for candidate in eids_around(key, unix_time, k, self.neighbours):
                    table[candidate.eid] = name
            self._cache = {
                (k, window): table,
                **{kw: t for kw, t in self._cache.items() if kw[0] != k},
            }
        return table.get(eid)


@dataclass
class _Tracked:
    last: Sighting
    reported_rssi: int


class SightingTracker:
    """Turns a stream of scan events into new/change/lost sighting events."""

    def __init__(
        self,
        company_id: int = DEFAULT_COMPANY_ID,
        keys: KeyRing | None = None,
        lost_after_s: float | None = DEFAULT_LOST_AFTER_S,
        rssi_step_db: float = DEFAULT_RSSI_STEP_DB,
    ) -> None:
        self._company_id = company_id
        self._keys = keys
        self._lost_after_s = lost_after_s
        self._rssi_step_db = rssi_step_db
        self._tracked: dict[str, _Tracked] = {}

    @property
    def current(self) -> list[Sighting]:
        return [t.last for t in self._tracked.values()]

    def on_advert(self, advert: RawAdvert) -> list[SightingEvent]:
        frame = decode_manufacturer_data(advert.manufacturer_data, self._company_id)
        if frame is None:
            return []
        name = None
        if self._keys is not None:
            name = self._keys.resolve(frame.eid, advert.wall, frame.rotation_exponent)
        sighting = Sighting(
            address=advert.address,
            eid=frame.eid,
            rssi=advert.rssi,
            tx_power=frame.tx_power,
            rotation_exponent=frame.rotation_exponent,
            t=advert.wall,
            monotonic=advert.monotonic,
            name=name,
        )
        tracked = self._tracked.get(advert.address)
        if tracked is None:
            self._tracked[advert.address] = _Tracked(sighting, sighting.rssi)
            return [SightingEvent("new", sighting)]
        previous = tracked.last
        tracked.last = sighting
        if (
            sighting.eid != previous.eid
            or sighting.name != previous.name
            or abs(sighting.rssi - tracked.reported_rssi) >= self._rssi_step_db
        ):
            tracked.reported_rssi = sighting.rssi
            return [SightingEvent("change", sighting)]
        return []

    def on_lost(self, lost: AdvertLost) -> list[SightingEvent]:
        tracked = self._tracked.pop(lost.address, None)
        if tracked is None:
            return []
        return [SightingEvent("lost", tracked.last)]

    def expire(self, monotonic_now: float) -> list[SightingEvent]:
        """Report beacons not heard for ``lost_after_s`` as lost (none when it is None)."""
        if self._lost_after_s is None:
            return []
        cutoff = monotonic_now - self._lost_after_s
        gone = [a for a, t in self._tracked.items() if t.last.monotonic < cutoff]
        return [SightingEvent("lost", self._tracked.pop(a).last) for a in gone]
