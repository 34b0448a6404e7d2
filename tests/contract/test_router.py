"""The Router contract, against the in-process router and the Redis router; then what only
a cluster has: several nodes on one Redis, a node that dies, Redis restarting.

Sessions are plain objects implementing :class:`relay.domain.sessions.Session` (what the router
sees of a websocket connection); Redis is a real ``redis-server`` on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relay.domain.metrics import RelayMetrics
from relay.domain.routing import LocalRouter, Router
from relay.domain.sessions import SessionKeys
from relay.protocol.wire import CloseCode
from tests.cluster_harness import RedisServer


@dataclass(eq=False)
class FakeSession:
    keys: SessionKeys
    accepting: bool = True
    received: list[str] = field(default_factory=list)
    ended: tuple[int, str] | None = None

    def push(self, message: str) -> bool:
        if not self.accepting or self.ended is not None:
            return False
        self.received.append(message)
        return True

    def end(self, code: int, reason: str) -> None:
        if self.ended is None:
            self.ended = (code, reason)


def phone(device_id: str = "d1", tenant: str = "t1", credential: str = "c1") -> FakeSession:
    return FakeSession(SessionKeys(credential, tenant, device_id=device_id))


def laptop(user: str = "u1", tenant: str = "t1", credential: str = "cu1") -> FakeSession:
    return FakeSession(SessionKeys(credential, tenant, user_id=user))


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def failed(metrics: RelayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "btogether_relay_failed_deliveries_total", {"reason": reason}
    )
    return value or 0.0


Factory = Callable[..., Awaitable[Router]]


@pytest.fixture
async def routers(
    request: pytest.FixtureRequest, namespace: str
) -> AsyncIterator[Factory]:
    """``make(metrics=None)`` builds a started router of the backend under test (Redis:
    every router made in one test is a node of the same cluster)."""
    made: list[Router] = []
    kind = request.param

    async def make(metrics: RelayMetrics | None = None, **options: float) -> Router:
        router: Router
        if kind == "local":
            router = LocalRouter(metrics)
        else:
            from relay.storage.redis_state import RedisRouter

            server: RedisServer = request.getfixturevalue("redis_server")
            router = RedisRouter(server.url, namespace=namespace, metrics=metrics, **options)
        await router.start()
        made.append(router)
        return router

    try:
        yield make
    finally:
        for router in made:
            await router.stop()


both = pytest.mark.parametrize("routers", ["local", "redis"], indirect=True)
redis_only = pytest.mark.parametrize("routers", ["redis"], indirect=True)


# --- the contract ------------------------------------------------------------------------


@both
async def test_attached_session_is_online_and_gets_deliveries(routers: Factory) -> None:
    router = await routers()
    session = phone()
    assert not await router.is_online("device/d1")
    await router.attach("device/d1", session)
    assert await router.is_online("device/d1")
    assert await router.deliver("device/d1", '{"type":"x"}')
    assert session.received == ['{"type":"x"}']


@both
async def test_detached_session_is_offline_and_delivery_fails_and_is_counted(
    routers: Factory,
) -> None:
    metrics = RelayMetrics()
    router = await routers(metrics)
    session = phone()
    await router.attach("device/d1", session)
    assert await router.detach("device/d1", session)
    assert not await router.detach("device/d1", session)
    assert not await router.is_online("device/d1")
    assert not await router.deliver("device/d1", "lost")
    assert session.received == []
    assert failed(metrics, "offline") == 1


@both
async def test_a_session_that_refuses_the_message_fails_the_delivery(routers: Factory) -> None:
    metrics = RelayMetrics()
    router = await routers(metrics)
    session = phone()
    session.accepting = False
    await router.attach("device/d1", session)
    assert not await router.deliver("device/d1", "x")
    assert failed(metrics, "refused") == 1


@both
async def test_a_newer_session_at_the_address_replaces_the_older(routers: Factory) -> None:
    router = await routers()
    old, new = phone(), phone()
    await router.attach("device/d1", old)
    await router.attach("device/d1", new)
    assert old.ended is not None and old.ended[0] == CloseCode.REPLACED
    assert new.ended is None
    assert not await router.detach("device/d1", old)  # the old one no longer holds it
    assert await router.is_online("device/d1")
    assert await router.deliver("device/d1", "to the new one")
    assert new.received == ["to the new one"] and old.received == []


@both
async def test_end_sessions_closes_every_match_and_counts_them(routers: Factory) -> None:
    router = await routers()
    a, b, other = laptop("u1"), laptop("u1"), laptop("u2", credential="cu2")
    await router.attach("laptop/u1/l1", a)
    await router.attach("laptop/u1/l2", b)
    await router.attach("laptop/u2/l1", other)
    assert router.local_count(("user", "u1")) == 2
    assert set(router.local_sessions(("user", "u1"))) == {a, b}
    assert await router.end_sessions(("user", "u1"), CloseCode.REVOKED, "gone") == 2
    assert a.ended == (CloseCode.REVOKED, "gone") and b.ended == (CloseCode.REVOKED, "gone")
    assert other.ended is None
    assert await router.end_sessions(("tenant", "nobody"), CloseCode.REVOKED, "x") == 0


@both
async def test_local_counts_follow_attach_and_detach(routers: Factory) -> None:
    router = await routers()
    session = phone(credential="c9")
    await router.attach("device/d1", session)
    assert router.local_count(("credential", "c9")) == 1
    assert router.local_count(("tenant", "t1")) == 1
    await router.detach("device/d1", session)
    assert router.local_count(("credential", "c9")) == 0
    assert router.local_sessions(("device", "d1")) == []


# --- a cluster: several nodes on one Redis ---------------------------------------------------


@redis_only
async def test_delivery_reaches_a_session_on_another_node(routers: Factory) -> None:
    node_a, node_b = await routers(), await routers()
    session = phone()
    await node_b.attach("device/d1", session)
    assert await node_a.is_online("device/d1")
    assert await node_a.deliver("device/d1", "lock")
    await eventually(lambda: session.received == ["lock"])
    assert node_a.local_count(("device", "d1")) == 0  # held by B, not A


@redis_only
async def test_a_connection_replaced_on_another_node_is_closed_by_its_node(
    routers: Factory,
) -> None:
    node_a, node_b = await routers(), await routers()
    old, new = phone(), phone()
    await node_a.attach("device/d1", old)
    await node_b.attach("device/d1", new)
    await eventually(lambda: old.ended is not None)
    assert old.ended is not None and old.ended[0] == CloseCode.REPLACED
    assert node_a.local_count(("device", "d1")) == 0
    # The closing session's own detach does not take the address from the new one.
    assert not await node_a.detach("device/d1", old)
    assert await node_a.is_online("device/d1")
    assert await node_a.deliver("device/d1", "to B")
    await eventually(lambda: new.received == ["to B"])


@redis_only
async def test_end_sessions_reaches_every_node(routers: Factory) -> None:
    node_a, node_b = await routers(), await routers()
    on_a, on_b = phone("d1", credential="c1"), phone("d2", credential="c1")
    await node_a.attach("device/d1", on_a)
    await node_b.attach("device/d2", on_b)
    assert await node_a.end_sessions(("credential", "c1"), CloseCode.REVOKED, "revoked") == 1
    await eventually(lambda: on_b.ended is not None)
    assert on_a.ended == on_b.ended == (CloseCode.REVOKED, "revoked")


@redis_only
async def test_a_dead_nodes_connections_are_forgotten(routers: Factory) -> None:
    node_a = await routers()
    node_b = await routers(heartbeat_s=0.1, node_ttl_s=0.5)
    await node_b.attach("device/d1", phone())
    assert await node_a.is_online("device/d1")
    for task in node_b._tasks:  # type: ignore[attr-defined]
        task.cancel()  # node B freezes: no heartbeat, no cleanup (as under kill -9)
    await asyncio.sleep(0.7)
    assert not await node_a.is_online("device/d1")
    metrics_before = node_a.failed_deliveries  # type: ignore[attr-defined]
    assert not await node_a.deliver("device/d1", "nobody")
    assert node_a.failed_deliveries == metrics_before + 1  # type: ignore[attr-defined]


@redis_only
async def test_a_node_holding_nothing_is_told_nothing(routers: Factory) -> None:
    node_a, node_b = await routers(), await routers()
    session = phone()
    await node_a.attach("device/d1", session)
    await node_a.detach("device/d1", session)
    assert not await node_b.is_online("device/d1")
    assert not await node_b.deliver("device/d1", "x")


async def test_after_a_redis_restart_nodes_resubscribe_and_redeliver(
    tmp_path: Path, namespace: str
) -> None:
    """Redis restarts and forgets everything (no persistence): both nodes subscribe again
    by themselves, write their presence again, and call their resync callbacks (where
    the relay re-sends pending lock commands); delivery across nodes works again."""
    from relay.storage.redis_state import RedisRouter

    server = RedisServer(tmp_path / "redis").start()
    metrics = RelayMetrics()
    node_a = RedisRouter(server.url, namespace=namespace, metrics=metrics, heartbeat_s=0.2)
    node_b = RedisRouter(server.url, namespace=namespace, heartbeat_s=0.2)
    resyncs: list[str] = []

    async def resynced() -> None:
        resyncs.append("b")

    node_b.on_resync(resynced)
    await node_a.start()
    await node_b.start()
    try:
        here, there = laptop(), phone()
        await node_a.attach("laptop/u1/l1", here)
        await node_b.attach("device/d1", there)
        resyncs.clear()
        server.stop()
        # Redis is away: a node still reaches its own sessions, and says so when it cannot.
        assert await node_a.deliver("laptop/u1/l1", "local")
        assert here.received == ["local"]
        assert await node_a.is_online("laptop/u1/l1")
        assert not await node_a.deliver("device/d1", "cannot reach B")
        assert failed(metrics, "unreachable") == 1
        server.start()
        await eventually(lambda: node_a.subscribed and node_b.subscribed and bool(resyncs), 10)
        await eventually(lambda: node_a.is_online("device/d1"), 5)
        assert await node_b.is_online("laptop/u1/l1")
        assert await node_a.deliver("device/d1", "after the restart")
        await eventually(lambda: there.received == ["after the restart"])
    finally:
        await node_a.stop()
        await node_b.stop()
        server.stop()


async def test_a_replacement_made_while_redis_was_away_keeps_the_newest_connection(
    tmp_path: Path, namespace: str
) -> None:
    from relay.storage.redis_state import RedisRouter

    server = RedisServer(tmp_path / "redis").start()
    node_a = RedisRouter(server.url, namespace=namespace, heartbeat_s=0.2)
    node_b = RedisRouter(server.url, namespace=namespace, heartbeat_s=0.2)
    await node_a.start()
    await node_b.start()
    try:
        old, new = phone(), phone()
        await node_a.attach("device/d1", old)
        server.stop()
        await asyncio.sleep(0.05)
        await node_b.attach("device/d1", new)  # the phone reconnected elsewhere meanwhile
        server.start()
        await eventually(lambda: old.ended is not None, 10)
        assert old.ended is not None and old.ended[0] == CloseCode.REPLACED
        assert new.ended is None
        assert await node_a.deliver("device/d1", "newest")
        await eventually(lambda: new.received == ["newest"])
    finally:
        await node_a.stop()
        await node_b.stop()
        server.stop()


async def test_router_refuses_a_url_that_is_not_redis() -> None:
    from relay.storage.redis_state import RedisRouter

    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisRouter("http://127.0.0.1:1/")


async def test_a_node_does_not_start_without_its_redis(namespace: str) -> None:
    from relay.storage.redis_state import RedisRouter, SharedStateUnavailable
    from tests.cluster_harness import free_port

    router = RedisRouter(f"redis://127.0.0.1:{free_port()}/0", namespace=namespace)
    with pytest.raises(SharedStateUnavailable, match=r"cannot reach Redis at 127\.0\.0\.1:"):
        await router.start()
    await router.stop()


async def test_a_node_with_many_connections_writes_them_all_back_after_a_restart(
    tmp_path: Path, namespace: str
) -> None:
    from relay.storage.redis_state import RedisRouter

    server = RedisServer(tmp_path / "redis").start()
    batch = 40  # pipelined batches of 40 here (1000 in production)
    node_a = RedisRouter(server.url, namespace=namespace, heartbeat_s=0.2, batch=batch)
    node_b = RedisRouter(server.url, namespace=namespace, heartbeat_s=0.2)
    await node_a.start()
    await node_b.start()
    count = 2 * batch + 7  # more than one batch
    try:
        for i in range(count):
            await node_a.attach(f"device/d{i}", phone(f"d{i}", credential=f"c{i}"))
        server.stop()
        server.start()
        await eventually(lambda: node_b.is_online(f"device/d{count - 1}"), 10)
        online = [await node_b.is_online(f"device/d{i}") for i in range(count)]
        assert all(online)
        await node_a.stop()  # leaves cleanly: every entry is dropped
        assert not await node_b.is_online("device/d0")
        assert not await node_b.is_online(f"device/d{count - 1}")
    finally:
        await node_a.stop()
        await node_b.stop()
        server.stop()


async def test_a_node_stops_in_bounded_time_while_its_redis_answers_nothing(
    tmp_path: Path, namespace: str
) -> None:
    """SIGTERM must end a node even when Redis hangs (here: frozen with SIGSTOP, so its
    sockets stay open and nothing answers): every call is bounded, and so is stop()."""
    import os
    import signal

    from relay.storage.redis_state import RedisRouter

    server = RedisServer(tmp_path / "redis").start()
    node = RedisRouter(server.url, namespace=namespace, heartbeat_s=0.2)
    await node.start()
    assert server.process is not None
    pid = server.process.pid
    try:
        await node.attach("device/d1", phone("d1"))
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(0.5)  # the heartbeat and the subscription now wait on Redis
        started = time.monotonic()
        await asyncio.wait_for(node.stop(), 30)
        assert time.monotonic() - started < 20
    finally:
        os.kill(pid, signal.SIGCONT)
        server.stop()


@redis_only
async def test_a_message_a_live_node_did_not_hear_makes_every_node_resync(
    routers: Factory, request: pytest.FixtureRequest, namespace: str
) -> None:
    """A node whose subscription is reconnecting is alive but hears nothing: the sender
    counts the failure and asks every node to resync, and each re-sends what is durable
    (the relay: pending lock commands) to its own connections."""
    from redis import asyncio as aioredis

    metrics = RelayMetrics()
    node_a, node_b = await routers(metrics), await routers()
    resynced: list[str] = []

    async def resync() -> None:
        resynced.append("b")

    node_b.on_resync(resync)
    server: RedisServer = request.getfixturevalue("redis_server")
    deaf = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        # A node with a heartbeat but no subscription holds device/x.
        await deaf.set(f"{namespace}:r:n:deaf", "1", px=5000)
        await deaf.set(f"{namespace}:r:p:device/x", "deaf|1|0")
        assert await node_a.is_online("device/x")
        assert not await node_a.deliver("device/x", "lost")
        assert failed(metrics, "unreachable") == 1
        await eventually(lambda: bool(resynced), 5)
    finally:
        await deaf.aclose()


# --- deliveries made in one loop iteration share one round trip ----------------------------


async def attach_all(router: Router, sessions: dict[str, FakeSession]) -> dict[str, FakeSession]:
    for address, session in sessions.items():
        await router.attach(address, session)
    return sessions


@redis_only
async def test_deliveries_made_at_once_are_each_answered_and_arrive_in_order(
    routers: Factory,
) -> None:
    """Many requests route at the same moment (a node under load): their deliveries go to
    Redis as one pipeline, and each is still answered for itself — held on another node,
    held here, or nobody — with the messages for one address in the order they were made."""
    metrics = RelayMetrics()
    node_a, node_b = await routers(metrics), await routers()
    remote = await attach_all(node_b, {f"device/r{n}": phone(f"r{n}") for n in range(20)})
    local = await attach_all(node_a, {f"device/l{n}": phone(f"l{n}") for n in range(5)})
    offline = [f"device/gone{n}" for n in range(5)]
    deliveries = [
        *((address, f"{address} #{k}") for k in range(3) for address in remote),
        *((address, f"{address} #0") for address in local),
        *((address, "lost") for address in offline),
    ]
    answers = await asyncio.gather(*(node_a.deliver(a, m) for a, m in deliveries))
    assert answers == [not a.startswith("device/gone") for a, _ in deliveries]
    assert failed(metrics, "offline") == len(offline)
    for address, session in local.items():
        assert session.received == [f"{address} #0"]
    await eventually(lambda: all(len(s.received) == 3 for s in remote.values()))
    for address, session in remote.items():
        assert session.received == [f"{address} #{k}" for k in range(3)]


@redis_only
async def test_a_batch_of_deliveries_survives_redis_forgetting_the_script(
    routers: Factory, request: pytest.FixtureRequest
) -> None:
    """SCRIPT FLUSH (or a restart) between batches: the refused EVALSHAs ran nothing, so
    the node loads the script and runs exactly those again — each message arrives once."""
    from redis import asyncio as aioredis

    node_a, node_b = await routers(), await routers()
    sessions = await attach_all(node_b, {f"device/d{n}": phone(f"d{n}") for n in range(8)})
    server: RedisServer = request.getfixturevalue("redis_server")
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await admin.script_flush()
    finally:
        await admin.aclose()
    answers = await asyncio.gather(*(node_a.deliver(a, f"to {a}") for a in sessions))
    assert answers == [True] * len(sessions)
    await eventually(lambda: all(s.received for s in sessions.values()))
    for address, session in sessions.items():
        assert session.received == [f"to {address}"]


async def test_a_batch_of_deliveries_while_redis_is_away_falls_back_to_this_node(
    tmp_path: Path, namespace: str
) -> None:
    """Redis is away when a batch goes out: the deliveries to this node's own sessions are
    still made, the others fail as unreachable, one by one and counted."""
    from relay.storage.redis_state import RedisRouter

    server = RedisServer(tmp_path / "redis").start()
    metrics = RelayMetrics()
    node_a = RedisRouter(server.url, namespace=namespace, metrics=metrics)
    node_b = RedisRouter(server.url, namespace=namespace)
    await node_a.start()
    await node_b.start()
    try:
        here = await attach_all(node_a, {f"laptop/u{n}/l": laptop(f"u{n}") for n in range(3)})
        there = await attach_all(node_b, {f"device/d{n}": phone(f"d{n}") for n in range(3)})
        server.stop()
        targets = [*here, *there]
        answers = await asyncio.gather(*(node_a.deliver(a, "m") for a in targets))
        assert answers == [True] * len(here) + [False] * len(there)
        assert all(s.received == ["m"] for s in here.values())
        assert failed(metrics, "unreachable") == len(there)
    finally:
        await node_a.stop()
        await node_b.stop()
        server.stop()


# --- a resync racing the node's own connections ----------------------------------------------


def once_before(owner: Any, name: str, step: Callable[[], Awaitable[None]]) -> None:
    """The next call of the coroutine method ``owner.<name>`` runs ``step`` first."""
    call = getattr(owner, name)

    async def first(*args: object, **kwargs: object) -> object:
        setattr(owner, name, call)  # once
        await step()
        return await call(*args, **kwargs)

    setattr(owner, name, first)


def before_the_next_pipeline(router: Router, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` just before the router's next pipelined round trip goes to Redis: a
    connection attaching or leaving while a resync has read what it will write."""
    redis = router.redis  # type: ignore[attr-defined]
    make = redis.pipeline

    def pipeline(*args: object, **kwargs: object) -> object:
        redis.pipeline = make  # once
        pipe = make(*args, **kwargs)
        once_before(pipe, "execute", step)
        return pipe

    redis.pipeline = pipeline


async def resync_now(router: Router, server: RedisServer, namespace: str) -> None:
    """Ask the router to resync, as another node does after an outage, and wait for it."""
    from redis import asyncio as aioredis

    done = asyncio.Event()

    async def resynced() -> None:
        done.set()

    router.on_resync(resynced)
    other = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await other.publish(f"{namespace}:r:c:all", '{"op":"resync","origin":"other"}')
    finally:
        await other.aclose()
    await asyncio.wait_for(done.wait(), 5)


@redis_only
async def test_a_phone_reconnecting_while_its_node_resyncs_stays_online_and_leaves_cleanly(
    routers: Factory, request: pytest.FixtureRequest, namespace: str
) -> None:
    """The resync has read the old connection's presence; the old connection leaves and
    the new one attaches before the resync writes: the resync must not put the old one's
    entry back over the new one's (the new one, leaving, would leave a ghost behind)."""
    node_a, node_b = await routers(), await routers()
    old, new = phone(), phone()
    await node_a.attach("device/d1", old)

    async def reconnect() -> None:
        await node_a.detach("device/d1", old)
        await node_a.attach("device/d1", new)

    before_the_next_pipeline(node_a, reconnect)
    await resync_now(node_a, request.getfixturevalue("redis_server"), namespace)
    assert new.ended is None
    assert await node_b.deliver("device/d1", "after the resync")
    await eventually(lambda: new.received == ["after the resync"])
    await node_a.detach("device/d1", new)
    assert not await node_b.is_online("device/d1")


@redis_only
async def test_a_phone_attaching_while_its_node_drops_stale_presence_stays_online(
    routers: Factory, request: pytest.FixtureRequest, namespace: str
) -> None:
    """A detach lost during an outage leaves the address registered to the node; the
    resync drops it — and must not drop the connection that attached meanwhile."""
    from redis import asyncio as aioredis

    server: RedisServer = request.getfixturevalue("redis_server")
    node_a, node_b = await routers(), await routers()
    gone, new = phone(), phone()
    await node_a.attach("device/d1", gone)
    await node_a.detach("device/d1", gone)
    raw = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:  # the detach that Redis never saw
        await raw.sadd(f"{namespace}:r:a:{node_a.node_id}", "device/d1")  # type: ignore[attr-defined]
    finally:
        await raw.aclose()

    async def attach() -> None:
        await node_a.attach("device/d1", new)

    before_the_next_pipeline(node_a, attach)
    await resync_now(node_a, server, namespace)
    assert await node_b.is_online("device/d1")
    assert await node_b.deliver("device/d1", "still here")
    await eventually(lambda: new.received == ["still here"])


@redis_only
async def test_news_of_an_earlier_connection_elsewhere_does_not_close_a_later_one(
    routers: Factory, request: pytest.FixtureRequest, namespace: str
) -> None:
    """The phone attached on another node, then back here, before the other node's news
    arrived: Redis holds this node's (later) attach, so the late news closes nothing;
    news of a later attach elsewhere still closes the session here."""
    from redis import asyncio as aioredis

    server: RedisServer = request.getfixturevalue("redis_server")
    node_a = await routers()
    here = phone()
    await node_a.attach("device/d1", here)
    raw = aioredis.Redis.from_url(server.url, decode_responses=True)
    channel = f"{namespace}:r:c:all"
    try:
        earlier = '{"op":"replaced","address":"device/d1","value":"b|1|0","origin":"b"}'
        await raw.publish(channel, earlier)
        await asyncio.sleep(0.3)
        assert here.ended is None
        assert await node_a.deliver("device/d1", "still here")
        assert here.received == ["still here"]
        # A later attach on node b: Redis holds b's value, and the news closes this one.
        await raw.set(f"{namespace}:r:p:device/d1", "b|2|1")
        await raw.publish(channel, earlier.replace("b|1|0", "b|2|1"))
        await eventually(lambda: here.ended is not None)
        assert here.ended is not None and here.ended[0] == CloseCode.REPLACED
    finally:
        await raw.aclose()


def on_the_next_script_call(router: Router, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` just before the router's next script call goes to Redis (another
    connection's call overtaking it on the way; or a step that raises, as redis-py does
    when Redis cannot be reached)."""
    once_before(router.redis, "evalsha", step)  # type: ignore[attr-defined]


@redis_only
async def test_a_detach_overtaken_by_the_next_attach_leaves_it_registered_for_cleanup(
    routers: Factory, request: pytest.FixtureRequest, namespace: str
) -> None:
    """The old connection's detach reaches Redis after the new connection's attach: the
    new entry stays — and stays in the node's registry, so that when the new connection's
    own detach is lost (Redis unreachable at that moment), the next resync drops it."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    node_a, node_b = await routers(), await routers()
    old, new = phone(), phone()
    await node_a.attach("device/d1", old)

    async def reconnect() -> None:
        await node_a.attach("device/d1", new)

    on_the_next_script_call(node_a, reconnect)
    await node_a.detach("device/d1", old)
    assert await node_b.is_online("device/d1")

    async def unreachable() -> None:
        raise RedisConnectionError("Connection refused")

    on_the_next_script_call(node_a, unreachable)
    assert await node_a.detach("device/d1", new)
    assert await node_b.is_online("device/d1")  # the lost detach's entry is still there
    await resync_now(node_a, request.getfixturevalue("redis_server"), namespace)
    assert not await node_b.is_online("device/d1")
