"""EID resolution: which device beaconed this 8-byte EID, in O(1) per sighting.

Every device with the same rotation exponent K rotates at the same instant (the EID
counter is Unix time), so the index is organised the way time is: one table per
(K, window) holding that window's EID of every device with that K. A lookup at time
``now`` probes the tables of the windows accepted at ``now`` (the current one and
``neighbours`` on each side, for clock skew and late reports), current first.

Nothing is recomputed at a window change. One window ahead of the accepted ones is
always being built (in batches, by whoever drives the index — see
:mod:`relay.domain.eid_indexer`), so when a window starts its table is already complete and
the switch is simply the next lookup choosing other tables; the table that fell out
of the accepted range is dropped whole. The work of a rotation is thus spread over the
preceding window instead of landing on its first second.

Directory changes are O(1) each: a device is a *slot* (its id, identity key and K in
flat arrays); adding or re-keying one gives it a fresh slot whose EIDs the caller
computes for the live tables; removing one (or excluding it, e.g. because it is no
longer signed in) empties its slot at once, so it stops resolving immediately, while
its stale entries stay in the tables until those are dropped. A slot is reused only
once every table that existed when it was emptied is gone, so a stale entry can never
point at a later device.

Tables are open-addressing hash tables over two flat arrays (8-byte EID, 4-byte slot):
about 20 bytes per entry at the 60 % load they are sized for, no Python object per
entry, and dropping one is a single ``munmap``. EIDs are AES output, so the EID itself is
a well-spread hash.

Pure: time is an argument, and the caller computes the EIDs (the AES work) it is
asked for.
"""

from __future__ import annotations

import mmap
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from relay.protocol.eid import (
    EID_LEN,
    IDENTITY_KEY_LEN,
    MAX_ROTATION_EXPONENT,
    check_rotation_exponent,
    seconds_until_rotation,
    time_counter,
    window_start,
)

_COUNTER_MASK = 0xFFFFFFFF
_LOAD = 0.6  # entries per table slot when a table is created
_MAX_LOAD = 0.85  # a table that fills beyond this (many devices added in one window) grows
_NO_DEVICE = 0xFF  # rotation-exponent byte of an empty slot
_MAX_SLOTS = 0xFFFFFFFF  # slots are stored in 4 bytes
_FIRST_CAPACITY = 4096  # slots
_ORDER = sys.byteorder  # EIDs become numbers in the machine's order: merges cast, no parsing
# The id -> slot map is split so that no single dict resize rehashes a million entries
# on the event loop (one resize at ~700,000 ids took ~100 ms here).
_ID_SHARDS = 256
MAX_NEIGHBOURS = 8
# Bytes of a dropped table's memory handed back to the kernel per step (~0.5 ms of kernel
# time here), and bytes of a new table's memory populated per step before it is filled.
RELEASE_STEP = 1 << 19
PREPARE_STEP = 1 << 18
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14
# A table outlives its window by this much, so that a request whose time was read just
# before a window change still finds the tables of that time.
DROP_GRACE_S = 5.0


def _zeroed(size: int) -> tuple[memoryview, memoryview]:
    """Two zeroed arrays of ``size`` 8-byte and 4-byte numbers. Anonymous memory maps, not
    ``array``: the kernel hands out zeroed pages as they are first written, so opening a
    table for a million devices costs no 20 MB memset on the event loop."""
    eids = memoryview(_private_map(8 * size)).cast("Q")
    slots = memoryview(_private_map(4 * size)).cast("I")
    return eids, slots


def _private_map(size: int) -> mmap.mmap:
    """Anonymous *private* memory: handed back to the kernel by MADV_DONTNEED at once and
    growable by mremap (a shared anonymous map is a shared-memory file: neither holds)."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


class EidTable:
    """One window's EIDs of the devices sharing a rotation exponent: EID -> slot."""

    __slots__ = (
        "_eids",
        "_filled",
        "_size",
        "_slots",
        "complete",
        "growths",
        "k",
        "serial",
        "window",
    )

    def __init__(self, k: int, window: int, serial: int, expected: int) -> None:
        self.k = k
        self.window = window
        self.serial = serial  # creation order: which emptied slots may be in here
        self.complete = False  # every device of ``k`` indexed at creation has its entry
        self.growths = 0  # times it outgrew its size (a rehash on the caller's thread)
        self._size = max(8, int(expected / _LOAD) + 1)
        self._eids, self._slots = _zeroed(self._size)  # an EID of 0 marks an empty entry
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    @property
    def nbytes(self) -> int:
        return self._size * (8 + 4)

    @property
    def span(self) -> int:
        """Bytes of the larger of its two maps (how far prepare and release go)."""
        return self._size * 8

    def prepare(self, offset: int, length: int) -> int:
        """Have the kernel back ``length`` bytes of each map from ``offset`` with zeroed
        pages now, so that filling the table does not take a page fault per entry (~5 µs
        each, so ~2.5 ms for a slice of 256 at a million devices). Contents are kept.
        Returns the offset to continue from."""
        self._advise(_MADV_POPULATE_WRITE, offset, length)
        return offset + length

    def release(self, offset: int, length: int) -> int:
        """Hand ``length`` bytes of each map from ``offset`` back to the kernel (the table
        must no longer be read); returns the offset to continue from."""
        self._advise(mmap.MADV_DONTNEED, offset, length)
        return offset + length

    def _advise(self, advice: int, offset: int, length: int) -> None:
        for view in (self._eids, self._slots):
            mapped = view.obj
            assert isinstance(mapped, mmap.mmap)
            size = len(mapped)
            if offset < size:
                try:
                    mapped.madvise(advice, offset, min(length, size - offset))
                except OSError:
                    return  # a kernel without it (before Linux 5.14): pages fault on use

    def get(self, eid: int) -> int:
        """The slot holding ``eid`` (as an unsigned 64-bit number), or -1."""
        if eid == 0:
            return -1  # 0 marks an empty entry
        eids = self._eids
        size = self._size
        i = eid % size
        while True:
            found = eids[i]
            if found == eid:
                return self._slots[i]
            if found == 0:
                return -1
            i += 1
            if i == size:
                i = 0

    def put(self, eid: int, slot: int) -> None:
        """Map ``eid`` to ``slot`` (the later writer wins)."""
        if eid == 0:
            return  # 0 marks an empty entry; an EID of 0 (p = 2**-64) stays unresolvable
        if self._filled + 1 > self._size * _MAX_LOAD:
            self._grow()
        eids = self._eids
        size = self._size
        i = eid % size
        while True:
            found = eids[i]
            if found == 0:
                eids[i] = eid
                self._slots[i] = slot
                self._filled += 1
                return
            if found == eid:
                self._slots[i] = slot
                return
            i += 1
            if i == size:
                i = 0

    def _grow(self) -> None:
        self.growths += 1
        old_eids, old_slots = self._eids, self._slots
        self._size = self._size * 2
        self._eids, self._slots = _zeroed(self._size)
        self._filled = 0
        for eid, slot in zip(old_eids, old_slots, strict=True):
            if eid:
                self.put(eid, slot)


@dataclass(frozen=True, slots=True)
class Fill:
    """Work the index asks for: the EIDs of every device with rotation exponent ``k``
    for the newly opened ``windows`` (their tables are ``tables``, in the same order)."""

    k: int
    windows: tuple[int, ...]
    tables: tuple[EidTable, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """A run of slots of one rotation exponent and their identity keys, end to end."""

    k: int
    slots: Sequence[int]  # usually a range
    keys: bytes
    next_cursor: int


@dataclass(frozen=True, slots=True)
class IndexMemory:
    """Bytes held by the index, by part (Python objects counted with ``sys.getsizeof``)."""

    tables: int
    slots: int  # identity keys, exponents, marks, slot -> id maps and the id strings
    id_map: int  # device id -> slot
    devices: int

    @property
    def total(self) -> int:
        return self.tables + self.slots + self.id_map

    @property
    def per_device(self) -> float:
        return self.total / self.devices if self.devices else 0.0


class EidIndex:
    """EID -> device id for the accepted windows, kept current by its caller."""

    def __init__(self, neighbours: int = 1) -> None:
        if not 0 <= neighbours <= MAX_NEIGHBOURS:
            raise ValueError(f"EID neighbours must be between 0 and {MAX_NEIGHBOURS}")
        self.neighbours = neighbours
        # slot -> device id and back. Dicts of strings and numbers only, which the cyclic
        # GC never tracks: a list of a million ids would add ~20 ms to every full
        # collection (measured here), a stall of the whole relay.
        self._names: list[dict[int, str]] = [{} for _ in range(_ID_SHARDS)]
        self._slot_of: list[dict[str, int]] = [{} for _ in range(_ID_SHARDS)]
        self._slots = 0  # slots ever handed out
        # Per slot: identity key, rotation exponent (_NO_DEVICE when empty), full-sync mark
        # (0 when empty). Anonymous maps grown by mremap: a bytearray of a million keys is
        # copied whole each time it grows (16 MB and its page faults: ~20 ms here).
        self._capacity = _FIRST_CAPACITY
        self._keys = _private_map(_FIRST_CAPACITY * IDENTITY_KEY_LEN)
        self._exponents = _private_map(_FIRST_CAPACITY)
        self._marks = _private_map(_FIRST_CAPACITY)
        self._devices = 0
        self._free: list[int] = []
        self._quarantine: list[tuple[int, int, int]] = []  # (serial when emptied, k, slot)
        self._count = [0] * (MAX_ROTATION_EXPONENT + 1)
        self._tables: dict[int, dict[int, EidTable]] = {}  # k -> window start -> table
        self._serial = 0
        self._mark = 1
        self._rotated_at = float("-inf")
        self._retired: deque[tuple[EidTable, int]] = deque()  # dropped, memory being freed
        self._due = float("-inf")  # rotate() has nothing to do before this time
        # k -> (counter >> k it was computed for, the tables a lookup probes, current first)
        self._probe: dict[int, tuple[int, tuple[EidTable, ...]]] = {}

    # --- lookups ---------------------------------------------------------------------
    def resolve(self, eid: bytes, now: float) -> str | None:
        """The device whose EID this is in a window accepted at ``now``, if any."""
        return self.resolve_many((eid,), now)[0]

    def resolve_many(self, eids: Sequence[bytes], now: float) -> list[str | None]:
        """:meth:`resolve` for each of ``eids`` (a sighting report's batch): the tables to
        probe are chosen once for the batch."""
        counter = int(now) & _COUNTER_MASK
        probe = self._probe
        tables: list[EidTable] = []
        for k in self._tables:
            cached = probe.get(k)
            if cached is None or cached[0] != counter >> k:
                cached = self._probe_tables(k, counter)
            tables.extend(cached[1])
        names = self._names
        out: list[str | None] = []
        for eid in eids:
            number = int.from_bytes(eid, _ORDER)
            device_id = None
            if number != 0 and len(eid) == EID_LEN:
                for table in tables:
                    # EidTable.get, inlined: this runs for every sighting.
                    table_eids = table._eids
                    size = table._size
                    i = number % size
                    found = table_eids[i]
                    while found:
                        if found == number:
                            slot = table._slots[i]
                            device_id = names[slot % _ID_SHARDS].get(slot)
                            break
                        i += 1
                        if i == size:
                            i = 0
                        found = table_eids[i]
                    if device_id is not None:
                        break
            out.append(device_id)
        return out

    def _probe_tables(self, k: int, counter: int) -> tuple[int, tuple[EidTable, ...]]:
        tables = self._tables[k]
        probed = tuple(
            table
            for window in self.accepted_windows(k, counter)
            if (table := tables.get(window)) is not None
        )
        entry = (counter >> k, probed)
        self._probe[k] = entry
        return entry

    def accepted_windows(self, k: int, counter: int) -> list[int]:
        """Window starts accepted at ``counter``: the current one first, then its neighbours."""
        period = 1 << k
        current = window_start(counter, k)
        out = [current]
        for distance in range(1, self.neighbours + 1):
            out.append((current - distance * period) & _COUNTER_MASK)
            out.append((current + distance * period) & _COUNTER_MASK)
        return out

    def needed_windows(self, k: int, now: float) -> list[int]:
        """Windows whose tables should exist at ``now``: the accepted ones and the next
        one after them (being built ahead, not yet probed)."""
        counter = time_counter(now)
        ahead = (window_start(counter, k) + (self.neighbours + 1) * (1 << k)) & _COUNTER_MASK
        return [*self.accepted_windows(k, counter), ahead]

    def covers(self, now: float) -> bool:
        """True when every accepted window at ``now`` has a complete table."""
        counter = time_counter(now)
        for k, count in enumerate(self._count):
            if count == 0:
                continue
            tables = self._tables.get(k, {})
            for window in self.accepted_windows(k, counter):
                table = tables.get(window)
                if table is None or not table.complete:
                    return False
        return True

    # --- the clock's side: open, fill and drop tables ----------------------------------
    def rotate(self, now: float) -> list[Fill]:
        """Drop the tables no longer needed at ``now``, open the missing ones, and return
        the fills that complete them (cheap when nothing is due: call it often)."""
        # Time only moves forward here: a caller holding an older ``now`` must not drop
        # the table ahead that a newer one just opened.
        now = self._rotated_at = max(now, self._rotated_at)
        if now < self._due:
            return []
        fills: list[Fill] = []
        changed = False
        for k in range(MAX_ROTATION_EXPONENT + 1):
            count = self._count[k]
            tables = self._tables.get(k)
            if count == 0 and not tables:
                continue
            needed: list[int] = []
            if count:
                needed = self.needed_windows(k, now)
                grace = self.accepted_windows(k, time_counter(now - DROP_GRACE_S))
                needed += [w for w in grace if w not in needed]
            if tables is None:
                tables = self._tables[k] = {}
            for window in [w for w in tables if w not in needed]:
                self._drop(tables.pop(window))
                changed = True
            opened: list[EidTable] = []
            for window in needed[: 2 * self.neighbours + 2]:  # not the grace ones
                if window not in tables:
                    self._serial += 1
                    tables[window] = EidTable(k, window, self._serial, count)
                    opened.append(tables[window])
            if opened:
                changed = True
                fills.append(Fill(k, tuple(t.window for t in opened), tuple(opened)))
            if not tables:
                del self._tables[k]
        if changed:
            self._probe.clear()
            self._release_quarantine()
        self._due = self._next_due(now)
        return fills

    def _drop(self, table: EidTable) -> None:
        # Unmapping 20 MB of touched pages is ~10 ms of kernel time on one thread; a big
        # table is handed back a slice at a time by release() instead.
        if table.nbytes > RELEASE_STEP:
            self._retired.append((table, 0))

    def release(self) -> bool:
        """Give one slice of a dropped table's memory back; True while more is left."""
        if not self._retired:
            return False
        table, offset = self._retired.popleft()
        offset = table.release(offset, RELEASE_STEP)
        if offset < table.span:
            self._retired.appendleft((table, offset))
        return bool(self._retired)

    def _next_due(self, now: float) -> float:
        """The next window start of any exponent in use, or the end of a table's grace."""
        due = float("inf")
        for k, count in enumerate(self._count):
            if count == 0 and k not in self._tables:
                continue
            period = 1 << k
            start = now - now % period  # windows start at multiples of 2**K in Unix time
            due = min(due, start + period)
            if now < start + DROP_GRACE_S:
                due = min(due, start + DROP_GRACE_S)
        return due

    def next_rotation(self, now: float) -> float:
        """Seconds until the earliest window change of any indexed rotation exponent."""
        periods = [seconds_until_rotation(now, k) for k, c in enumerate(self._count) if c]
        return min(periods, default=float("inf"))

    def batch(self, k: int, cursor: int, limit: int) -> Batch:
        """Up to ``limit`` occupied slots with exponent ``k``, from slot ``cursor`` on.

        Slots are handed out densely, so a batch is usually one run of consecutive slots:
        found and copied at C speed (``find``, ``lstrip``, one slice of the key array)."""
        exponents = self._exponents
        end = self._slots
        mark = bytes([k])
        runs: list[range] = []
        blobs: list[bytes] = []
        taken = 0
        cursor = exponents.find(mark, cursor, end)
        while cursor != -1 and taken < limit:
            window = exponents[cursor : min(cursor + limit - taken, end)]
            length = len(window) - len(window.lstrip(mark))
            runs.append(range(cursor, cursor + length))
            first, last = cursor * IDENTITY_KEY_LEN, (cursor + length) * IDENTITY_KEY_LEN
            blobs.append(self._keys[first:last])
            taken += length
            cursor = exponents.find(mark, cursor + length, end)
        next_cursor = end if cursor == -1 else cursor
        slots: Sequence[int] = runs[0] if len(runs) == 1 else [s for r in runs for s in r]
        return Batch(k, slots, b"".join(blobs), next_cursor)

    def merge(self, fill: Fill, slots: Sequence[int], eids: Sequence[bytes]) -> None:
        """Enter computed EIDs (per window of ``fill``, 8 bytes per slot end to end) into
        the fill's tables that are still live, for slots still holding the same device."""
        live = self._tables.get(fill.k, {})
        for table, blob in zip(fill.tables, eids, strict=True):
            if live.get(table.window) is table:  # else dropped meanwhile
                self._enter(table, fill.k, slots, blob)

    def finish(self, fill: Fill) -> None:
        """Mark the fill's tables complete (every slot present when it opened is in)."""
        for table in fill.tables:
            table.complete = True

    def _enter(self, table: EidTable, k: int, slots: Sequence[int], blob: bytes) -> None:
        exponents = self._exponents
        put = table.put
        numbers = memoryview(blob).cast("Q")  # native order, as resolve() reads them
        for n, slot in enumerate(slots):
            # An emptied slot has no exponent, and cannot be taken again while this table
            # lives (see _empty), so this finds the slots removed since the keys were read.
            if exponents[slot] != k:
                continue
            put(numbers[n], slot)

    # --- the directory's side ------------------------------------------------------------
    def put(self, device_id: str, identity_key: bytes, k: int) -> int | None:
        """Index ``device_id`` with this key and exponent. Returns the slot whose EIDs the
        caller must compute for :meth:`live_windows` and :meth:`fill_slots`, or None when
        the device was already indexed with this key and exponent."""
        if len(identity_key) != IDENTITY_KEY_LEN:
            raise ValueError("identity key must be 16 bytes")
        check_rotation_exponent(k)
        shard = self._slot_of[hash(device_id) % _ID_SHARDS]
        slot = shard.get(device_id)
        if slot is not None:
            self._marks[slot] = self._mark
            same_key = self._keys[slot * IDENTITY_KEY_LEN : (slot + 1) * IDENTITY_KEY_LEN]
            if self._exponents[slot] == k and same_key == identity_key:
                return None
            self._empty(slot)
        slot = self._take_slot()
        self._names[slot % _ID_SHARDS][slot] = device_id
        self._keys[slot * IDENTITY_KEY_LEN : (slot + 1) * IDENTITY_KEY_LEN] = identity_key
        self._exponents[slot] = k
        self._marks[slot] = self._mark
        shard[device_id] = slot
        self._devices += 1
        self._count[k] += 1
        if self._count[k] == 1:
            self._due = float("-inf")  # a new exponent: its tables must open
        return slot

    def remove(self, device_id: str) -> bool:
        """Stop resolving ``device_id`` (removed, reset, signed out); False if not indexed."""
        slot = self._slot_of[hash(device_id) % _ID_SHARDS].get(device_id)
        if slot is None:
            return False
        self._empty(slot)
        return True

    @property
    def slots(self) -> int:
        """Slots ever handed out (emptied ones are reused, so this stays near the count)."""
        return self._slots

    def count(self, k: int) -> int:
        """How many devices with rotation exponent ``k`` are indexed."""
        return self._count[k]

    @property
    def has_tables(self) -> bool:
        return bool(self._tables)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._slot_of[hash(device_id) % _ID_SHARDS]

    def __len__(self) -> int:
        return self._devices

    def exponent(self, slot: int) -> int:
        return self._exponents[slot]

    def key(self, slot: int) -> bytes:
        return bytes(self._keys[slot * IDENTITY_KEY_LEN : (slot + 1) * IDENTITY_KEY_LEN])

    def live_windows(self, k: int) -> tuple[EidTable, ...]:
        """The tables (accepted and ahead) that a device with exponent ``k`` must be in."""
        return tuple(self._tables.get(k, {}).values())

    def fill_slots(
        self, k: int, tables: Sequence[EidTable], slots: Sequence[int], eids: Sequence[bytes]
    ) -> None:
        """Enter the EIDs computed for ``slots`` into ``tables`` (from :meth:`live_windows`;
        tables dropped meanwhile are skipped)."""
        self.merge(Fill(k, tuple(t.window for t in tables), tuple(tables)), slots, eids)

    def begin_sync(self) -> None:
        """Start a full reconciliation: every device :meth:`put` from now on is kept by
        :meth:`end_sync`; the others are removed."""
        self._mark = self._mark % 255 + 1

    def end_sync(self) -> list[str]:
        """Remove the devices not put since :meth:`begin_sync`; returns their ids."""
        stale = bytes(1 if m not in (0, self._mark) else 0 for m in range(256))
        flags = self._marks[: self._slots].translate(stale)
        removed: list[str] = []
        slot = flags.find(1)
        while slot != -1:
            device_id = self._names[slot % _ID_SHARDS].get(slot)
            if device_id is not None:
                removed.append(device_id)
                self._empty(slot)
            slot = flags.find(1, slot + 1)
        return removed

    def device_ids(self) -> Iterator[str]:
        return iter([i for shard in self._slot_of for i in shard])

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        slot = self._slots
        if slot >= _MAX_SLOTS:
            raise OverflowError("the EID index holds at most 2**32 - 1 devices")
        if slot == self._capacity:
            self._capacity *= 2  # mremap: the pages move, nothing is copied
            self._keys.resize(self._capacity * IDENTITY_KEY_LEN)
            self._exponents.resize(self._capacity)
            self._marks.resize(self._capacity)
        self._slots += 1
        self._exponents[slot] = _NO_DEVICE
        return slot

    def _empty(self, slot: int) -> None:
        device_id = self._names[slot % _ID_SHARDS].pop(slot, None)
        if device_id is not None:
            del self._slot_of[hash(device_id) % _ID_SHARDS][device_id]
            self._devices -= 1
        k = self._exponents[slot]
        self._exponents[slot] = _NO_DEVICE
        self._marks[slot] = 0
        self._count[k] -= 1
        if self._count[k] == 0:
            self._due = float("-inf")  # its tables can go
        if k in self._tables:
            self._quarantine.append((self._serial, k, slot))
        else:
            self._free.append(slot)

    def _release_quarantine(self) -> None:
        """Free emptied slots that no live table can still name."""
        if not self._quarantine:
            return
        oldest = {k: min(t.serial for t in tables.values()) for k, tables in self._tables.items()}
        kept: list[tuple[int, int, int]] = []
        for entry in self._quarantine:
            serial, k, slot = entry
            if k in oldest and oldest[k] <= serial:
                kept.append(entry)
            else:
                self._free.append(slot)
        self._quarantine = kept

    # --- measurement ---------------------------------------------------------------------
    def memory(self) -> IndexMemory:
        """What the index holds, in bytes (walks every id: for benchmarks and diagnostics)."""
        tables = sum(t.nbytes for ts in self._tables.values() for t in ts.values())
        strings = sum(sys.getsizeof(i) for names in self._names for i in names.values())
        slots = (
            self._slots * (IDENTITY_KEY_LEN + 2)  # the used part of the three maps
            + sys.getsizeof(self._free)
            + sum(sys.getsizeof(names) for names in self._names)
            + strings
        )
        # Slot numbers above 256 are int objects of their own, held by the id map.
        id_map = sys.getsizeof(self._slot_of) + sum(
            sys.getsizeof(shard) + sum(sys.getsizeof(s) for s in shard.values() if s > 256)
            for shard in self._slot_of
        )
        return IndexMemory(tables, slots, id_map, self._devices)
