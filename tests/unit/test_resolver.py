"""The EID index: tables per window built ahead, O(1) directory changes, exact windows."""

from __future__ import annotations

import os

import pytest

from relay.domain.resolver import DROP_GRACE_S, EidIndex
from relay.protocol.eid import compute_eid, eid_at, eids_for_windows, eids_of_keys

KEY_A = bytes(range(16))
KEY_B = bytes(range(1, 17))
KEY_C = bytes(range(2, 18))
K = 4  # 16-second windows
PERIOD = 1 << K
NOW = 1_000_000.0 + 3  # 3 s into a window (1_000_000 is a multiple of 16)


def keep_up(index: EidIndex, now: float) -> None:
    """What the indexer does, synchronously: open, fill and drop tables for ``now``."""
    for fill in index.rotate(now):
        batch = index.batch(fill.k, 0, len(index) + 1)
        index.merge(fill, batch.slots, eids_of_keys(batch.keys, fill.k, fill.windows))
        index.finish(fill)


def put(index: EidIndex, device_id: str, key: bytes, k: int = K) -> None:
    """Index a device and compute its EIDs for the live tables, as the indexer does."""
    slot = index.put(device_id, key, k)
    if slot is not None:
        tables = index.live_windows(k)
        eids = eids_of_keys(key, k, [t.window for t in tables])
        index.fill_slots(k, tables, [slot], eids)


def indexed(*devices: tuple[str, bytes], neighbours: int = 1, now: float = NOW) -> EidIndex:
    index = EidIndex(neighbours)
    for device_id, key in devices:
        index.put(device_id, key, K)
    keep_up(index, now)
    return index


def test_eids_for_several_windows_match_the_one_window_computation() -> None:
    # 65_536 is an epoch boundary: the temporary key changes there.
    windows = [65_536 - 32, 65_536 - 16, 65_536, 65_536 + 16, 2**32 - 16]
    assert eids_for_windows(KEY_A, K, windows) == [compute_eid(KEY_A, w, K) for w in windows]
    packed = eids_of_keys(KEY_A + KEY_B, K, windows[:2])
    assert packed == [
        compute_eid(KEY_A, windows[0], K) + compute_eid(KEY_B, windows[0], K),
        compute_eid(KEY_A, windows[1], K) + compute_eid(KEY_B, windows[1], K),
    ]


def test_eids_of_keys_refuses_keys_that_are_not_16_bytes_each() -> None:
    with pytest.raises(ValueError, match="16 bytes each"):
        eids_of_keys(KEY_A + b"x", K, [0])


def test_a_device_resolves_in_its_window_and_the_neighbours_only() -> None:
    index = indexed(("a", KEY_A))
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) == "a"
    assert index.resolve(eid_at(KEY_A, NOW - PERIOD, K), NOW) == "a"
    assert index.resolve(eid_at(KEY_A, NOW + PERIOD, K), NOW) == "a"
    assert index.resolve(eid_at(KEY_A, NOW - 2 * PERIOD, K), NOW) is None
    # The table ahead exists (being built for the next window) but is not accepted yet.
    assert index.resolve(eid_at(KEY_A, NOW + 2 * PERIOD, K), NOW) is None
    assert index.resolve(b"\x00" * 8, NOW) is None
    assert index.resolve(b"short", NOW) is None


def test_a_batch_resolves_each_eid_in_order_as_one_by_one_would() -> None:
    index = indexed(("a", KEY_A), ("b", KEY_B))
    batch = [
        eid_at(KEY_B, NOW, K),
        b"\x00" * 8,
        eid_at(KEY_A, NOW - PERIOD, K),
        b"short",
        eid_at(KEY_C, NOW, K),  # never indexed
        eid_at(KEY_A, NOW + 2 * PERIOD, K),  # the table ahead: not accepted yet
        eid_at(KEY_B, NOW, K),
    ]
    assert index.resolve_many(batch, NOW) == ["b", None, "a", None, None, None, "b"]
    assert index.resolve_many(batch, NOW) == [index.resolve(e, NOW) for e in batch]
    assert index.resolve_many([], NOW) == []


def test_a_window_change_needs_no_work_because_the_next_table_is_ready() -> None:
    index = indexed(("a", KEY_A), ("b", KEY_B))
    assert index.covers(NOW)
    next_window = NOW - 3 + PERIOD + 0.01
    # No rotate() between: the table ahead becomes an accepted one by time alone.
    assert index.covers(next_window)
    assert index.resolve(eid_at(KEY_B, next_window + PERIOD, K), next_window) == "b"
    assert index.rotate(next_window)  # opens the new table ahead ...
    assert not index.covers(next_window + PERIOD)  # ... which is not complete yet


def test_a_sighting_on_either_side_of_a_boundary_resolves_with_one_neighbour() -> None:
    boundary = 1_000_016.0
    for neighbours, expected in ((1, "a"), (0, None)):
        index = indexed(("a", KEY_A), neighbours=neighbours, now=boundary - 0.2)
        keep_up(index, boundary + 0.2)
        # A beacon whose clock is behind still sends the old EID just after the boundary...
        assert index.resolve(eid_at(KEY_A, boundary - 0.5, K), boundary + 0.2) == expected
        # ... and one whose clock is ahead sends the new EID just before it.
        assert index.resolve(eid_at(KEY_A, boundary + 0.5, K), boundary - 0.2) == expected
        # Its own window's EID resolves on both sides whatever the skew allowance.
        assert index.resolve(eid_at(KEY_A, boundary + 0.2, K), boundary + 0.2) == "a"


def test_removing_a_device_stops_it_resolving_at_once() -> None:
    index = indexed(("a", KEY_A), ("b", KEY_B))
    assert index.remove("a") and not index.remove("a")
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) is None
    assert index.resolve(eid_at(KEY_B, NOW, K), NOW) == "b"
    assert "a" not in index and len(index) == 1


def test_rekeying_a_device_resolves_the_new_key_and_not_the_old() -> None:
    index = indexed(("a", KEY_A))
    put(index, "a", KEY_B)
    assert index.resolve(eid_at(KEY_B, NOW, K), NOW) == "a"
    assert index.resolve(eid_at(KEY_B, NOW + PERIOD, K), NOW) == "a"
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) is None


def test_putting_an_unchanged_device_asks_for_no_work() -> None:
    index = indexed(("a", KEY_A))
    assert index.put("a", KEY_A, K) is None
    assert index.put("a", KEY_A, K + 1) is not None  # a new exponent is a new slot


def test_an_emptied_slot_is_not_reused_while_a_table_can_still_name_it() -> None:
    index = indexed(("a", KEY_A))
    index.remove("a")
    put(index, "b", KEY_B)
    # Were b given a's slot, a's stale entries would now resolve to b.
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) is None
    assert index.resolve(eid_at(KEY_B, NOW, K), NOW) == "b"
    # Once every table that existed when a left is gone, its slot is free again.
    later = NOW + 4 * PERIOD + DROP_GRACE_S
    keep_up(index, later)
    put(index, "c", KEY_C)
    assert index.memory().devices == 2
    assert index.slots == 2  # c reused a's slot


def test_a_device_added_after_the_tables_opened_resolves_in_every_live_table() -> None:
    index = indexed(("a", KEY_A))
    put(index, "b", KEY_B)
    for window in (NOW - PERIOD, NOW, NOW + PERIOD):
        assert index.resolve(eid_at(KEY_B, window, K), NOW) == "b"
    later = NOW + PERIOD
    assert index.resolve(eid_at(KEY_B, later + PERIOD, K), later) == "b"  # the table ahead


def test_merging_skips_slots_changed_while_their_eids_were_computed() -> None:
    index = EidIndex()
    index.put("a", KEY_A, K)
    (fill,) = index.rotate(NOW)
    batch = index.batch(K, 0, 10)
    eids = eids_of_keys(batch.keys, K, fill.windows)
    index.remove("a")  # while the worker was busy
    index.merge(fill, batch.slots, eids)
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) is None


def test_a_full_sync_removes_what_it_did_not_see() -> None:
    index = indexed(("a", KEY_A), ("b", KEY_B))
    index.begin_sync()
    assert index.put("b", KEY_B, K) is None
    assert index.end_sync() == ["a"]
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) is None
    assert index.resolve(eid_at(KEY_B, NOW, K), NOW) == "b"


def test_devices_with_different_exponents_rotate_on_their_own_windows() -> None:
    index = EidIndex()
    index.put("a", KEY_A, 4)
    index.put("b", KEY_B, 10)
    keep_up(index, NOW)
    assert index.resolve(eid_at(KEY_A, NOW, 4), NOW) == "a"
    assert index.resolve(eid_at(KEY_B, NOW, 10), NOW) == "b"
    assert index.resolve(eid_at(KEY_B, NOW, 4), NOW) is None  # b beacons with K = 10
    assert index.next_rotation(NOW) == pytest.approx(PERIOD - 3)


def test_an_older_time_does_not_undo_a_newer_rotation() -> None:
    index = indexed(("a", KEY_A))
    later = NOW + PERIOD
    keep_up(index, later)
    assert index.rotate(NOW) == []  # nothing reopened, nothing dropped
    assert index.covers(later + PERIOD - 3)


def test_tables_grow_when_many_devices_arrive_within_a_window() -> None:
    index = indexed(("a", KEY_A))
    keys = {f"d{n}": os.urandom(16) for n in range(200)}
    for device_id, key in keys.items():
        put(index, device_id, key)
    assert all(index.resolve(eid_at(key, NOW, K), NOW) == d for d, key in keys.items())
    assert sum(t.growths for t in index.live_windows(K)) > 0


def test_the_counter_wraps_at_two_to_the_32() -> None:
    wrap = float(2**32) - 5  # 11 s into the last 16-second window of the counter
    index = indexed(("a", KEY_A), now=wrap)
    after = wrap + 6  # the counter is back to 1
    assert index.resolve(eid_at(KEY_A, after, K), wrap) == "a"
    keep_up(index, after)
    assert index.resolve(eid_at(KEY_A, wrap, K), after) == "a"


def test_memory_is_reported_per_device() -> None:
    index = indexed(*[(f"d{n}", os.urandom(16)) for n in range(1000)])
    memory = index.memory()
    assert memory.devices == 1000
    # Four tables (three accepted windows and the one ahead) at 60 % load: 80 bytes.
    assert 4 * 12 / 0.6 <= memory.tables / 1000 < 4 * 12 / 0.6 + 1
    assert memory.per_device == memory.total / 1000 < 400


def test_neighbours_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="neighbours"):
        EidIndex(neighbours=9)


def test_a_large_dropped_table_is_handed_back_a_slice_at_a_time() -> None:
    index = EidIndex()
    for n in range(90_000):  # tables of 1.8 MB: more than one release step
        index.put(f"d{n}", n.to_bytes(16, "big"), K)
    index.rotate(NOW)
    assert not index.release()  # nothing dropped yet
    index.rotate(NOW + 10 * PERIOD)  # every table of NOW is dropped
    steps = 0
    while index.release():
        steps += 1
        assert steps < 100
    assert steps >= 4  # four tables, two slices or more each


def test_preparing_a_table_keeps_what_it_holds() -> None:
    index = indexed(("a", KEY_A))
    for table in index.live_windows(K):
        offset = 0
        while offset < table.span:
            offset = table.prepare(offset, 4096)
    assert index.resolve(eid_at(KEY_A, NOW, K), NOW) == "a"
