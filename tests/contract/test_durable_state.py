"""Short-lived state kept in the store's database (guess counters and lock-outs without Redis).

The same EphemeralState rules on SQLite and PostgreSQL, with ``now`` moved by the test:
compare-and-set writes decided once when two relay processes race, expiry by ``now``,
and what was written still there after the relay restarts (a new store on the database).
"""

from __future__ import annotations

import asyncio

import pytest

from relay.domain.ephemeral import EphemeralState
from relay.domain.store import RelayStore
from relay.node import build_node
from tests.contract.conftest import OpenStore, StoreBackend
from tests.relay_harness import relay_settings

NOW = 1_800_000_000.0


def durable_state(store: RelayStore) -> EphemeralState:
    """What a relay without Redis keeps its guess counters in, as the composition root
    builds it."""
    node = build_node(relay_settings("unused"), store=store)  # type: ignore[arg-type]
    if node.guesses is node.ephemeral:
        pytest.skip("this backend keeps short-lived state in memory only")
    return node.guesses


async def test_compare_and_set_and_expiry_follow_now(store: RelayStore) -> None:
    state = durable_state(store)
    assert await state.add("k", "a", 10, NOW) is True
    assert await state.add("k", "b", 10, NOW + 1) is False
    assert await state.replace("k", "x", "c", 10, NOW + 1) is False
    assert await state.replace("k", "a", "c", 10, NOW + 1) is True
    assert await state.get("k", NOW + 10.5) == "c"  # replace restarted the TTL
    assert await state.get("k", NOW + 11) is None
    assert await state.add("k", "d", 10, NOW + 11) is True  # an expired key is absent
    assert await state.delete("k", NOW + 12, expected="zzz") is False
    assert await state.delete("k", NOW + 12, expected="d") is True
    assert await state.delete("k", NOW + 12) is False

    await state.set_many([("a", "1"), ("b", "2")], 5, NOW)
    await state.set("c", "3", 50, NOW)
    assert await state.get_many(["b", "missing", "a", "c"], NOW + 1) == ["2", None, "1", "3"]
    assert await state.get_many([], NOW) == []
    await state.purge(NOW + 6)
    assert await state.get_many(["a", "b", "c"], NOW + 1) == [None, None, "3"]


async def test_counters_count_within_their_window_then_start_again(store: RelayStore) -> None:
    state = durable_state(store)
    assert [await state.incr("guesses", 60, NOW + i) for i in range(3)] == [1, 2, 3]
    assert await state.incr("guesses", 60, NOW + 59) == 4  # the window does not slide
    assert await state.incr("guesses", 60, NOW + 60) == 1


async def test_counters_raced_by_two_relays_lose_no_increment_and_survive_a_restart(
    backend: StoreBackend, store: RelayStore, store_factory: OpenStore
) -> None:
    first, second = durable_state(store), durable_state(await store_factory())
    counts = await asyncio.gather(
        *(state.incr("lockout:1.2.3.4", 600, NOW) for _ in range(10) for state in (first, second))
    )
    assert sorted(counts) == list(range(1, 21))
    won = await asyncio.gather(*(s.add("alert", s_name, 60, NOW) for s, s_name in
                                 ((first, "first"), (second, "second"))))
    assert sorted(won) == [False, True]
    await store.close()
    restarted = durable_state(await store_factory())
    assert await restarted.incr("lockout:1.2.3.4", 600, NOW + 1) == 21
    assert await restarted.get("alert", NOW + 1) in ("first", "second")
