"""The EphemeralState contract, against every backend: in memory, the SQLite file, Redis.

Time is real (Redis expires keys on its own clock), so expiry is checked with short
TTLs and short sleeps; each backend is given ``time.time()`` as ``now``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.domain.ephemeral import EphemeralState, MemoryEphemeral
from relay.storage.sqlite_ephemeral import SqliteEphemeral
from relay.storage.sqlite_store import SqliteStore
from tests.cluster_harness import RedisServer

SHORT = 0.15  # a TTL that expires during the test
WAIT = 0.35  # long enough for SHORT to pass on a busy machine


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def state(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[EphemeralState]:
    if request.param == "memory":
        yield MemoryEphemeral()
    elif request.param == "sqlite":
        store = SqliteStore(tmp_path / "relay.sqlite3")
        await store.open()
        try:
            yield SqliteEphemeral(store)
        finally:
            await store.close()
    else:
        from relay.storage.redis_state import RedisEphemeral

        server: RedisServer = request.getfixturevalue("redis_server")
        redis_state = RedisEphemeral(server.url, namespace=namespace)
        try:
            yield redis_state
        finally:
            await redis_state.close()


def now() -> float:
    return time.time()


async def test_a_value_set_is_read_back_until_its_ttl_passes(state: EphemeralState) -> None:
    await state.set("k", "v1", SHORT, now())
    assert await state.get("k", now()) == "v1"
    await asyncio.sleep(WAIT)
    assert await state.get("k", now()) is None


async def test_set_overwrites_and_restarts_the_ttl(state: EphemeralState) -> None:
    await state.set("k", "v1", SHORT, now())
    await state.set("k", "v2", 60.0, now())
    await asyncio.sleep(WAIT)
    assert await state.get("k", now()) == "v2"


async def test_get_many_answers_in_order_with_none_for_missing(state: EphemeralState) -> None:
    await state.set_many([("a", "1"), ("c", "3")], 60.0, now())
    assert await state.get_many(["a", "b", "c"], now()) == ["1", None, "3"]
    assert await state.get_many([], now()) == []
    await state.set_many([], 60.0, now())  # nothing to set is fine


async def test_set_many_gives_every_key_the_ttl(state: EphemeralState) -> None:
    await state.set_many([("a", "1"), ("b", "2")], SHORT, now())
    await asyncio.sleep(WAIT)
    assert await state.get_many(["a", "b"], now()) == [None, None]


async def test_add_sets_only_an_absent_or_expired_key(state: EphemeralState) -> None:
    assert await state.add("k", "first", SHORT, now())
    assert not await state.add("k", "second", 60.0, now())
    assert await state.get("k", now()) == "first"
    await asyncio.sleep(WAIT)
    assert await state.add("k", "third", 60.0, now())
    assert await state.get("k", now()) == "third"


async def test_replace_needs_the_value_the_caller_read(state: EphemeralState) -> None:
    assert not await state.replace("k", "x", "y", 60.0, now())  # absent
    assert await state.get("k", now()) is None
    await state.set("k", "read", 60.0, now())
    assert not await state.replace("k", "stale", "new", 60.0, now())
    assert await state.get("k", now()) == "read"
    assert await state.replace("k", "read", "new", 60.0, now())
    assert await state.get("k", now()) == "new"


async def test_replace_sets_the_new_ttl(state: EphemeralState) -> None:
    await state.set("k", "read", 60.0, now())
    assert await state.replace("k", "read", "new", SHORT, now())
    await asyncio.sleep(WAIT)
    assert await state.get("k", now()) is None


async def test_replace_of_an_expired_key_fails(state: EphemeralState) -> None:
    await state.set("k", "read", SHORT, now())
    await asyncio.sleep(WAIT)
    assert not await state.replace("k", "read", "new", 60.0, now())
    assert await state.get("k", now()) is None


async def test_delete_with_expected_deletes_only_that_value(state: EphemeralState) -> None:
    await state.set("k", "mine", 60.0, now())
    assert not await state.delete("k", now(), expected="theirs")
    assert await state.get("k", now()) == "mine"
    assert await state.delete("k", now(), expected="mine")
    assert await state.get("k", now()) is None
    assert not await state.delete("k", now(), expected="mine")


async def test_delete_says_whether_there_was_something(state: EphemeralState) -> None:
    assert not await state.delete("k", now())
    await state.set("k", "v", 60.0, now())
    assert await state.delete("k", now())
    assert await state.get("k", now()) is None


async def test_counter_counts_and_its_window_starts_at_the_first_count(
    state: EphemeralState,
) -> None:
    assert await state.incr("n", SHORT, now()) == 1
    assert await state.incr("n", SHORT, now()) == 2
    assert await state.incr("n", 60.0, now()) == 3  # a later count does not extend it
    await asyncio.sleep(WAIT)
    assert await state.incr("n", 60.0, now()) == 1


async def test_concurrent_adds_have_exactly_one_winner(state: EphemeralState) -> None:
    results = await asyncio.gather(*(state.add("k", str(i), 60.0, now()) for i in range(20)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await state.get("k", now()) == str(winner)


async def test_concurrent_compare_and_set_has_exactly_one_winner(state: EphemeralState) -> None:
    await state.set("k", "0", 60.0, now())
    results = await asyncio.gather(
        *(state.replace("k", "0", f"by-{i}", 60.0, now()) for i in range(20))
    )
    assert results.count(True) == 1
    assert await state.get("k", now()) == f"by-{results.index(True)}"


async def test_concurrent_counts_are_all_counted(state: EphemeralState) -> None:
    counts = await asyncio.gather(*(state.incr("n", 60.0, now()) for _ in range(25)))
    assert sorted(counts) == list(range(1, 26))


async def test_purge_keeps_live_values(state: EphemeralState) -> None:
    await state.set("live", "1", 60.0, now())
    await state.set("dying", "1", SHORT, now())
    await asyncio.sleep(WAIT)
    await state.purge(now())
    assert await state.get_many(["live", "dying"], now()) == ["1", None]


async def test_keys_set_together_expire_together_unless_one_is_set_again(
    state: EphemeralState,
) -> None:
    await state.set_many([("a", "1"), ("b", "1"), ("c", "1")], SHORT, now())
    await state.set("b", "2", 60.0, now())  # written again with a longer life
    await asyncio.sleep(WAIT)
    await state.purge(now())
    assert await state.get_many(["a", "b", "c"], now()) == [None, "2", None]


# --- Redis only: what several nodes and an outage look like ------------------------------


async def test_two_nodes_share_state_and_one_compare_and_set_wins(
    redis_server: RedisServer, namespace: str
) -> None:
    from relay.storage.redis_state import RedisEphemeral

    node_a = RedisEphemeral(redis_server.url, namespace=namespace)
    node_b = RedisEphemeral(redis_server.url, namespace=namespace)
    try:
        await node_a.set("pair:1", "pending", 60.0, now())
        assert await node_b.get("pair:1", now()) == "pending"
        won = await asyncio.gather(
            node_a.replace("pair:1", "pending", "a", 60.0, now()),
            node_b.replace("pair:1", "pending", "b", 60.0, now()),
        )
        assert sorted(won) == [False, True]
        assert await node_a.get("pair:1", now()) == ("a" if won[0] else "b")
        # Counters (guesses, lock-outs) are shared too: a second node adds to the first's.
        assert await node_a.incr("guess:d1", 60.0, now()) == 1
        assert await node_b.incr("guess:d1", 60.0, now()) == 2
    finally:
        await node_a.close()
        await node_b.close()


async def test_another_namespace_sees_nothing(redis_server: RedisServer, namespace: str) -> None:
    from relay.storage.redis_state import RedisEphemeral

    mine = RedisEphemeral(redis_server.url, namespace=namespace)
    other = RedisEphemeral(redis_server.url, namespace=namespace + "x")
    try:
        await mine.set("k", "v", 60.0, now())
        assert await other.get("k", now()) is None
    finally:
        await mine.close()
        await other.close()


async def test_redis_down_is_unavailable_then_works_again_after_restart(
    tmp_path: Path, namespace: str
) -> None:
    from relay.domain.store import StoreUnavailable
    from relay.storage.redis_state import RedisEphemeral, SharedStateUnavailable

    server = RedisServer(tmp_path / "redis").start()
    state = RedisEphemeral(server.url, namespace=namespace)
    try:
        await state.set("k", "v", 60.0, now())
        server.stop()
        started = time.monotonic()
        with pytest.raises(SharedStateUnavailable):
            await state.get("k", now())
        with pytest.raises(StoreUnavailable):  # what the request pipeline answers unavailable
            await state.add("k2", "v", 60.0, now())
        assert time.monotonic() - started < 5.0  # fails fast, not after a long hang
        server.start()
        # Same client, no restart of ours: it reconnects by itself. The restarted Redis
        # kept nothing (no persistence): short-lived state is gone, as designed.
        assert await state.get("k", now()) is None
        await state.set("k", "again", 60.0, now())
        assert await state.get("k", now()) == "again"
    finally:
        await state.close()
        server.stop()


async def test_more_calls_at_once_than_the_node_keeps_connections_all_succeed(
    redis_server: RedisServer, namespace: str
) -> None:
    """A busy node has more Redis calls in flight than connections to Redis (a thousand
    lock round trips at once): they wait their turn for a connection, none fails."""
    from relay.storage.redis_state import REDIS_CONNECTIONS, RedisEphemeral

    state = RedisEphemeral(redis_server.url, namespace=namespace)
    try:
        calls = 5 * REDIS_CONNECTIONS
        await asyncio.gather(*(state.set(f"k{n}", str(n), 60.0, now()) for n in range(calls)))
        values = await asyncio.gather(*(state.get(f"k{n}", now()) for n in range(calls)))
        assert values == [str(n) for n in range(calls)]
    finally:
        await state.close()
