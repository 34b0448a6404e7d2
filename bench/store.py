"""What the relay's store calls cost: PostgreSQL next to SQLite, measured in the same run.

    ./dev.sh bench store [--rounds 400] [--concurrency 16]

Opens a SQLite store (``synchronous=full``, as PostgreSQL's fsync) in a temporary file and a
PostgreSQL store on a private ``postgres`` started from Debian's binaries in a temporary
directory (fsync on, ``synchronous_commit`` on: every acknowledged change is durable,
as in production), both on this machine, and times the calls a relay makes most:
a lock change (one phone), the same with ``--concurrency`` changes in flight (how
commits are grouped), a lock acknowledgement, the reads behind every request (lock
record, directory version, a device) and an administrator's directory write. Prints
p50/p99 per call and the calls per second for the concurrent case. Bounded in count;
nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from btogether.local_postgres import LocalPostgres
from relay.domain.model import Device, Tenant, User
from relay.domain.store import RelayStore
from relay.storage.postgres_store import PostgresStore
from relay.storage.sqlite_store import SqliteStore

PHONES = 64


async def _seed(store: RelayStore) -> None:
    await store.add_tenant(Tenant("t1", "Bench"))
    await store.add_user(User("u1", "t1", "User"))
    await store.add_devices(
        [
            Device(f"ph{i:03d}", "t1", f"Phone {i}", "desk_phone", "personal", bytes(16), 10,
                   state="signed_in", user_id="u1")
            for i in range(PHONES)
        ]
    )


async def _timed(rounds: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - started)
    return samples


def _line(name: str, backend: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"  {name:<34} {backend:<10} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"


async def measure(store: RelayStore, backend: str, rounds: int, concurrency: int) -> list[str]:
    await _seed(store)
    lines = []
    now = time.time()

    async def lock(i: int) -> object:
        return await store.set_desired_lock(
            [f"ph{i % PHONES:03d}"], "locked" if i % 2 else "unlocked", "u1", "L1", now + i
        )

    lines.append(_line("lock change (1 phone)", backend, await _timed(rounds, lock)))
    seqs = {r.phone_id: r.seq for i in range(PHONES)
            for r in [await store.lock_record(f"ph{i:03d}")] if r is not None}

    async def ack(i: int) -> object:
        phone = f"ph{i % PHONES:03d}"
        return await store.ack_lock(phone, seqs.get(phone, 1))

    lines.append(_line("lock ack", backend, await _timed(rounds, ack)))
    lines.append(_line("lock record read", backend, await _timed(
        rounds, lambda i: store.lock_record(f"ph{i % PHONES:03d}"))))
    lines.append(_line("directory version read", backend, await _timed(
        rounds, lambda i: store.directory_version())))
    lines.append(_line("device read", backend, await _timed(
        rounds, lambda i: store.device(f"ph{i % PHONES:03d}"))))
    lines.append(_line("directory write (rename)", backend, await _timed(
        max(rounds // 4, 1), lambda i: store.rename_user("u1", f"User {i}"))))

    # Concurrent lock changes: how many a second when commits can be grouped.
    total = rounds * 2
    started = time.perf_counter()
    in_flight: set[asyncio.Task[object]] = set()
    for i in range(total):
        if len(in_flight) >= concurrency:
            _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        in_flight.add(asyncio.create_task(lock(i)))
    await asyncio.gather(*in_flight)
    elapsed = time.perf_counter() - started
    lines.append(
        f"  {f'lock changes, {concurrency} in flight':<34} {backend:<10} "
        f"{total / elapsed:9.0f} changes/s"
    )
    return lines


async def main(rounds: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # fsync per commit, as PostgreSQL's (the relay's default, "normal", does not).
        sqlite = SqliteStore(Path(tmp) / "relay.sqlite3", synchronous="full")
        await sqlite.open()
        try:
            sqlite_lines = await measure(sqlite, "sqlite", rounds, concurrency)
        finally:
            await sqlite.close()
        server = LocalPostgres(Path(tmp) / "pg", fsync=True)
        await asyncio.to_thread(server.start)
        try:
            postgres = PostgresStore(server.url())
            await postgres.open()
            try:
                pg_lines = await measure(postgres, "postgres", rounds, concurrency)
            finally:
                await postgres.close()
        finally:
            await asyncio.to_thread(server.cleanup)
    print(f"store calls, {rounds} rounds each (SQLite baseline first, same run):")
    for sqlite_line, pg_line in zip(sqlite_lines, pg_lines, strict=True):
        print(sqlite_line)
        print(pg_line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(max(args.rounds, 10), max(args.concurrency, 1)))
