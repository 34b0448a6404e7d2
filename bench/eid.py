"""EID resolution at 10,000, 100,000 and 1,000,000 devices, against the resolver it replaced.

    ./dev.sh bench eid                                   # 10k, 100k, 1M; baseline up to 100k
    python -P bench/eid.py --sizes 10000 --seconds 1     # a quick look
    python -P bench/eid.py --keep /var/tmp/eid-dbs       # keep (and reuse) the generated DBs

For each size a SQLite database of generated devices is made with bulk inserts (100
tenants, every device signed in, rotation exponent K = 10 as provisioning issues, so
every device rotates at the same instant), then a real :class:`~relay.net.server.RelayServer`
is started on it on 127.0.0.1 and measured:

* **build**: from the relay's start until every device resolves (the new index loads in
  the background; the baseline builds on the first sighting, on the event loop);
* **bytes per device**: the index's own objects (``gc`` walk of everything it holds,
  over the device count), and the relay process's RSS growth per device;
* **sightings per second** through the relay's real sighting path on its one event-loop
  thread: a ``sightings.report`` of 64 EIDs parsed and validated by the wire model
  (``REQUEST_ADAPTER.validate_json``), resolved by ``RelayService.handle``, and its reply
  encoded; three batches: 64 devices of the laptop's own tenant (all returned), 64 of
  other tenants (resolved, then filtered out), 64 unknown EIDs; five rounds of each in
  turn, the best round reported (as ``timeit`` does) with the rounds' median beside it;
* **the longest event-loop stall at a window change**: a separate client process keeps
  two websocket connections to the relay, one sending ``ping`` every 10 ms and one a
  64-EID ``sightings.report`` every 100 ms (the old resolver rebuilds on the first
  sighting after a change); the relay's clock is moved to 3 s before the next window
  change, and the longest ping round trip from 1 s before the change until the relay has
  finished that change's work (plus 2 s) is reported, for ``--changes`` changes in a row,
  next to the longest in the 2 s before the first. The relay's own loop is also timed
  from inside (how late a 1 ms timer fires), which leaves out the client's scheduling.
  The same client also measures the initial load when it outlasts the client's start.

The baseline is the resolver as it was before issue 17 (commit e14be45), copied below
and plugged into the same relay. Every loop is bounded in count and time; nothing
leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btogether.logs import configure_logging
from relay.admin.store_admin import Admin
from relay.config import RelaySettings
from relay.domain.directory import Directory
from relay.domain.model import Device, Tenant
from relay.domain.service import Principal
from relay.net.server import RelayServer
from relay.node import build_node
from relay.protocol import wire
from relay.protocol.eid import (
    eid_at,
    eids_around,
    seconds_until_rotation,
    time_counter,
    window_start,
)
from relay.protocol.link import RelayLink
from relay.storage.sqlite_store import SqliteStore

K = 10
PERIOD = 1 << K
TENANTS = 100
SEED = "btogether-bench-eid"
BATCH = 64
WAIT_LIMIT_S = 900.0  # the longest any one phase may take before the bench gives up


def device_key(n: int) -> bytes:
    return hashlib.blake2b(f"{SEED}:{n}".encode(), digest_size=16).digest()


def device_id(n: int) -> str:
    return f"d_{n:016x}"


def tenant_id(t: int) -> str:
    return f"t_bench{t:04d}"


# --- the baseline: relay/domain/resolver.py and Directory.resolve at commit e14be45 ---------------
@dataclass(frozen=True, slots=True)
class _OldDeviceEids:
    identity_key: bytes
    rotation_exponent: int
    window: int
    eids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class OldEidIndex:
    by_eid: dict[bytes, str]
    valid_until: float
    built_for_version: int
    per_device: dict[str, _OldDeviceEids] = field(default_factory=dict)

    def resolve(self, eid: bytes) -> str | None:
        return self.by_eid.get(eid)

    def stale(self, now: float, directory_version: int) -> bool:
        return now >= self.valid_until or directory_version != self.built_for_version


def old_build_index(
    devices: Iterable[Device],
    now: float,
    directory_version: int,
    neighbours: int = 1,
    previous: OldEidIndex | None = None,
) -> OldEidIndex:
    by_eid: dict[bytes, str] = {}
    per_device: dict[str, _OldDeviceEids] = {}
    old = previous.per_device if previous is not None else {}
    valid_until = math.inf
    counter = time_counter(now)
    for device in devices:
        k = device.rotation_exponent
        window = window_start(counter, k)
        cached = old.get(device.id)
        if (
            cached is None
            or cached.window != window
            or cached.identity_key != device.identity_key
            or cached.rotation_exponent != k
        ):
            eids = tuple(w.eid for w in eids_around(device.identity_key, now, k, neighbours))
            cached = _OldDeviceEids(device.identity_key, k, window, eids)
        per_device[device.id] = cached
        for eid in cached.eids:
            by_eid.setdefault(eid, device.id)
        valid_until = min(valid_until, now + seconds_until_rotation(now, k))
    if math.isinf(valid_until):
        valid_until = now + 60.0
    return OldEidIndex(by_eid, valid_until, directory_version, per_device)


class BaselineDirectory(Directory):
    """The relay's directory with the old resolution: every device's EIDs rebuilt on the
    event loop, at the first sighting after a window ends or the directory changes."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.old_index: OldEidIndex | None = None
        self.old_devices: dict[str, Device] = {}
        self.rebuilds: list[float] = []  # seconds each rebuild held the event loop

    async def start(self, now: float) -> None:
        await self.refresh(now, force=True)  # the new indexer is never started

    async def close(self) -> None:
        return None

    async def _eids_directory_moved(self, changes: Any, now: float) -> None:
        return None  # the old index rebuilds itself when the version moves

    async def resolve(self, eid: bytes, now: float) -> Device | None:
        if now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        if self.old_index is None or self.old_index.stale(now, self._version):
            started = time.perf_counter()
            devices = await self._store.devices()
            self.old_devices = {d.id: d for d in devices}
            self.old_index = old_build_index(
                devices, now, self._version, self._eid_neighbours, previous=self.old_index
            )
            self.rebuilds.append(time.perf_counter() - started)
        found = self.old_index.resolve(eid)
        return self.old_devices.get(found) if found else None

    async def resolve_many(self, eids: Sequence[bytes], now: float) -> list[Device | None]:
        return [await self.resolve(eid, now) for eid in eids]  # one by one, as it was


# --- helpers -------------------------------------------------------------------------------
class BenchClock:
    """The relay's wall clock, which the bench moves forward to just before a window change."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def deep_size(*roots: object) -> int:
    """Bytes of every object reachable from ``roots`` (each counted once; no types/modules)."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        if isinstance(obj, memoryview):
            total += sys.getsizeof(obj) + obj.nbytes  # a view of a memory map: count the map
            continue
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def settings_for(db: Path) -> RelaySettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db": db,
        "sqlite_synchronous": "normal",
        # The client below pings 100 times a second on one connection.
        "rate_per_second": 1e6,
        "rate_burst": 1e6,
    }
    return RelaySettings.model_construct(**{**RelaySettings().model_dump(), **values})


async def until(condition: Any, limit: float, step: float = 0.05) -> bool:
    """Poll ``condition()`` until true or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


# --- the database ----------------------------------------------------------------------------
async def generate(db: Path, devices: int) -> dict[str, str]:
    """``devices`` signed-in devices over 100 tenants, and one laptop user in tenant 0."""
    meta_file = db.with_suffix(".json")
    if db.exists() and meta_file.exists():
        meta: dict[str, str] = json.loads(meta_file.read_text())
        return meta
    db.unlink(missing_ok=True)
    store = SqliteStore(db, synchronous="normal")
    await store.open()
    started = time.perf_counter()
    for t in range(TENANTS):
        await store.add_tenant(Tenant(tenant_id(t), f"Tenant {t}"))
    chunk = 20_000
    for start in range(0, devices, chunk):
        await store.add_devices(
            [
                Device(
                    device_id(n),
                    tenant_id(n % TENANTS),
                    f"Room {n}",
                    "room_system",
                    "meeting_room",
                    device_key(n),
                    K,
                    location=f"floor {n % 40}",
                    state="signed_in",
                )
                for n in range(start, min(devices, start + chunk))
            ]
        )
    admin = Admin(store)
    user = await admin.create_user(tenant_id(0), "Bench laptop user")
    credential = await admin.issue_credential("user", user.id)
    await store.close()
    meta = {"user_id": user.id, "token": credential.token}
    meta_file.write_text(json.dumps(meta))
    print(f"  generated {devices:,} devices in {time.perf_counter() - started:.1f} s", flush=True)
    return meta


# --- the pinging client (a separate process) --------------------------------------------------
async def pinger(url: str, token: str) -> None:
    """Ping every 10 ms and report 64 random EIDs every 100 ms until stdin says stop; then
    print every ping as [wall time sent, round trip seconds] in JSON."""
    ping_link = await RelayLink.connect(url, token, laptop_id="bench-pinger", reply_timeout=900)
    report_link = await RelayLink.connect(url, token, laptop_id="bench-reporter", reply_timeout=900)
    pings: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def ping_loop() -> None:
        tick = time.monotonic()
        while not stop.is_set() and len(pings) < 200_000:
            sent, started = time.time(), time.perf_counter()
            await ping_link.ping()
            pings.append((sent, time.perf_counter() - started))
            tick += 0.010
            delay = tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                tick = time.monotonic()  # after a stall, keep the 10 ms cadence from now

    async def report_loop() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            await report_link.report_sightings([(rng.randbytes(8), -60) for _ in range(BATCH)])
            await asyncio.sleep(0.100)

    async def wait_for_stop() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stop.set()

    print("ready", flush=True)
    await asyncio.gather(ping_loop(), report_loop(), wait_for_stop())
    await ping_link.close()
    await report_link.close()
    print(json.dumps(pings), flush=True)


class PingClient:
    """The pinger process, seen from the bench."""

    def __init__(self, url: str, token: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-P", __file__, "pinger", url, token],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        assert self._proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, self._proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"pinger did not start: {line!r}")

    async def stop(self) -> list[tuple[float, float]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("stop\n")
        self._proc.stdin.flush()
        out = await asyncio.get_running_loop().run_in_executor(None, self._proc.stdout.read)
        self._proc.wait(timeout=30)
        return [(float(t), float(rtt)) for t, rtt in json.loads(out)]


class GcPauses:
    """Every cyclic-GC collection of the relay's process: (wall time, generation, seconds)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(
                (time.time(), info["generation"], time.perf_counter() - self._started)
            )

    def longest(self, start: float, end: float) -> str:
        inside = [(g, d) for t, g, d in self.pauses if start <= t <= end]
        if not inside:
            return "none"
        generation, seconds = max(inside, key=lambda p: p[1])
        return f"{seconds * 1000:.1f} ms (generation {generation}, {len(inside)} collections)"

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)


class LoopLag:
    """How late the relay's own event loop wakes a 1 ms timer: stalls seen from inside."""

    def __init__(self) -> None:
        # (wall time asked, how late it fired, CPU the loop's thread used meanwhile,
        #  time the thread spent runnable but waiting for a CPU meanwhile)
        self.samples: list[tuple[float, float, float, float]] = []
        self._task = asyncio.get_running_loop().create_task(self._run())

    @staticmethod
    def _waited(fd: int) -> float:
        """Seconds this thread has spent runnable, waiting for a CPU (Linux schedstat)."""
        return int(os.pread(fd, 100, 0).split()[1]) / 1e9

    async def _run(self) -> None:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)  # the loop's thread
        try:
            while len(self.samples) < 2_000_000:
                asked, started = time.time(), time.perf_counter()
                cpu, waited = time.thread_time(), self._waited(fd)
                await asyncio.sleep(0.001)
                late = time.perf_counter() - started - 0.001
                self.samples.append(
                    (asked, late, time.thread_time() - cpu, self._waited(fd) - waited)
                )
        finally:
            os.close(fd)

    def _inside(self, start: float, end: float) -> list[tuple[float, float, float, float]]:
        # Only timers that fired inside the period (the bench's own measurements of
        # sightings hold the loop on purpose, just outside these periods).
        return [s for s in self.samples if start <= s[0] and s[0] + s[1] <= end]

    def longest(self, start: float, end: float) -> float:
        """The longest lateness of the timers set within [start, end], in ms."""
        return max((s[1] for s in self._inside(start, end)), default=math.nan) * 1000

    def own(self, start: float, end: float) -> float:
        """The longest lateness left once the time the thread waited for a CPU held by other
        processes is taken out, in ms: what the relay itself caused."""
        return max((s[1] - s[3] for s in self._inside(start, end)), default=math.nan) * 1000

    def busiest(self, start: float, end: float) -> float:
        """The most CPU the loop's thread used while one 1 ms timer waited, in ms: the
        longest run of work without yielding, whatever else the machine was doing."""
        return max((s[2] for s in self._inside(start, end)), default=math.nan) * 1000

    def stop(self) -> None:
        self._task.cancel()


def longest(pings: list[tuple[float, float]], start: float, end: float) -> tuple[float, float, int]:
    """(longest, p99, count) of the round trips sent and answered in [start, end], in ms."""
    rtts = sorted(rtt for t, rtt in pings if start <= t and t + rtt <= end)
    if not rtts:
        return math.nan, math.nan, 0
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    return rtts[-1] * 1000, p99 * 1000, len(rtts)


# --- one relay, measured -------------------------------------------------------------------------
@dataclass
class Figures:
    implementation: str
    devices: int
    build_s: float = math.nan
    load_longest_ms: float = math.nan
    index_bytes_per_device: float = math.nan
    rss_bytes_per_device: float = math.nan
    sightings_per_s: dict[str, float] = field(default_factory=dict)
    sightings_per_cpu_s: dict[str, float] = field(default_factory=dict)
    sightings_per_cpu_s_median: dict[str, float] = field(default_factory=dict)
    load_loop_lag_ms: float = math.nan
    quiet_longest_ms: float = math.nan
    quiet_loop_lag_ms: float = math.nan
    change_longest_ms: list[float] = field(default_factory=list)  # one per window change
    change_p99_ms: list[float] = field(default_factory=list)
    change_loop_lag_ms: list[float] = field(default_factory=list)
    change_loop_busy_ms: list[float] = field(default_factory=list)
    change_loop_own_ms: list[float] = field(default_factory=list)
    change_pings: int = 0
    change_work_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def sighting_batches(now: float) -> dict[str, list[bytes]]:
    rng = random.Random(11)
    own = [eid_at(device_key(n * TENANTS), now, K) for n in range(BATCH)]
    others = [eid_at(device_key(n * TENANTS + 1 + n % 99), now, K) for n in range(BATCH)]
    return {
        "own tenant": own,
        "other tenants": others,
        "unknown": [rng.randbytes(8) for _ in range(BATCH)],
    }


ROUNDS = 5  # sightings throughput: rounds per kind of batch, interleaved


async def throughput(
    server: RelayServer,
    principal: Principal,
    clock: BenchClock,
    seconds: float,
    expected: dict[str, int],
    resolves: Callable[[bytes], bool],
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Sightings per second through validate → handle → encode, per kind of batch: per
    second of wall time, and per second of the loop thread's CPU (one core, whatever else
    the machine runs), each the best of ``ROUNDS`` rounds taken in turn (as ``timeit``
    takes the best: on a shared 2-core machine other processes only ever slow a round
    down), and the median of the CPU-second rates, to show the spread."""
    raws: dict[str, str] = {}
    for kind, eids in sighting_batches(clock()).items():
        hits = sum(resolves(e) for e in eids)
        if hits != (0 if kind == "unknown" else BATCH):
            raise RuntimeError(f"{kind}: the index resolves {hits} of the {BATCH} EIDs")
        raw = json.dumps(
            {
                "type": "sightings.report",
                "id": 1,
                "sightings": [{"eid": e.hex(), "rssi": -60} for e in eids],
            }
        )
        request = wire.REQUEST_ADAPTER.validate_json(raw)
        outcome = await server.service.handle(principal, request, clock())
        assert isinstance(outcome.result, wire.SightingsResult)
        if len(outcome.result.devices) != expected[kind]:
            raise RuntimeError(
                f"{kind}: {len(outcome.result.devices)} devices resolved, expected {expected[kind]}"
            )
        raws[kind] = raw
    wall: dict[str, list[float]] = {kind: [] for kind in raws}
    cpu: dict[str, list[float]] = {kind: [] for kind in raws}
    for _ in range(ROUNDS):
        for kind, raw in raws.items():
            batches = 0
            started, cpu_started = time.perf_counter(), time.thread_time()
            deadline = started + seconds / ROUNDS
            while time.perf_counter() < deadline and batches < 1_000_000:
                now = clock()
                request = wire.REQUEST_ADAPTER.validate_json(raw)
                outcome = await server.service.handle(principal, request, now)
                wire.encode_result(request.id, outcome.result)
                batches += 1
            wall[kind].append(batches * BATCH / (time.perf_counter() - started))
            cpu[kind].append(batches * BATCH / max(time.thread_time() - cpu_started, 1e-9))
            await asyncio.sleep(0)  # let the pinging client's messages through between rounds
    return (
        {kind: max(rates) for kind, rates in wall.items()},
        {kind: max(rates) for kind, rates in cpu.items()},
        {kind: statistics.median(rates) for kind, rates in cpu.items()},
    )


async def measure(
    db: Path, devices: int, meta: dict[str, str], implementation: str, seconds: float, changes: int
) -> Figures:
    figures = Figures(implementation, devices)
    clock = BenchClock()
    settings = settings_for(db)
    store = SqliteStore(db, synchronous="normal")
    directory = (
        BaselineDirectory(store, settings.directory_check_s, settings.eid_neighbours, clock=clock)
        if implementation == "baseline"
        else None
    )
    node = build_node(settings, store=store, clock=clock, directory=directory)
    server = RelayServer(settings, node=node)
    directory = node.directory
    gc.collect()
    rss_before = rss_bytes()
    started = time.perf_counter()
    await server.start()
    # As `relay serve` does: once loaded, the start's objects leave the full collections.
    settle = asyncio.create_task(server.settle_heap_when_loaded())
    lag = LoopLag()
    pauses = GcPauses()
    loaded: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def watch_load() -> None:
        await directory.eids.loaded.wait()
        await directory.eids.idle.wait()
        loaded.set_result(time.perf_counter())

    watcher = asyncio.create_task(watch_load())
    url = f"ws://127.0.0.1:{server.port}/"
    client = PingClient(url, meta["token"])
    try:
        await client.ready()
        client_up = time.time()
        # --- build -----------------------------------------------------------------------
        if isinstance(directory, BaselineDirectory):
            watcher.cancel()
            await directory.resolve(bytes(8), clock())  # the old index builds on first use
            figures.build_s = directory.rebuilds[0]  # (the client's sightings may come first)
            index_holder: tuple[object, ...] = (directory.old_index, directory.old_devices)
        else:
            figures.build_s = await asyncio.wait_for(loaded, WAIT_LIMIT_S) - started
            index_holder = (directory.eids.index,)
        loaded_at = time.time()
        gc.collect()
        figures.rss_bytes_per_device = (rss_bytes() - rss_before) / devices
        figures.index_bytes_per_device = deep_size(*index_holder) / devices
        if not isinstance(directory, BaselineDirectory):
            own = directory.eids.index.memory()
            figures.notes.append(
                f"index's own count: {own.per_device:.0f} B/device "
                f"(tables {own.tables / devices:.0f}, slots {own.slots / devices:.0f}, "
                f"id map {own.id_map / devices:.0f})"
            )
        # --- sightings through the real path ------------------------------------------------
        principal = await server.service.authenticate(
            meta["token"], "bench-laptop", "bench", clock()
        )
        assert principal is not None
        expected = {"own tenant": BATCH, "other tenants": 0, "unknown": 0}
        if isinstance(directory, BaselineDirectory):
            old_index = directory.old_index
            assert old_index is not None

            def resolves(eid: bytes) -> bool:
                return old_index.resolve(eid) is not None
        else:
            index = directory.eids.index

            def resolves(eid: bytes) -> bool:
                return index.resolve(eid, clock()) is not None

        (
            figures.sightings_per_s,
            figures.sightings_per_cpu_s,
            figures.sightings_per_cpu_s_median,
        ) = await throughput(
            server, principal, clock, seconds, expected, resolves
        )
        # --- window changes while the client pings --------------------------------------
        await asyncio.sleep(2.0)
        quiet = (time.time() - 2.0, time.time())
        periods: list[tuple[float, float]] = []
        for _ in range(changes):
            now = clock()
            boundary = now - now % PERIOD + PERIOD
            clock.offset += max(0.0, (boundary - 3.0) - now)  # to 3 s before the change
            change_at = time.time() + (boundary - clock())
            await until(lambda b=boundary: clock() >= b + 0.5, WAIT_LIMIT_S)
            work_started = time.perf_counter()
            if isinstance(directory, BaselineDirectory):
                done = await until(
                    lambda b=boundary: (
                        directory.old_index is not None and directory.old_index.valid_until > b
                    ),
                    WAIT_LIMIT_S,
                )
                figures.change_work_s.append(directory.rebuilds[-1])
            else:
                done = await until(directory.eids.idle.is_set, WAIT_LIMIT_S)
                figures.change_work_s.append(time.perf_counter() - work_started + 0.5)
            if not done:
                figures.notes.append("a window change's work did not finish in time")
            await asyncio.sleep(2.0)
            periods.append((change_at - 1.0, time.time()))
        pings = await client.stop()
        figures.quiet_longest_ms = longest(pings, *quiet)[0]
        figures.quiet_loop_lag_ms = lag.longest(*quiet)
        for start, end in periods:
            figures.notes.append(
                f"longest GC pause in a window change: {pauses.longest(start, end)}"
            )
            longest_ms, p99_ms, count = longest(pings, start, end)
            figures.change_longest_ms.append(longest_ms)
            figures.change_p99_ms.append(p99_ms)
            figures.change_pings += count
            figures.change_loop_lag_ms.append(lag.longest(start, end))
            figures.change_loop_busy_ms.append(lag.busiest(start, end))
            figures.change_loop_own_ms.append(lag.own(start, end))
        if client_up < loaded_at and not isinstance(directory, BaselineDirectory):
            figures.load_longest_ms = longest(pings, client_up, loaded_at)[0]
            figures.load_loop_lag_ms = lag.longest(client_up, loaded_at)
            figures.notes.append(
                f"while loading: loop late by {lag.own(client_up, loaded_at):.1f} ms at most "
                f"without its waits for a CPU, its thread busy without yielding for at most "
                f"{lag.busiest(client_up, loaded_at):.1f} ms; longest GC pause "
                f"{pauses.longest(client_up, loaded_at)}"
            )
    finally:
        lag.stop()
        pauses.stop()
        settle.cancel()
        await server.stop()
        gc.unfreeze()  # the next size's relay starts from a collectable heap
    return figures


# --- the report ------------------------------------------------------------------------
def show(f: Figures) -> None:
    def ms(v: float) -> str:
        return "n/a" if math.isnan(v) else f"{v:.1f} ms"

    def each(values: list[float], unit: str = "ms") -> str:
        return ", ".join(f"{v:.1f}" for v in values) + f" {unit}"

    rates = ", ".join(
        f"{kind} {rate:,.0f}/s ({f.sightings_per_cpu_s[kind]:,.0f} per CPU-second; "
        f"median of the rounds {f.sightings_per_cpu_s_median[kind]:,.0f})"
        for kind, rate in f.sightings_per_s.items()
    )
    print(f"  [{f.implementation}] {f.devices:,} devices", flush=True)
    print(
        f"    build {f.build_s:.2f} s; while loading: longest ping {ms(f.load_longest_ms)}, "
        f"relay loop late by at most {ms(f.load_loop_lag_ms)}"
    )
    print(
        f"    memory: index {f.index_bytes_per_device:.0f} B/device, "
        f"process RSS growth {f.rss_bytes_per_device:.0f} B/device"
    )
    print(f"    sightings through validate→handle→encode, batches of 64: {rates}")
    print(
        f"    {len(f.change_longest_ms)} window changes: longest ping {each(f.change_longest_ms)} "
        f"(p99 {each(f.change_p99_ms)}; {f.change_pings} pings), relay loop late by at most "
        f"{each(f.change_loop_lag_ms)} ({each(f.change_loop_own_ms)} once its waits for a CPU "
        f"held by other processes are taken out), its thread busy without yielding for at "
        f"most {each(f.change_loop_busy_ms)}; the work took {each(f.change_work_s, 's')}"
    )
    print(
        f"    for comparison, the 2 s before: longest ping {ms(f.quiet_longest_ms)}, "
        f"loop late by {ms(f.quiet_loop_lag_ms)}"
    )
    for note in f.notes:
        print(f"    {note}")


async def run(args: argparse.Namespace) -> list[Figures]:
    results: list[Figures] = []
    keep = Path(args.keep) if args.keep else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for devices in args.sizes:
            print(f"{devices:,} devices", flush=True)
            db = folder / f"eid-{devices}.sqlite3"
            meta = await generate(db, devices)
            implementations = ["new"] + (["baseline"] if devices <= args.baseline_max else [])
            for implementation in implementations:
                figures = await measure(
                    db, devices, meta, implementation, args.seconds, args.changes
                )
                show(figures)
                results.append(figures)
            if devices > args.baseline_max:
                print(f"  [baseline] not run above --baseline-max {args.baseline_max:,}")
    return results


def table(results: list[Figures]) -> None:
    print()
    print(
        "| devices | resolver | build | index B/device | RSS B/device "
        "| sightings/s own / other / unknown | longest ping at a window change "
        "| relay loop late by | longest ping while loading |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for f in results:
        rates = " / ".join(f"{v / 1000:,.0f}k" for v in f.sightings_per_s.values())
        load = "n/a" if math.isnan(f.load_longest_ms) else f"{f.load_longest_ms:.1f} ms"
        pings = ", ".join(f"{v:.1f}" for v in f.change_longest_ms)
        lags = ", ".join(f"{v:.1f}" for v in f.change_loop_lag_ms)
        print(
            f"| {f.devices:,} | {f.implementation} | {f.build_s:.1f} s "
            f"| {f.index_bytes_per_device:.0f} | {f.rss_bytes_per_device:.0f} | {rates} "
            f"| {pings} ms | {lags} ms | {load} |"
        )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "pinger":
        asyncio.run(pinger(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
        help="device counts, comma-separated (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--baseline-max", type=int, default=100_000, help="run the old resolver up to this size"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput measurement")
    parser.add_argument("--changes", type=int, default=3, help="window changes measured per run")
    parser.add_argument(
        "--keep", help="keep the generated databases in this folder (and reuse them)"
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    if any(n < BATCH * TENANTS for n in args.sizes):
        parser.error(
            f"sizes must be at least {BATCH * TENANTS} (64 devices in the laptop's tenant)"
        )
    configure_logging("warning")
    results = asyncio.run(run(args))
    table(results)
    if args.json:
        print(json.dumps([f.__dict__ for f in results], default=str))


if __name__ == "__main__":
    main()
