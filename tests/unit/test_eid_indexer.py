"""The EID indexer: loads every device, follows directory changes and the clock."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

import pytest

from relay.domain.eid_indexer import EidIndexer
from relay.domain.eid_worker import EidWorker, ProcessWorker
from relay.domain.model import Device
from relay.domain.resolver import EidIndex
from relay.protocol.eid import eid_at, eids_of_keys

K = 4
NOW = 1_000_003.0


class DeviceTable:
    """An in-memory directory behind the indexer's interface (one by id, or by pages)."""

    def __init__(self, devices: Sequence[Device] = ()) -> None:
        self.devices = {d.id: d for d in devices}
        self.pages_read = 0

    async def device(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    async def device_page(self, after: str | None, limit: int) -> Sequence[Device]:
        self.pages_read += 1
        ids = sorted(i for i in self.devices if after is None or i > after)[:limit]
        return [self.devices[i] for i in ids]


def device(n: int, state: str = "signed_in") -> Device:
    return Device(
        f"d{n:04d}", "t", f"room {n}", "room_system", "meeting_room", os.urandom(16), K,
        state=state,  # type: ignore[arg-type]
    )


def signed_in(d: Device) -> bool:
    return d.state == "signed_in"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ThreadWorker:
    """The worker's interface on a thread of this process (fast to start, for the tests of
    the batching; one test below runs the real worker process)."""

    def __init__(self) -> None:
        self.batches = 0

    async def compute(self, keys: bytes, k: int, windows: Sequence[int]) -> list[bytes]:
        self.batches += 1
        return await asyncio.to_thread(eids_of_keys, keys, k, windows)

    async def close(self) -> None:
        return None


async def started(
    table: DeviceTable,
    clock: Clock | None = None,
    worker: Callable[[], EidWorker] = ThreadWorker,
    **kw: int,
) -> EidIndexer:
    indexer = EidIndexer(
        EidIndex(), table, resolvable=signed_in, clock=clock or Clock(), worker=worker, **kw
    )
    indexer.start()
    await asyncio.wait_for(indexer.loaded.wait(), 30)
    await asyncio.wait_for(indexer.idle.wait(), 30)
    return indexer


def resolves(indexer: EidIndexer, d: Device, at: float = NOW) -> str | None:
    return indexer.resolve(eid_at(d.identity_key, at, d.rotation_exponent), at)


@pytest.fixture
async def closing() -> AsyncIterator[list[EidIndexer]]:
    made: list[EidIndexer] = []
    yield made
    for indexer in made:
        await indexer.close()


async def test_every_resolvable_device_is_loaded_and_the_others_are_not(
    closing: list[EidIndexer],
) -> None:
    devices = [device(n) for n in range(5)] + [device(9, state="waiting_for_sign_in")]
    table = DeviceTable(devices)
    indexer = await started(table, page_size=2)
    closing.append(indexer)
    assert [resolves(indexer, d) for d in devices] == [d.id for d in devices[:5]] + [None]
    assert table.pages_read == 4  # three pages of two, then an empty one


async def test_a_large_load_goes_through_the_worker_in_batches(closing: list[EidIndexer]) -> None:
    devices = [device(n) for n in range(300)]
    worker = ThreadWorker()
    indexer = await started(DeviceTable(devices), worker=lambda: worker, inline_limit=0)
    closing.append(indexer)
    assert all(resolves(indexer, d) == d.id for d in devices)
    assert indexer.index.covers(NOW)
    assert worker.batches >= 1


async def test_the_worker_process_computes_the_same_eids(closing: list[EidIndexer]) -> None:
    devices = [device(n) for n in range(40)]
    indexer = await started(DeviceTable(devices), worker=ProcessWorker, inline_limit=0)
    closing.append(indexer)
    assert all(resolves(indexer, d) == d.id for d in devices)


async def test_changed_devices_resolve_as_the_directory_says_once_applied(
    closing: list[EidIndexer],
) -> None:
    kept, reset, removed, rekeyed = (device(n) for n in range(4))
    table = DeviceTable([kept, reset, removed, rekeyed])
    indexer = await started(table)
    closing.append(indexer)
    added = device(10)
    table.devices[added.id] = added
    table.devices[reset.id] = replace(reset, state="waiting_for_activation")
    del table.devices[removed.id]
    table.devices[rekeyed.id] = replace(rekeyed, identity_key=os.urandom(16))
    await indexer.devices_changed([added.id, reset.id, removed.id, rekeyed.id], NOW)
    assert resolves(indexer, added) == added.id
    assert resolves(indexer, reset) is None
    assert resolves(indexer, removed) is None
    assert resolves(indexer, rekeyed) is None  # the old key
    assert resolves(indexer, table.devices[rekeyed.id]) == rekeyed.id
    assert resolves(indexer, kept) == kept.id


async def test_many_changes_at_once_reconcile_page_by_page(closing: list[EidIndexer]) -> None:
    table = DeviceTable([device(n) for n in range(10)])
    indexer = await started(table, inline_limit=0)
    closing.append(indexer)
    fresh = [device(n) for n in range(100, 700)]
    table.devices = {d.id: d for d in fresh}
    await indexer.devices_changed([d.id for d in fresh], NOW)
    await asyncio.wait_for(indexer.idle.wait(), 30)
    assert all(resolves(indexer, d) == d.id for d in fresh)
    assert len(indexer.index) == 600


async def test_a_clock_past_the_next_window_is_caught_up(closing: list[EidIndexer]) -> None:
    d = device(1)
    indexer = await started(DeviceTable([d]))
    closing.append(indexer)
    later = NOW + 10 * (1 << K)
    assert resolves(indexer, d, later) is None  # no table for that time yet
    indexer.keep_up(later)
    assert resolves(indexer, d, later) == d.id


async def test_the_background_follows_the_clock_with_large_fills(
    closing: list[EidIndexer],
) -> None:
    devices = [device(n) for n in range(100)]
    clock = Clock()
    indexer = await started(DeviceTable(devices), clock, inline_limit=0)
    closing.append(indexer)
    clock.now += 1 << K
    indexer.keep_up(clock.now)  # queues the table ahead for the background
    assert not indexer.idle.is_set()
    await asyncio.wait_for(indexer.idle.wait(), 30)
    assert indexer.index.covers(clock.now + (1 << K))


async def test_a_failing_worker_falls_back_to_computing_inline(
    closing: list[EidIndexer],
) -> None:
    def broken() -> EidWorker:
        return ProcessWorker([sys.executable, "-c", "pass"])  # exits without answering

    devices = [device(n) for n in range(50)]
    indexer = await started(DeviceTable(devices), worker=broken, inline_limit=0)
    closing.append(indexer)
    assert all(resolves(indexer, d) == d.id for d in devices)
