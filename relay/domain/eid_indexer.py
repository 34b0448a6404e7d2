"""Keeps the relay's EID index current without stalling the event loop.

Three things change the index (:mod:`relay.domain.resolver`): the clock (a window ends, so one
table is dropped and the one ahead is opened), the directory (devices added, re-keyed,
excluded, removed) and start-up (every device). Each asks for AES work: one EID per
device and opened window. When there is more than a few milliseconds of it, it runs in
a worker *process* (:mod:`relay.domain.eid_worker`), in batches of flat bytes over a pipe the
event loop reads itself, and the loop only enters the results a bounded slice at a time.
A worker *thread* would hold the GIL for whole switch intervals (5 ms each, several per
request: measured 8-12 ms of added latency against 2-4 ms for a process), and so do the
helper threads of a process pool when the machine is busy. A handful of devices (a
directory change, a small site, the test suite) is computed inline, so nothing waits on
a process start.

The loop's own cost per device and window is a table insertion (~1 µs on this project's
2-core build machine), against ~12 µs of AES in the worker; at one million devices with
K = 10 that is about one second of loop time per 1024-second window, in steps of a
quarter of a millisecond.

Until the first load is done (a minute or two for a million devices) sightings of devices
not yet loaded resolve to nothing; ``loaded`` says when it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import structlog

from relay.domain.eid_worker import EidWorker, ProcessWorker
from relay.domain.model import Device
from relay.domain.resolver import PREPARE_STEP, EidIndex, EidTable, Fill
from relay.protocol.eid import EID_LEN, eids_of_keys

log = structlog.get_logger("relay.eid")

# Inserts entered per slice before yielding to the loop (~1 µs each on a slow core).
MERGE_SLICE = 128
# Devices per call to the worker: large, so that the round trips cost little.
WORKER_BATCH = 4096
# Up to this many device-windows of AES are computed on the loop (~6 µs each).
INLINE_LIMIT = 256
# More changed devices than this in one directory check: reconcile by pages instead of
# reading each device.
CHANGES_LIMIT = 512
PAGE_SIZE = 100  # devices read per query while loading (~8 µs each to read, build and put)
# After the worker failed, compute inline (in small steps) this long before trying again.
WORKER_RETRY_S = 60.0
# Slices of dropped tables' memory handed back per wake-up (RELEASE_STEP each).
RELEASE_STEPS_MAX = 4096
# The longest the background task sleeps before looking at the clock again (so that a
# stepped clock is noticed soon).
MAX_IDLE_S = 1.0


class DevicePages(Protocol):
    """Where the indexer reads devices: one by id, or all of them a page at a time."""

    async def device(self, device_id: str) -> Device | None: ...

    async def device_page(self, after: str | None, limit: int) -> Sequence[Device]:
        """Up to ``limit`` devices ordered by id, after ``after`` (from the start if None)."""


class EidIndexer:
    """Loads, rotates and updates an :class:`EidIndex` in the background."""

    def __init__(
        self,
        index: EidIndex,
        source: DevicePages,
        *,
        resolvable: Callable[[Device], bool],
        clock: Callable[[], float] = time.time,
        worker: Callable[[], EidWorker] = ProcessWorker,
        inline_limit: int = INLINE_LIMIT,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.index = index
        self._source = source
        self._resolvable = resolvable
        self._clock = clock
        self._new_worker = worker
        self._worker: EidWorker | None = None
        self._worker_retry_at = float("-inf")
        self._inline_limit = inline_limit
        self._page_size = page_size
        self._fills: deque[Fill] = deque()
        self._wake = asyncio.Event()
        self._resync = False
        self._syncing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()  # set once every device is indexed after start
        self.idle = asyncio.Event()  # set while nothing is queued (tests and benchmarks wait)

    # --- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start loading every device and keeping the index current (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="eid-indexer")

    @property
    def started(self) -> bool:
        return self._task is not None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._worker is not None:
            await self._worker.close()
            self._worker = None

    # --- what the directory calls -------------------------------------------------------
    def resolve(self, eid: bytes, now: float) -> str | None:
        return self.index.resolve(eid, now)

    def keep_up(self, now: float) -> None:
        """Bring the tables to ``now``: small fills at once, large ones to the background."""
        if not self.loaded.is_set():
            return  # the initial load opens the tables once every device is in
        for fill in self.index.rotate(now):
            if self._affordable(fill.k, len(fill.windows)):
                self._fill_now(fill)
            else:
                self._fills.append(fill)
                self.idle.clear()
                self._wake.set()

    async def devices_changed(self, device_ids: Collection[str], now: float) -> None:
        """Re-read these devices and index or drop each; returns once they resolve as
        the directory says (a large burst is reconciled page by page in the background)."""
        if len(device_ids) > CHANGES_LIMIT:
            self.resync("many changes")
            return
        added: dict[int, list[int]] = defaultdict(list)
        for n, device_id in enumerate(device_ids):
            device = await self._source.device(device_id)
            slot = self._apply(device_id, device)
            if slot is not None:
                added[self.index.exponent(slot)].append(slot)
            if n % 64 == 63:
                await asyncio.sleep(0)  # each read is a synchronous query
        for k, slots in added.items():
            await self._fill_slots(k, slots)
        self.keep_up(now)

    async def reconcile(self, now: float) -> None:
        """Reconcile the whole index with the directory now (for small directories, when
        which devices changed is not known)."""
        await self._sync()
        self.keep_up(now)

    def resync(self, reason: str) -> None:
        """Reconcile the whole index with the directory, page by page, in the background
        (the change log no longer reaches back, or too much changed at once)."""
        log.info("eid_resync_requested", reason=reason)
        self._resync = True
        self.idle.clear()
        self._wake.set()

    # --- background ---------------------------------------------------------------------
    async def _run(self) -> None:
        started = time.perf_counter()
        await self._sync()
        self._fills.extend(self.index.rotate(self._clock()))
        await self._drain()
        self.loaded.set()
        log.info(
            "eid_index_loaded",
            devices=len(self.index),
            seconds=round(time.perf_counter() - started, 3),
        )
        while True:
            if self._resync:
                self._resync = False
                await self._sync()
                log.info("eid_resync_done", devices=len(self.index))
            self._fills.extend(self.index.rotate(self._clock()))
            if self._fills:
                self.idle.clear()
            await self._drain()
            for _ in range(RELEASE_STEPS_MAX):  # dropped tables' memory, a slice at a time
                if not self.index.release():
                    break
                await asyncio.sleep(0)
            if self._resync or self._fills:
                continue
            self.idle.set()
            timeout = min(MAX_IDLE_S, self.index.next_rotation(self._clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.0))
            self._wake.clear()

    async def _drain(self) -> None:
        while self._fills:
            fill = self._fills.popleft()
            await self._run_fill(fill)

    async def _sync(self) -> None:
        """Put every resolvable device (unchanged ones cost a comparison), drop the rest."""
        async with self._syncing:  # one reconciliation at a time: they share the marks
            self.index.begin_sync()
            had_tables = self.index.has_tables
            added: dict[int, list[int]] = defaultdict(list)
            after: str | None = None
            while True:
                page = await self._source.device_page(after, self._page_size)
                if not page:
                    break
                for device in page:
                    slot = self._apply(device.id, device)
                    if slot is not None and had_tables:
                        added[self.index.exponent(slot)].append(slot)
                after = page[-1].id
                await asyncio.sleep(0)
            removed = self.index.end_sync()
            if removed:
                log.info("eid_sync_removed", devices=len(removed))
            for k, slots in added.items():
                await self._fill_slots(k, slots)

    def _apply(self, device_id: str, device: Device | None) -> int | None:
        if device is None or not self._resolvable(device):
            self.index.remove(device_id)
            return None
        return self.index.put(device.id, device.identity_key, device.rotation_exponent)

    # --- the AES work ----------------------------------------------------------------------
    def _affordable(self, k: int, windows: int) -> bool:
        return self.index.count(k) * windows <= self._inline_limit

    def _fill_now(self, fill: Fill) -> None:
        """A small fill, all at once: nothing else runs until its devices resolve."""
        batch = self.index.batch(fill.k, 0, self.index.count(fill.k))
        self.index.merge(fill, batch.slots, eids_of_keys(batch.keys, fill.k, fill.windows))
        self.index.finish(fill)

    async def _run_fill(self, fill: Fill) -> None:
        """Compute the EIDs of every device of ``fill.k`` for its windows, in batches."""
        if self._affordable(fill.k, len(fill.windows)):
            self._fill_now(fill)
            return
        started = time.perf_counter()
        for table in fill.tables:  # back the tables with memory first, a slice at a time
            offset = 0
            while offset < table.span:
                offset = table.prepare(offset, PREPARE_STEP)
                await asyncio.sleep(0)
        per_slice = max(1, MERGE_SLICE // len(fill.windows))
        cursor = 0
        pending: deque[tuple[Sequence[int], asyncio.Future[list[bytes]]]] = deque()
        devices = 0
        try:
            while True:
                # Keep two batches in flight so that the worker never waits for the loop.
                while len(pending) < 2:
                    batch = self.index.batch(fill.k, cursor, WORKER_BATCH)
                    if not batch.slots:
                        break
                    cursor = batch.next_cursor
                    work = self._compute(batch.keys, fill.k, fill.windows)
                    pending.append((batch.slots, asyncio.ensure_future(work)))
                if not pending:
                    break
                slots, result = pending.popleft()
                eids = await result
                for start in range(0, len(slots), per_slice):
                    end = start + per_slice
                    parts = [blob[start * EID_LEN : end * EID_LEN] for blob in eids]
                    self.index.merge(fill, slots[start:end], parts)
                    await asyncio.sleep(0)
                devices += len(slots)
        finally:
            for _, left in pending:
                left.cancel()
        self.index.finish(fill)
        log.info(
            "eid_tables_filled",
            k=fill.k,
            windows=list(fill.windows),
            devices=devices,
            seconds=round(time.perf_counter() - started, 3),
            grown=sum(t.growths for t in fill.tables),
        )

    async def _fill_slots(self, k: int, slots: Sequence[int]) -> None:
        """Compute the EIDs of these (new or re-keyed) devices for every live table of ``k``."""
        tables: tuple[EidTable, ...] = self.index.live_windows(k)
        if not tables:
            return  # no table for this exponent yet: opening them fills every device
        windows = tuple(t.window for t in tables)
        if len(slots) * len(windows) <= self._inline_limit:
            keys = b"".join(self.index.key(s) for s in slots)
            self.index.fill_slots(k, tables, slots, eids_of_keys(keys, k, windows))
            return
        per_slice = max(1, MERGE_SLICE // len(windows))
        for first in range(0, len(slots), WORKER_BATCH):
            chunk = slots[first : first + WORKER_BATCH]
            keys = b"".join(self.index.key(s) for s in chunk)
            eids = await self._compute(keys, k, windows)
            for start in range(0, len(chunk), per_slice):
                end = start + per_slice
                parts = [blob[start * EID_LEN : end * EID_LEN] for blob in eids]
                self.index.fill_slots(k, tables, chunk[start:end], parts)
                await asyncio.sleep(0)

    async def _compute(self, keys: bytes, k: int, windows: Sequence[int]) -> list[bytes]:
        """EIDs of a batch, in the worker; inline in small steps if the worker failed."""
        if time.monotonic() >= self._worker_retry_at:
            try:
                if self._worker is None:
                    self._worker = self._new_worker()
                return await self._worker.compute(keys, k, tuple(windows))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dead worker must not stop resolution
                log.error("eid_worker_failed", error=repr(exc), retry_in_s=WORKER_RETRY_S)
                self._worker_retry_at = time.monotonic() + WORKER_RETRY_S
                worker, self._worker = self._worker, None
                if worker is not None:
                    await worker.close()
        out = [bytearray() for _ in windows]
        step = 16 * max(1, 32 // len(windows))
        for start in range(0, len(keys), step):
            parts = eids_of_keys(keys[start : start + step], k, windows)
            for blob, part in zip(out, parts, strict=True):
                blob += part
            await asyncio.sleep(0)
        return [bytes(b) for b in out]
