"""Short-lived shared state, presence and delivery between relay nodes, on Redis.

A cluster of relay nodes shares two things through one Redis server:

* :class:`RedisEphemeral` — :class:`relay.domain.ephemeral.EphemeralState` on Redis keys with
  expiry (``SET … PX``): pending pair requests, audio hand-offs, join prompts, recent
  sightings, login codes and their rendezvous, provisioning guess counters and
  lock-outs, per-credential push counters. Compare-and-set (``replace``, ``delete`` with
  ``expected``) and counters are single Lua scripts, so they are atomic whichever node
  runs them; ``add`` is ``SET NX``. Timers are Redis TTLs, not a node's tick.
* :class:`RedisRouter` — the :class:`relay.domain.routing.Router`: presence, cross-node
  delivery and session ends (see its docstring for the design).

Redis errors become :class:`SharedStateUnavailable` (a
:class:`~relay.domain.store.StoreUnavailable`): a request that needs shared state while Redis
is down is answered ``unavailable`` and changes nothing, never ``internal_error``.

Redis Cluster (sharded) is not supported: the scripts read keys they compute. One Redis
server (with a replica and Sentinel for failover if wanted) is the deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import structlog
from redis import asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from relay.domain.metrics import RelayMetrics
from relay.domain.sessions import Session, SessionIndex, SessionSelector
from relay.domain.store import SharedStateUnavailable
from relay.protocol.wire import CloseCode

log = structlog.get_logger("relay.redis")

T = TypeVar("T")

# Redis calls fail fast while the server is away: a request waits at most about this long.
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
# Connections a node's client keeps to Redis; more calls at once wait for one (at most
# COMMAND_TIMEOUT_S). redis-py's default pool refuses the 101st call in flight instead
# ("Too many connections"): at a thousand lock round trips at once, deliveries failed.
REDIS_CONNECTIONS = 64
STOP_WAIT_S = 3.0  # how long stop() waits for the node's own tasks to end


def connect(url: str) -> aioredis.Redis:
    """A Redis client for ``url`` (``redis://host:port/db`` or ``unix://…``): strings in
    and out, short timeouts, a couple of quick retries, then :class:`RedisError`."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL: {url!r} (use redis://host:port/db)")
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_CONNECTIONS,
        timeout=COMMAND_TIMEOUT_S,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=0,
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes the pool with it
    return client


async def _guarded(call: Awaitable[T]) -> T:
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise SharedStateUnavailable(f"Redis: {exc}") from exc


def _spawn(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None], name: str) -> None:
    """Run ``work`` as a task kept in ``tasks`` while it runs (stopping cancels them)."""
    task = asyncio.get_running_loop().create_task(work, name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# KEYS[1]: the key; ARGV: expected, new value, ttl ms.
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# KEYS[1]: the key; ARGV[1]: expected value.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS[1]: the counter; ARGV[1]: ttl ms of a new counter.
_INCR = """
local value = redis.call('INCR', KEYS[1])
if value == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
"""


class RedisEphemeral:
    """:class:`relay.domain.ephemeral.EphemeralState` on Redis, shared by every relay node.

    ``now`` is ignored: Redis expires keys on its own clock, so every node agrees on
    what is live. Keys are prefixed with ``namespace`` (one Redis may serve several
    relays, and the tests).
    """

    def __init__(self, redis: str | aioredis.Redis, namespace: str = "btg") -> None:
        self.redis = connect(redis) if isinstance(redis, str) else redis
        self._owns_client = isinstance(redis, str)
        self._prefix = f"{namespace}:e:"
        self._replace = self.redis.register_script(_REPLACE)
        self._delete_if = self.redis.register_script(_DELETE_IF)
        self._incr = self.redis.register_script(_INCR)

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()

    async def get(self, key: str, now: float) -> str | None:
        value = await _guarded(self.redis.get(self._key(key)))
        return cast("str | None", value)

    async def get_many(self, keys: Sequence[str], now: float) -> list[str | None]:
        if not keys:
            return []
        values = await _guarded(self.redis.mget([self._key(k) for k in keys]))
        return cast("list[str | None]", values)

    async def set(self, key: str, value: str, ttl: float, now: float) -> None:
        await _guarded(self.redis.set(self._key(key), value, px=_ms(ttl)))

    async def set_many(self, items: Sequence[tuple[str, str]], ttl: float, now: float) -> None:
        if not items:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, value in items:
            pipe.set(self._key(key), value, px=_ms(ttl))
        await _guarded(pipe.execute())

    async def add(self, key: str, value: str, ttl: float, now: float) -> bool:
        done = await _guarded(self.redis.set(self._key(key), value, px=_ms(ttl), nx=True))
        return bool(done)

    async def replace(
        self, key: str, expected: str, value: str, ttl: float, now: float
    ) -> bool:
        done = await _guarded(
            self._replace(keys=[self._key(key)], args=[expected, value, _ms(ttl)])
        )
        return bool(done)

    async def delete(self, key: str, now: float, expected: str | None = None) -> bool:
        if expected is None:
            deleted = await _guarded(self.redis.delete(self._key(key)))
        else:
            deleted = await _guarded(self._delete_if(keys=[self._key(key)], args=[expected]))
        return bool(deleted)

    async def incr(self, key: str, ttl: float, now: float) -> int:
        return int(await _guarded(self._incr(keys=[self._key(key)], args=[_ms(ttl)])))

    async def purge(self, now: float) -> None:
        return None  # Redis expires keys itself


# --- the router ------------------------------------------------------------------------------
#
# Keys (under "<namespace>:r:"): "p:<address>" -> "<node>|<serial>|<attached ms>" (who holds
# the address, no TTL); "n:<node>" -> heartbeat with a TTL; "a:<node>" -> the set of
# addresses the node registered (to clean up after an outage). Channels: "c:<node>" (the
# deliveries for one node) and "c:all" (session ends and replacements, for every node).

# KEYS: p:<address>, a:<me>. ARGV: value, address, node-key prefix, me, mode ("attach" |
# "resync"). Returns the previous holder's value if it is another live node's. In resync
# mode another node's entry is compared by attach time whether or not its heartbeat is
# back yet (after a Redis restart the nodes resync in any order): a newer one is kept
# ("kept|" .. its value), an older one replaced and returned; and this node's own entry
# with a later serial is left alone (the connection attached while the resync was on its
# way, and the resync's value is its predecessor's).
_ATTACH = """
local old = redis.call('GET', KEYS[1])
local live = false
if old then
  local node, serial, at = string.match(old, '^([^|]*)|([^|]*)|([^|]*)$')
  if node ~= ARGV[4] then
    if ARGV[5] == 'resync' then
      local mine = string.match(ARGV[1], '|([^|]*)$')
      if tonumber(at) > tonumber(mine) then return 'kept|' .. old end
      live = true
    elseif redis.call('EXISTS', ARGV[3] .. node) == 1 then
      live = true
    end
  elseif ARGV[5] == 'resync' then
    local mine = string.match(ARGV[1], '^[^|]*|([^|]*)|')
    if tonumber(serial) > tonumber(mine) then return false end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if live then return old end
return false
"""
# KEYS: p:<address>, a:<me>. ARGV: value (or "" for "any of mine up to serial ARGV[4]"),
# address, me, serial. Another entry of mine there (for "": one with a later serial) was
# written by a connection that attached after the caller decided to drop the address: it
# stays, and stays registered (it is that connection's to drop, or a resync's).
_DETACH = """
local current = redis.call('GET', KEYS[1])
local node, serial
if current then node, serial = string.match(current, '^([^|]*)|([^|]*)|') end
if node == ARGV[3] and current ~= ARGV[1] and
    (ARGV[1] ~= '' or tonumber(serial) > tonumber(ARGV[4])) then
  return 0
end
redis.call('SREM', KEYS[2], ARGV[2])
if current and (current == ARGV[1] or ARGV[1] == '') and node == ARGV[3] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
# KEYS: p:<address>. ARGV: node-key prefix. The holder's value if its node is alive; a
# dead node's entry is forgotten on the way.
_LOOKUP = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local node = string.match(value, '^([^|]*)|')
if redis.call('EXISTS', ARGV[1] .. node) == 1 then return value end
redis.call('DEL', KEYS[1])
return false
"""
# KEYS: p:<address>. ARGV: node-key prefix, me, channel prefix, payload. Returns
# {0} nobody there, {1, value} held here, {2, receivers} published to the holder's node.
_DELIVER = """
local value = redis.call('GET', KEYS[1])
if not value then return {0} end
local node = string.match(value, '^([^|]*)|')
if node == ARGV[2] then return {1, value} end
if redis.call('EXISTS', ARGV[1] .. node) == 0 then
  redis.call('DEL', KEYS[1])
  return {0}
end
return {2, redis.call('PUBLISH', ARGV[3] .. node, ARGV[4])}
"""

# A delivery waiting to be sent: address, message, and the script's answer to come.
_Outgoing = tuple[str, str, asyncio.Future[list[Any]]]

HEARTBEAT_S = 1.0  # how often a node says it is alive
NODE_TTL_S = 3.0  # a node silent this long is dead: its connections are forgotten
REGISTRY_TTL_S = 86_400.0
RETRY_S = (0.1, 0.25, 0.5, 1.0)  # waits between attempts to reach Redis again
ASK_AFTER_S = 0.5  # a failed publish to a live node asks everyone to resync this much later
RESYNC_COALESCE_S = 0.3  # requests to resync arriving within this are served once
BATCH = 1000  # presence entries per pipelined round trip when rewriting or dropping many


class RedisRouter:
    """:class:`relay.domain.routing.Router` for a cluster of relay nodes sharing one Redis.

    **Presence.** Attaching a session writes ``p:<address>`` = this node, a serial and
    the attach time, in one Lua script that also returns the previous holder; each node
    refreshes a heartbeat key ``n:<node>`` every :data:`HEARTBEAT_S` with a TTL of
    :data:`NODE_TTL_S`. An address whose node has no heartbeat is offline, and the entry
    is dropped when read: a node killed with ``kill -9`` is forgotten within
    :data:`NODE_TTL_S`, without anyone cleaning up after it.

    **Delivery: Redis pub/sub, not streams.** Each node subscribes to its own channel
    ``c:<node>``; :meth:`deliver` runs one script that finds the holder and either says
    "here" (pushed into the local session, no message through Redis) or publishes
    ``address\\nmessage`` to the holder's channel. Pub/sub is at most once and keeps
    nothing, and that is what this traffic needs: an event is only useful to the
    connection that is open *now* on the node that holds it; if that node dies, its
    connections die with it and a backlog in a stream would have nobody to go to. What
    must not be lost is durable in the database and is re-sent by the node that holds
    the connection (a reconnecting phone's welcome carries its pending lock command;
    after a Redis outage every node re-sends pending lock commands to its devices, see
    :meth:`on_resync`). Streams would add a write, an acknowledgement and trimming per
    message, and consumer groups per node, for no delivery that matters. PUBLISH
    answers how many subscribers received the message, so a holder that is not
    listening counts as a failed delivery.

    **Replacement and session ends** go to every node on ``c:all``: a connection
    attached here while another node holds the address makes that node close its
    session with :attr:`CloseCode.REPLACED` (unless Redis says that node's session
    attached after this one: the news can arrive late); :meth:`end_sessions` closes
    matching sessions on every node.

    **Redis outages.** A background task keeps the subscription; when Redis goes away
    and comes back (or this node's heartbeat lapsed) it resubscribes, writes its
    presence again from its own sessions (newest attach wins where two nodes hold the
    same address), drops what it no longer holds, and calls the :meth:`on_resync`
    callbacks; a node that saw Redis fail also asks every node to do the same, since a
    message it published may have been lost on the way to any of them. While Redis is
    down, delivery and presence fall back to this node's own sessions; failed
    deliveries are logged and counted in ``btogether_relay_failed_deliveries``.
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        namespace: str = "btg",
        metrics: RelayMetrics | None = None,
        node_id: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        node_ttl_s: float = NODE_TTL_S,
        close_client: bool | None = None,
        batch: int = BATCH,
    ) -> None:
        self.redis = connect(redis) if isinstance(redis, str) else redis
        # A client given is closed by its owner, unless told to close it at stop.
        self._owns_client = isinstance(redis, str) if close_client is None else close_client
        self.node_id = node_id or f"{os.getpid()}-{secrets.token_hex(4)}"
        self.sessions = SessionIndex()
        self.failed_deliveries = 0
        self._metrics = metrics
        self._heartbeat_s = heartbeat_s
        self._batch = batch
        self._node_ttl_ms = _ms(node_ttl_s)
        prefix = f"{namespace}:r:"
        self._p = prefix + "p:"
        self._n = prefix + "n:"
        self._a = prefix + "a:" + self.node_id
        self._c = prefix + "c:"
        self._all = prefix + "c:all"
        self._mine = self._c + self.node_id
        self._values: dict[str, str] = {}  # address -> the value this node wrote for it
        self._last_serial = 0  # of the values this node wrote: later attaches have higher
        self._attach = self.redis.register_script(_ATTACH)
        self._detach = self.redis.register_script(_DETACH)
        self._lookup = self.redis.register_script(_LOOKUP)
        self._deliver = self.redis.register_script(_DELIVER)
        self._outgoing: list[_Outgoing] = []  # deliveries of this loop iteration, in order
        self._sending: set[asyncio.Task[None]] = set()
        self._checks: set[asyncio.Task[None]] = set()  # replacements announced by others
        self._callbacks: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._broken = False  # a Redis call failed since the last resync
        self._resync_lock = asyncio.Lock()
        self._resync_pending: asyncio.Task[None] | None = None
        self._ask_pending: asyncio.Task[None] | None = None
        self._log = log.bind(node=self.node_id)

    def __len__(self) -> int:
        return len(self.sessions)

    # --- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Say this node is alive and subscribe. Redis must answer now (a node that
        starts without it would be alone without knowing); once started, an outage is
        waited out in the background while the node serves its own connections."""
        try:
            await self._beat()
        except (RedisError, OSError) as exc:
            kwargs = self.redis.connection_pool.connection_kwargs
            where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
            raise SharedStateUnavailable(f"cannot reach Redis at {where}: {exc}") from None
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="redis-listen"),
            asyncio.create_task(self._heartbeat_forever(), name="redis-heartbeat"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=CONNECT_TIMEOUT_S * 3)

    async def stop(self) -> None:
        # Bounded: a node asked to stop stops, even if a task is stuck in the Redis client
        # (a full test run hung here once, after a Redis restart).
        tasks = [
            *self._tasks,
            *(t for t in (self._resync_pending, self._ask_pending) if t),
            *self._sending,  # deliveries in flight: their callers fall back to this node
            *self._checks,
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            ended, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            for task in ended:
                if not task.cancelled() and task.exception() is not None:
                    self._log.warning("redis_task_failed", task=task.get_name(),
                                      error=repr(task.exception()))
            if stuck:
                self._log.warning("redis_tasks_not_stopped",
                                  tasks=sorted(t.get_name() for t in stuck))
        self._tasks = []
        # Leave cleanly: other nodes see this node's connections offline at once.
        with contextlib.suppress(RedisError, OSError):
            await self._detach_all(list(self._values.items()), self._last_serial)
            await self.redis.delete(self._n + self.node_id)
        if self._owns_client:
            await self.redis.aclose()

    async def _detach_all(self, entries: Sequence[tuple[str, str]], up_to: int) -> None:
        """Drop presence entries of this node (value "" for "whatever of mine is there",
        written with a serial up to ``up_to``)."""
        for start in range(0, len(entries), self._batch):
            pipe = self.redis.pipeline(transaction=False)
            for address, value in entries[start : start + self._batch]:
                await self._detach(keys=[self._p + address, self._a],
                                   args=[value, address, self.node_id, up_to], client=pipe)
            await pipe.execute()

    def on_resync(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._callbacks.append(callback)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def _beat(self) -> bool:
        """Refresh the heartbeat; True if it had lapsed (Redis restarted, or this node was
        silent too long and others may have forgotten its connections)."""
        previous = await self.redis.set(
            self._n + self.node_id, "1", px=self._node_ttl_ms, get=True
        )
        await self.redis.pexpire(self._a, _ms(REGISTRY_TTL_S))
        return previous is None

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                lapsed = await self._beat()
            except (RedisError, OSError) as exc:
                self._failed("heartbeat", exc)
                continue
            if (lapsed or self._broken) and self.subscribed:
                broken = self._broken
                await self._resync("heartbeat lapsed" if lapsed else "redis back")
                if broken and not self._broken:
                    # Something this node sent meanwhile may not have arrived (and another
                    # node's subscription may have reconnected without noticing): every
                    # node re-sends what is durable to its own connections.
                    await self._ask_everyone_to_resync()

    async def _listen_forever(self) -> None:
        attempt = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._mine, self._all)
                if attempt:
                    self._log.info("redis_resubscribed", attempts=attempt)
                attempt = 0
                await self._beat()
                await self._resync("subscribed")
                self._subscribed.set()  # (start() returns once the first resync is done)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._received(str(message["channel"]), str(message["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                self._failed("subscription", exc)
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1
            except Exception:  # a bug must not end the node's subscription for good
                self._subscribed.clear()
                self._log.exception("redis_listen_failed")
                await asyncio.sleep(RETRY_S[-1])
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(COMMAND_TIMEOUT_S):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self._broken:
            self._log.warning("redis_unreachable", during=what, error=str(exc))
        self._broken = True

    async def _resync(self, why: str) -> None:
        """Write this node's presence again from its own sessions, forget what it no
        longer holds, then let the owner re-send what is durable."""
        async with self._resync_lock:
            self._broken = False
            try:
                await self._beat()
                kept = 0
                held = [(a, v) for a, v in self._values.items() if self.sessions.at(a)]
                # Pipelined in batches: a node may hold tens of thousands of connections.
                for start in range(0, len(held), self._batch):
                    batch = held[start : start + self._batch]
                    pipe = self.redis.pipeline(transaction=False)
                    for address, value in batch:
                        await self._attach(
                            keys=[self._p + address, self._a],
                            args=[value, address, self._n, self.node_id, "resync"],
                            client=pipe,
                        )
                    answers = await pipe.execute()
                    for (address, value), old in zip(batch, answers, strict=True):
                        if self._values.get(address) != value:
                            continue  # left or replaced meanwhile: that said what it had to
                        if isinstance(old, str) and old.startswith("kept|"):
                            kept += 1  # a newer connection on another node holds it
                            self._end_local(address, CloseCode.REPLACED,
                                            "replaced by a newer connection")
                        elif old:
                            await self._publish_replaced(address, value)
                registered = cast("set[str]", await self.redis.smembers(self._a))
                # What attaches from here on has a later serial, and is not dropped.
                gone = [(a, "") for a in registered if a not in self._values]
                await self._detach_all(gone, self._last_serial)
            except (RedisError, OSError) as exc:
                self._failed("resync", exc)
                return
            self._log.info("redis_resynced", why=why, sessions=len(self._values),
                           replaced_elsewhere=kept)
        for callback in self._callbacks:
            try:
                await callback()
            except Exception:
                self._log.exception("resync_callback_failed")

    # --- messages from other nodes -----------------------------------------------------
    def _received(self, channel: str, data: str) -> None:
        if channel == self._mine:
            address, _, message = data.partition("\n")
            session = self.sessions.at(address)
            if session is None or not session.push(message):
                self._count_failed(address, "offline" if session is None else "refused")
            return
        try:
            event = json.loads(data)
        except ValueError:
            self._log.warning("bad_broadcast", data=data[:100])
            return
        if not isinstance(event, dict) or event.get("origin") == self.node_id:
            return
        if event.get("op") == "replaced":
            address = str(event.get("address"))
            mine = self._values.get(address)
            if mine is not None and mine != event.get("value"):
                _spawn(self._checks, self._replaced_elsewhere(address, mine), "redis-replaced")
        elif event.get("op") == "resync":
            self._resync_soon(f"asked by {event.get('origin')}")
        elif event.get("op") == "end":
            selector = cast(SessionSelector, (str(event.get("kind")), str(event.get("id"))))
            self._end_matching(selector, int(event.get("code", CloseCode.REVOKED)),
                               str(event.get("reason", "")))

    async def _replaced_elsewhere(self, address: str, mine: str) -> None:
        """Another node attached the address: close this node's session unless this one
        attached after it. Redis ran the two attaches one after the other and holds the
        later one's value (whose node then told the other); the news of the earlier one can
        arrive after the later one has attached here, when a connection moves back fast."""
        try:
            holder = await self.redis.get(self._p + address)
        except (RedisError, OSError) as exc:
            self._failed("replacement", exc)
            holder = None  # cannot tell: the other node's word stands
        if holder != mine and self._values.get(address) == mine:
            self._end_local(address, CloseCode.REPLACED, "replaced by a newer connection")

    def _end_local(self, address: str, code: int, reason: str) -> None:
        session = self.sessions.at(address)
        self._values.pop(address, None)
        if session is not None:
            self.sessions.remove(address, session)
            session.end(code, reason)
            self._log.info("session_replaced_elsewhere", address=address)

    def _end_matching(self, selector: SessionSelector, code: int, reason: str) -> int:
        matching = self.sessions.matching(selector)
        for session in matching:
            session.end(code, reason)
        if matching:
            self._log.info("sessions_ended", by=selector[0], id=selector[1], count=len(matching))
        return len(matching)

    async def _ask_everyone_to_resync(self) -> None:
        event = {"op": "resync", "origin": self.node_id}
        try:
            await self.redis.publish(self._all, json.dumps(event, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            self._failed("resync request", exc)

    def _ask_soon(self) -> None:
        """Ask every node to resync shortly (after a subscription has had time to come
        back), once however many deliveries failed meanwhile."""
        if self._ask_pending is not None and not self._ask_pending.done():
            return

        async def later() -> None:
            await asyncio.sleep(ASK_AFTER_S)
            await self._ask_everyone_to_resync()

        self._ask_pending = asyncio.get_running_loop().create_task(later())

    def _resync_soon(self, why: str) -> None:
        """One resync shortly, however many nodes ask for it at once."""
        if self._resync_pending is not None and not self._resync_pending.done():
            return

        async def later() -> None:
            await asyncio.sleep(RESYNC_COALESCE_S)
            await self._resync(why)

        self._resync_pending = asyncio.get_running_loop().create_task(later())

    async def _publish_replaced(self, address: str, value: str) -> None:
        event = {"op": "replaced", "address": address, "value": value, "origin": self.node_id}
        await self.redis.publish(self._all, json.dumps(event, separators=(",", ":")))

    # --- the Router interface ----------------------------------------------------------
    async def attach(self, address: str, session: Session) -> None:
        replaced = self.sessions.add(address, session)
        if replaced is not None:
            replaced.end(CloseCode.REPLACED, "replaced by a newer connection")
        self._last_serial += 1
        value = f"{self.node_id}|{self._last_serial}|{int(time.time() * 1000)}"
        self._values[address] = value
        try:
            old = await self._attach(
                keys=[self._p + address, self._a],
                args=[value, address, self._n, self.node_id, "attach"],
            )
            if old:
                await self._publish_replaced(address, value)
        except (RedisError, OSError) as exc:
            self._failed("attach", exc)  # written again when Redis is back

    async def detach(self, address: str, session: Session) -> bool:
        if not self.sessions.remove(address, session):
            return False
        value = self._values.pop(address, None)
        if value is not None:
            try:
                await self._detach(keys=[self._p + address, self._a],
                                   args=[value, address, self.node_id, 0])
            except (RedisError, OSError) as exc:
                self._failed("detach", exc)  # dropped when Redis is back
        return True

    async def is_online(self, address: str) -> bool:
        try:
            return bool(await self._lookup(keys=[self._p + address], args=[self._n]))
        except (RedisError, OSError) as exc:
            self._failed("presence", exc)
            return self.sessions.at(address) is not None  # what this node knows

    async def deliver(self, address: str, message: str) -> bool:
        try:
            answer = await self._queue_delivery(address, message)
        except (RedisError, OSError) as exc:
            self._failed("delivery", exc)
            session = self.sessions.at(address)  # what this node can still do by itself
            if session is not None and session.push(message):
                return True
            self._count_failed(address, "unreachable")
            return False
        kind = int(answer[0])
        if kind == 1:
            session = self.sessions.at(address)
            if session is not None and session.push(message):
                return True
            self._count_failed(address, "offline" if session is None else "refused")
            return False
        if kind == 2 and int(answer[1]) > 0:
            return True
        if kind == 2:
            # The holder is alive but was not listening (its subscription is reconnecting):
            # what it missed is re-sent once it resyncs, which everyone is asked to do.
            self._ask_soon()
        self._count_failed(address, "offline" if kind == 0 else "unreachable")
        return False

    def _queue_delivery(self, address: str, message: str) -> asyncio.Future[list[Any]]:
        """The delivery script's answer for ``address``, once the deliveries of this loop
        iteration have been sent together (one pipelined round trip for all of them)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._outgoing.append((address, message, future))
        if len(self._outgoing) == 1:
            loop.call_soon(self._send_outgoing)
        return future

    def _send_outgoing(self) -> None:
        batch, self._outgoing = self._outgoing, []
        _spawn(self._sending, self._send_deliveries(batch), "redis-deliveries")

    async def _send_deliveries(self, batch: list[_Outgoing]) -> None:
        """Run the delivery script for each of ``batch``, in order, and answer each: one
        call for one delivery, one pipeline for several (redis-py's cost is per round
        trip far more than per command). A failure of the round trip fails them all;
        a script Redis no longer has (a restart, SCRIPT FLUSH) is loaded and the
        deliveries it refused run again (a refused EVALSHA ran nothing)."""
        answers: list[Any]
        try:
            if len(batch) == 1:
                address, message, _ = batch[0]
                answers = [
                    await self._deliver(
                        keys=[self._p + address], args=self._deliver_args(address, message)
                    )
                ]
            else:
                answers = await self._deliver_pipelined(batch)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RedisError("cancelled")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # the caller stopped waiting
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def _deliver_args(self, address: str, message: str) -> list[str]:
        return [self._n, self.node_id, self._c, f"{address}\n{message}"]

    async def _deliver_pipelined(self, batch: list[_Outgoing]) -> list[Any]:
        sha = self._deliver.sha
        answers: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for index in todo:
                address, message, _ = batch[index]
                pipe.evalsha(sha, 1, self._p + address, *self._deliver_args(address, message))
            results = await pipe.execute(raise_on_error=False)
            missing = []
            for index, result in zip(todo, results, strict=True):
                if isinstance(result, NoScriptError) and attempt == 0:
                    missing.append(index)
                else:
                    answers[index] = result
            if not missing:
                break
            await self.redis.script_load(_DELIVER)
            todo = missing
        return answers

    async def end_sessions(self, selector: SessionSelector, code: int, reason: str) -> int:
        here = self._end_matching(selector, code, reason)
        event = {"op": "end", "kind": selector[0], "id": selector[1], "code": int(code),
                 "reason": reason, "origin": self.node_id}
        try:
            await self.redis.publish(self._all, json.dumps(event, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            # The other nodes still close them when they see the directory change.
            self._failed("end_sessions", exc)
        return here

    def local_count(self, selector: SessionSelector) -> int:
        return self.sessions.count(selector)

    def local_sessions(self, selector: SessionSelector) -> list[Session]:
        return self.sessions.matching(selector)

    def _count_failed(self, address: str, reason: str) -> None:
        self.failed_deliveries += 1
        if self._metrics is not None:
            self._metrics.failed_deliveries.labels(reason).inc()
        self._log.info("delivery_failed", address=address, reason=reason)
