"""Write the scenario set: ``python scenarios/generate.py`` (re)writes scenarios/*.toml.

Each floor has a rule for the true room at a point (the room whose walls contain it, or
the nearest device on an open floor); the laptop's walks are drawn from a seeded
generator, and ``room_at`` is computed from the path by finding where along each
straight segment the rule's answer changes (to the millisecond).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

Point = tuple[float, float]
WALK_SPEED = 1.2  # m/s


@dataclass
class Floor:
    name: str
    comment: str
    rooms: list[tuple[str, float, float, float | None]]  # name, x, y, tx_power
    walls: list[tuple[float, float, float, float, float]]
    truth: Callable[[Point], str]
    noise_db: float
    path_loss_exponent: float = 2.0
    advert_interval_ms: int = 100
    seed: int = 1
    path: list[tuple[float, float, float]] = field(default_factory=list)

    def at(self, p: Point) -> None:
        self.path = [(0.0, round(p[0], 2), round(p[1], 2))]

    def walk(self, *points: Point) -> None:
        for p in points:
            t, x, y = self.path[-1]
            q = (round(p[0], 2), round(p[1], 2))
            if q == (x, y):
                continue
            self.path.append((round(t + math.dist((x, y), q) / WALK_SPEED, 3), *q))

    def sit(self, seconds: float) -> None:
        t, x, y = self.path[-1]
        self.path.append((round(t + seconds, 3), x, y))

    def room_at(self) -> list[tuple[float, str]]:
        out = [(0.0, self.truth(self.path[0][1:]))]
        for (t0, x0, y0), (t1, x1, y1) in zip(self.path, self.path[1:], strict=False):
            if (x0, y0) == (x1, y1):
                continue

            def pos(
                t: float, t0: float = t0, t1: float = t1, a: Point = (x0, y0), b: Point = (x1, y1)
            ) -> Point:
                f = (t - t0) / (t1 - t0)
                return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])

            steps = max(1, int((t1 - t0) / 0.01))
            prev_t, prev = t0, self.truth(pos(t0))
            for k in range(1, steps + 1):
                t = t0 + (t1 - t0) * k / steps
                room = self.truth(pos(t))
                if room != prev:
                    lo, hi = prev_t, t
                    while hi - lo > 1e-4:
                        mid = (lo + hi) / 2
                        lo, hi = (mid, hi) if self.truth(pos(mid)) == prev else (lo, mid)
                    change = round(hi, 3)
                    if change > out[-1][0] and room != out[-1][1]:
                        out.append((change, room))
                    prev = room
                prev_t = t
        return out

    def toml(self) -> str:
        lines = [f"# {line}".rstrip() for line in self.comment.strip().splitlines()]
        lines += [
            "# Written by scenarios/generate.py; edit that, not this.",
            "",
            "[radio]",
            f"path_loss_exponent = {self.path_loss_exponent}",
            f"noise_db = {self.noise_db}",
            f"advert_interval_ms = {self.advert_interval_ms}",
            f"seed = {self.seed}",
        ]
        for name, x, y, tx in self.rooms:
            lines += ["", "[[room]]", f'name = "{name}"', f"x = {x}", f"y = {y}"]
            if tx is not None:
                lines.append(f"tx_power = {tx}")
        for x1, y1, x2, y2, loss in self.walls:
            lines += [
                "",
                "[[wall]]",
                f"x1 = {x1}",
                f"y1 = {y1}",
                f"x2 = {x2}",
                f"y2 = {y2}",
                f"loss_db = {loss}",
            ]
        lines += ["", "[[laptop]]", "path = ["]
        lines += [f"  {{t = {t}, x = {x}, y = {y}}}," for t, x, y in self.path]
        lines += ["]", "room_at = ["]
        lines += [f'  {{t = {t}, room = "{room}"}},' for t, room in self.room_at()]
        lines += ["]", ""]
        return "\n".join(lines)


def nearest(rooms: list[tuple[str, float, float, float | None]]) -> Callable[[Point], str]:
    def truth(p: Point) -> str:
        return min(rooms, key=lambda r: math.dist(p, (r[1], r[2])))[0]

    return truth


def adjacent_rooms() -> Floor:
    rooms: list[tuple[str, float, float, float | None]] = [
        ("west", 3.0, 3.5, None),
        ("east", 9.0, 3.5, None),
    ]
    floor = Floor(
        "adjacent-rooms",
        """Two 6 x 5 m rooms sharing a wall (x = 6, 6 dB) with a door at its south end
(y 0-1); a device at each room's centre.  The laptop sits at desks in both rooms,
two of them 1 m from the shared wall, and walks through the door between them.""",
        rooms,
        [(6.0, 1.0, 6.0, 5.0, 6.0)],
        lambda p: "west" if p[0] < 6 else "east",
        noise_db=4.0,
        seed=11,
    )
    rng = random.Random(1)
    seats = {
        "west": [(1.5, 4.0), (5.0, 2.5), (2.5, 1.5)],
        "east": [(7.0, 2.5), (10.5, 4.0), (9.5, 1.5)],
    }
    floor.at(seats["west"][0])
    side = "west"
    while floor.path[-1][0] < 2700:
        floor.sit(rng.uniform(45, 200))
        other = "east" if side == "west" else "west"
        if rng.random() < 0.25:  # another desk in the same room
            floor.walk(rng.choice(seats[side]))
            continue
        door_near, door_far = (
            ((5.5, 0.5), (6.5, 0.5)) if side == "west" else ((6.5, 0.5), (5.5, 0.5))
        )
        floor.walk(door_near, door_far, rng.choice(seats[other]))
        side = other
    return floor


def corridor() -> Floor:
    rooms: list[tuple[str, float, float, float | None]] = [
        (f"room-{k + 1}", 5.0 * k + 2.5, 4.5, None) for k in range(5)
    ]
    walls: list[tuple[float, float, float, float, float]] = []
    for k in range(5):  # corridor wall with a door at x 5k+0.5 .. 5k+1.5
        walls.append((5.0 * k, 2.0, 5.0 * k + 0.5, 2.0, 5.0))
        walls.append((5.0 * k + 1.5, 2.0, 5.0 * k + 5.0, 2.0, 5.0))
    walls += [(5.0 * k, 2.0, 5.0 * k, 7.0, 5.0) for k in range(6)]
    floor = Floor(
        "corridor",
        """A 25 m corridor (y 0-2) past five 5 x 5 m rooms (y 2-7), devices at the rooms'
centres, 5 dB walls between rooms and along the corridor (one door per room).  In the
corridor the true room is the one being passed.  The laptop walks the whole corridor
again and again, and now and then goes into a room to sit.""",
        rooms,
        walls,
        lambda p: f"room-{min(4, max(0, int(p[0] // 5))) + 1}",
        noise_db=5.0,
        seed=12,
    )
    rng = random.Random(2)
    floor.at((0.2, 1.0))
    end = 0.2
    while floor.path[-1][0] < 2700:
        end = 24.8 if end == 0.2 else 0.2
        if rng.random() < 0.4:
            k = rng.randrange(5)
            door = (5.0 * k + 1.0, 1.0)
            seat = (5.0 * k + rng.uniform(1.0, 4.0), rng.uniform(3.5, 6.5))
            floor.walk(door, (door[0], 2.5), seat)
            floor.sit(rng.uniform(120, 300))
            floor.walk((door[0], 2.5), door)
        floor.walk((end, 1.0))
        floor.sit(rng.uniform(2, 20))
    return floor


def boundary() -> Floor:
    rooms: list[tuple[str, float, float, float | None]] = [
        ("left", 0.0, 0.0, None),
        ("right", 8.0, 0.0, None),
    ]
    floor = Floor(
        "boundary-still",
        """Open plan, two devices 8 m apart; the laptop sits still for an hour 0.5 m to the
left of the midpoint (3.5 m from one device, 4.5 m from the other: 2.2 dB apart on
average, well inside the 6 dB noise).  Only flapping can cost here.""",
        rooms,
        [],
        nearest(rooms),
        noise_db=6.0,
        seed=13,
    )
    floor.at((3.5, 0.0))
    floor.sit(3600)
    return floor


def large_room() -> Floor:
    rooms: list[tuple[str, float, float, float | None]] = [
        ("hall-front", 5.0, 6.0, -59.0),
        ("hall-back", 15.0, 6.0, -66.0),
    ]
    floor = Floor(
        "large-room",
        """A 20 x 12 m hall with two devices 10 m apart that advertise different powers
(-59 and -66 dBm at 1 m): distance must come from the calibrated power, not raw RSSI.
The true device is the nearer one.  The laptop moves between seats anywhere in the hall
(some far from both devices) except within 1.5 m of the midline, where "the nearer one"
is a difference of under 1.3 dB that no tracker could resolve in a few seconds.""",
        rooms,
        [],
        nearest(rooms),
        noise_db=5.0,
        seed=14,
    )
    rng = random.Random(4)
    floor.at((3.0, 3.0))
    while floor.path[-1][0] < 3600:
        floor.sit(rng.uniform(20, 120))
        x = rng.choice([rng.uniform(0.5, 8.5), rng.uniform(11.5, 19.5)])
        floor.walk((x, rng.uniform(0.5, 11.5)))
    return floor


def open_plan(noise_db: float, name: str, seed: int) -> Floor:
    rooms: list[tuple[str, float, float, float | None]] = [
        (f"desk-{r}{c}", 8.0 * c, 8.0 * r, None) for r in range(3) for c in range(3)
    ]
    floor = Floor(
        name,
        f"""An open-plan floor: nine devices in a 3 x 3 grid 8 m apart, no walls, noise
{noise_db} dB.  The true device is the nearest.  The laptop works at a desk for a few
minutes (0.5-2.5 m from its device), then walks straight to another.""",
        rooms,
        [],
        nearest(rooms),
        noise_db=noise_db,
        seed=seed,
    )
    rng = random.Random(seed)

    def seat(k: int) -> Point:
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 2.5)
        return rooms[k][1] + r * math.cos(a), rooms[k][2] + r * math.sin(a)

    k = 4
    floor.at(seat(k))
    while floor.path[-1][0] < 3600:
        floor.sit(rng.uniform(60, 360))
        k = rng.choice([j for j in range(9) if j != k])
        floor.walk(seat(k))
    return floor


def main() -> None:
    here = Path(__file__).parent
    floors = [
        adjacent_rooms(),
        corridor(),
        boundary(),
        large_room(),
        open_plan(6.0, "open-plan", 15),
        open_plan(9.0, "high-noise", 16),
    ]
    for floor in floors:
        (here / f"{floor.name}.toml").write_text(floor.toml(), encoding="utf-8")
        print(f"{floor.name}: {floor.path[-1][0]:.0f} s, {len(floor.room_at()) - 1} changes")


if __name__ == "__main__":
    main()
