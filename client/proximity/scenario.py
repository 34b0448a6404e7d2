"""Scenario files: a simulated floor, a laptop's walk across it, and the true room over time.

A scenario is TOML, untrusted input, validated strictly (unknown keys, wrong types,
non-finite numbers, out-of-range values and inconsistent references are all errors that
name the offending entry):

    [radio]
    path_loss_exponent = 2.0      # n in the log-distance model
    noise_db = 6.0                # shadowing standard deviation, per advert
    advert_interval_ms = 100      # every room device advertises this often (+ up to 10 ms)
    seed = 1                      # the simulation's randomness

    [[room]]                      # one per room device
    name = "north"
    x = 0.0                       # metres
    y = 0.0
    tx_power = -59                # optional: dBm at 1 m (default -59)

    [[wall]]                      # optional, any number
    x1 = 4.0
    y1 = -5.0
    x2 = 4.0
    y2 = 5.0
    loss_db = 6.0

    [[laptop]]                    # exactly one
    path = [{t = 0, x = 1, y = 0}, {t = 60, x = 7, y = 0}]   # straight lines between
    room_at = [{t = 0, room = "north"}, {t = 30, room = "south"}]

The simulation runs from the first waypoint's time to the last one's; before its first
waypoint and after its last the laptop does not move. ``room_at`` gives the true room
from each ``t`` on; its first entry must be at or before the path's start.
"""

from __future__ import annotations

import bisect
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hw.radio_model import DEFAULT_TX_POWER, RadioModel, Wall

MAX_ROOMS = 256
MAX_WALLS = 4096
MAX_WAYPOINTS = 100_000
MAX_DURATION_S = 24 * 3600.0
MAX_ADVERTS = 50_000_000  # bounds the work one scenario can ask for
ADVERT_JITTER_S = 0.010  # real advertisers add 0–10 ms to every interval

Coordinate = Annotated[float, Field(ge=-100_000.0, le=100_000.0)]
Seconds = Annotated[float, Field(ge=0.0, le=10 * MAX_DURATION_S)]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says what is wrong and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class RadioSpec(_Strict):
    path_loss_exponent: Annotated[float, Field(ge=1.0, le=6.0)]
    noise_db: Annotated[float, Field(ge=0.0, le=30.0)]
    advert_interval_ms: Annotated[float, Field(ge=20.0, le=10_240.0)]
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)]


class RoomSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    x: Coordinate
    y: Coordinate
    tx_power: Annotated[float, Field(ge=-127.0, le=20.0)] = DEFAULT_TX_POWER


class WallSpec(_Strict):
    x1: Coordinate
    y1: Coordinate
    x2: Coordinate
    y2: Coordinate
    loss_db: Annotated[float, Field(ge=0.0, le=100.0)]


class Waypoint(_Strict):
    t: Seconds
    x: Coordinate
    y: Coordinate


class TrueRoom(_Strict):
    t: Seconds
    room: Annotated[str, Field(min_length=1, max_length=64)]


class LaptopSpec(_Strict):
    path: Annotated[list[Waypoint], Field(min_length=2, max_length=MAX_WAYPOINTS)]
    room_at: Annotated[list[TrueRoom], Field(min_length=1, max_length=MAX_WAYPOINTS)]

    @model_validator(mode="after")
    def _times_in_order(self) -> LaptopSpec:
        for i in range(1, len(self.path)):
            if self.path[i].t <= self.path[i - 1].t:
                raise ValueError(
                    f"path[{i}].t = {self.path[i].t} must be later than "
                    f"path[{i - 1}].t = {self.path[i - 1].t}"
                )
        if self.path[-1].t - self.path[0].t > MAX_DURATION_S:
            raise ValueError(f"the path lasts more than {MAX_DURATION_S:.0f} s")
        for i in range(1, len(self.room_at)):
            if self.room_at[i].t <= self.room_at[i - 1].t:
                raise ValueError(
                    f"room_at[{i}].t = {self.room_at[i].t} must be later than "
                    f"room_at[{i - 1}].t = {self.room_at[i - 1].t}"
                )
        if self.room_at[0].t > self.path[0].t:
            raise ValueError(
                f"room_at[0].t = {self.room_at[0].t} is after the path starts "
                f"(t = {self.path[0].t}): the true room must be known from the start"
            )
        return self


class ScenarioSpec(_Strict):
    radio: RadioSpec
    room: Annotated[list[RoomSpec], Field(min_length=1, max_length=MAX_ROOMS)]
    wall: Annotated[list[WallSpec], Field(max_length=MAX_WALLS)] = []
    laptop: Annotated[list[LaptopSpec], Field(min_length=1, max_length=1)]

    @model_validator(mode="after")
    def _references_resolve(self) -> ScenarioSpec:
        seen: dict[str, int] = {}
        for i, room in enumerate(self.room):
            if room.name in seen:
                raise ValueError(
                    f"room[{i}].name {room.name!r} is already used by room[{seen[room.name]}]"
                )
            seen[room.name] = i
        for i, entry in enumerate(self.laptop[0].room_at):
            if entry.room not in seen:
                raise ValueError(
                    f"laptop[0].room_at[{i}].room {entry.room!r} is not a [[room]] "
                    f"(known: {', '.join(sorted(seen))})"
                )
        path = self.laptop[0].path
        adverts = (path[-1].t - path[0].t) * 1000.0 / self.radio.advert_interval_ms * len(self.room)
        if adverts > MAX_ADVERTS:
            raise ValueError(
                f"the scenario asks for about {adverts:.0f} adverts; the limit is {MAX_ADVERTS}"
            )
        return self


@dataclass(frozen=True, slots=True)
class Room:
    """One room device: where it is and how loud it is at 1 m."""

    name: str
    position: tuple[float, float]
    tx_power: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario, with the questions the simulator and the scorer ask of it."""

    rooms: tuple[Room, ...]
    radio: RadioModel
    advert_interval_s: float
    seed: int
    path: tuple[tuple[float, float, float], ...]  # (t, x, y)
    room_at: tuple[tuple[float, str], ...]  # (t, room)
    path_times: tuple[float, ...]
    room_at_times: tuple[float, ...]

    @property
    def start(self) -> float:
        return self.path[0][0]

    @property
    def end(self) -> float:
        return self.path[-1][0]

    def position(self, t: float) -> tuple[float, float]:
        """Where the laptop is at time t (straight lines between waypoints)."""
        i = bisect.bisect_right(self.path_times, t)
        if i == 0:
            return self.path[0][1], self.path[0][2]
        if i == len(self.path):
            return self.path[-1][1], self.path[-1][2]
        t0, x0, y0 = self.path[i - 1]
        t1, x1, y1 = self.path[i]
        f = (t - t0) / (t1 - t0)
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0)

    def true_room(self, t: float) -> str:
        """The room the laptop is truly in at time t (the last ``room_at`` at or before t)."""
        i = bisect.bisect_right(self.room_at_times, t)
        return self.room_at[max(i, 1) - 1][1]

    def true_changes(self) -> list[tuple[float, str]]:
        """Times strictly inside (start, end) at which the true room changes, and to what."""
        changes: list[tuple[float, str]] = []
        current = self.true_room(self.start)
        for t, room in self.room_at:
            if self.start < t < self.end:
                if room != current:
                    changes.append((t, room))
                current = room
        return changes

    def stationary_intervals(self) -> list[tuple[float, float]]:
        """The [from, to) intervals during which the laptop does not move."""
        out: list[tuple[float, float]] = []
        for (t0, x0, y0), (t1, x1, y1) in zip(self.path, self.path[1:], strict=False):
            if x0 == x1 and y0 == y1:
                if out and out[-1][1] == t0:
                    out[-1] = (out[-1][0], t1)
                else:
                    out.append((t0, t1))
        return out


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _describe(error: ValidationError) -> str:
    lines = []
    for err in error.errors(include_url=False):
        where = _location(tuple(err["loc"]))
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario's TOML text; raise ScenarioError saying what and where."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = ScenarioSpec.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_describe(exc)}") from None
    return _build(spec)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read: {exc}") from None
    return parse_scenario(text, str(p))


def _build(spec: ScenarioSpec) -> Scenario:
    laptop = spec.laptop[0]
    walls = tuple(Wall(w.x1, w.y1, w.x2, w.y2, w.loss_db) for w in spec.wall)
    return Scenario(
        rooms=tuple(Room(r.name, (r.x, r.y), r.tx_power) for r in spec.room),
        radio=RadioModel(
            path_loss_exponent=spec.radio.path_loss_exponent,
            noise_db=spec.radio.noise_db,
            walls=walls,
        ),
        advert_interval_s=spec.radio.advert_interval_ms / 1000.0,
        seed=spec.radio.seed,
        path=tuple((w.t, w.x, w.y) for w in laptop.path),
        room_at=tuple((r.t, r.room) for r in laptop.room_at),
        path_times=tuple(w.t for w in laptop.path),
        room_at_times=tuple(r.t for r in laptop.room_at),
    )
