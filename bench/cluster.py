"""Benchmark the relay cluster: lock round trips on 1, 2 and 3 nodes, same node vs across nodes.

    python bench/cluster.py                 # 400 round trips per configuration
    python bench/cluster.py --rounds 1000 --json

Every configuration runs real processes started by :mod:`btogether.cluster` (Redis, the
database, ``btogether relay serve`` nodes) in a temporary directory; the baseline is the
embedded default measured in the same run: one node on SQLite without Redis. A laptop
and its paired phone connect straight to chosen nodes (HAProxy would add its own hop for
every message, the same in each configuration); the laptop sends ``lock.set`` and waits
for ``lock.applied`` after the phone's ``lock.ack``, one round trip at a time (light
load). Printed per configuration: p50 and p99 latency, and server CPU per round trip,
split into the relay nodes, Redis and the database (PostgreSQL's processes; SQLite runs
inside the relay), read from ``/proc`` over the measured window. Bounded in count and
time; run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, group_pids  # noqa: E402
from btogether.cluster import LocalCluster, RelayNodeProcess, free_port  # noqa: E402
from relay.admin.store_admin import Admin  # noqa: E402
from relay.node import store_for  # noqa: E402
from relay.protocol import wire  # noqa: E402
from relay.protocol.link import RelayLink  # noqa: E402

WARMUP = 30
IDLE_S = 3.0
LAPTOP_ID = "bench-laptop"


async def make_world(db_url: str) -> dict[str, str]:
    store = store_for(db_url)
    await store.open()
    try:
        admin = Admin(store)
        tenant = await admin.create_tenant("Bench")
        user = await admin.create_user(tenant.id, "Bea")
        laptop = await admin.issue_credential("user", user.id)
        phone = await admin.create_device(tenant.id, "Bea's phone", "desk_phone", "personal")
        phone = await admin.sign_in_device(phone.id, user.id)
        phone_credential = await admin.issue_credential("device", phone.id)
        await admin.pair(user.id, LAPTOP_ID, phone.id)
        return {"laptop": laptop.token, "phone": phone_credential.token}
    finally:
        await store.close()


@dataclass
class Setup:
    """Processes of one configuration and where the laptop and the phone connect."""

    name: str
    laptop_url: str
    phone_url: str
    relay_pids: list[int]
    redis_pid: int | None
    db_leader: int | None


async def measure(setup: Setup, tokens: dict[str, str], rounds: int) -> dict[str, Any]:
    laptop = await RelayLink.connect(setup.laptop_url, tokens["laptop"], laptop_id=LAPTOP_ID,
                                     reply_timeout=10.0)
    phone = await RelayLink.connect(setup.phone_url, tokens["phone"], reply_timeout=10.0)
    await phone.next_event("device.state", within=10)
    latencies: list[float] = []
    state: wire.LockState = "locked"

    async def round_trip() -> float:
        nonlocal state
        state = "unlocked" if state == "locked" else "locked"
        started = time.perf_counter()
        await laptop.lock_set(state)
        command = await phone.next_event("lock.command", within=10)
        assert isinstance(command, wire.LockCommand)
        await phone.lock_ack(command.seq)
        await laptop.next_event("lock.applied", within=10)
        return time.perf_counter() - started

    def all_cpu() -> float:
        db_pids = group_pids(setup.db_leader) if setup.db_leader else []
        return (cpu_seconds(setup.relay_pids) + cpu_seconds(db_pids)
                + (cpu_seconds([setup.redis_pid]) if setup.redis_pid else 0.0))

    try:
        for _ in range(WARMUP):
            await round_trip()
        # What the servers burn doing nothing (heartbeats, ticks, directory checks).
        idle_started, idle_cpu = time.perf_counter(), all_cpu()
        await asyncio.sleep(IDLE_S)
        idle_per_s = (all_cpu() - idle_cpu) / (time.perf_counter() - idle_started)
        window_started = time.perf_counter()
        db_pids = group_pids(setup.db_leader) if setup.db_leader else []
        before = [cpu_seconds(setup.relay_pids),
                  cpu_seconds([setup.redis_pid]) if setup.redis_pid else 0.0,
                  cpu_seconds(db_pids)]
        deadline = time.monotonic() + 120
        for _ in range(rounds):
            latencies.append(await round_trip())
            if time.monotonic() > deadline:
                break
        window = time.perf_counter() - window_started
        db_pids = group_pids(setup.db_leader) if setup.db_leader else []
        after = [cpu_seconds(setup.relay_pids),
                 cpu_seconds([setup.redis_pid]) if setup.redis_pid else 0.0,
                 cpu_seconds(db_pids)]
    finally:
        await laptop.close()
        await phone.close()
    n = len(latencies)
    ordered = sorted(latencies)
    per = [1e6 * (a - b) / n for a, b in zip(after, before, strict=True)]
    return {
        "config": setup.name,
        "round_trips": n,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(n - 1, int(0.99 * n))],
        "cpu_us_relay": per[0],
        "cpu_us_redis": per[1],
        "cpu_us_db": per[2],
        "cpu_us_total": sum(per),
        # the same, less what the servers use when idle over as long a window
        "cpu_us_net": sum(per) - 1e6 * idle_per_s * window / n,
        "idle_cpu_ms_per_s": 1000 * idle_per_s,
        "db_processes": len(db_pids),
    }


def bench_settings(workdir: Path) -> Path:
    """A settings file for every node: one laptop sending round trips back to back goes
    faster than the per-connection flood limit lets a person (100/s, a burst of 200)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "bench-relay.toml"
    path.write_text("[relay]\nrate_per_second = 1000000.0\nrate_burst = 1000000.0\n")
    return path


def baseline(workdir: Path, rounds: int) -> dict[str, Any]:
    """The embedded default: one relay process on SQLite, no Redis."""
    workdir.mkdir(parents=True)
    db = str(workdir / "relay.sqlite3")
    tokens = asyncio.run(make_world(db))
    port = free_port()
    node = RelayNodeProcess(
        "relay", port,
        [sys.executable, "-m", "btogether.cli", "relay", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--db", db, "--config", str(bench_settings(workdir))],
        workdir / "relay.log", dict(os.environ),
    )
    node.start()
    try:
        assert node.process is not None
        setup = Setup("1 node, SQLite, no Redis (embedded default)", node.url + "/",
                      node.url + "/", [node.process.pid], None, None)
        return asyncio.run(measure(setup, tokens, rounds))
    finally:
        node.stop()


def cluster_runs(workdir: Path, nodes: int, rounds: int, database: str) -> list[dict[str, Any]]:
    cluster = LocalCluster(workdir, nodes=nodes, database=database, log_level="warning",
                           extra_args=["--config", str(bench_settings(workdir))])
    try:
        cluster.start_redis()
        db_url = cluster.start_database()
        tokens = asyncio.run(make_world(db_url))
        cluster.start_nodes()
        assert cluster.redis is not None and cluster.redis.process is not None
        pids = [n.process.pid for n in cluster.relays if n.process is not None]
        db_leader = cluster.postgres.process.pid if cluster.on_postgres else None
        engine = "PostgreSQL" if cluster.on_postgres else "SQLite"
        first, last = cluster.relays[0], cluster.relays[-1]
        placements = [("same node", first, first)]
        if nodes > 1:
            placements.append(("different nodes", first, last))
        out = []
        for where, laptop_node, phone_node in placements:
            setup = Setup(f"{nodes} node(s) + Redis, {engine}, {where}", laptop_node.url + "/",
                          phone_node.url + "/", pids, cluster.redis.process.pid, db_leader)
            out.append(asyncio.run(measure(setup, tokens, rounds)))
        return out
    finally:
        cluster.close()


def describe_machine() -> str:
    cpus = os.cpu_count()
    load = os.getloadavg()[0]
    try:
        model = next(line.split(":", 1)[1].strip()
                     for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "?"
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                           check=False).stdout.split(" ")[2:3]
    return f"{cpus} CPUs ({model}), load {load:.1f}; redis-server {''.join(redis)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=400, help="round trips per configuration")
    parser.add_argument("--database", choices=["auto", "postgres", "sqlite"], default="auto",
                        help="the cluster's database (auto: PostgreSQL when its store is "
                        "installed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rounds = max(10, min(args.rounds, 20_000))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="btogether-bench-cluster-") as tmp:
        work = Path(tmp)
        results.append(baseline(work / "baseline", rounds))
        for nodes in (1, 2, 3):
            results += cluster_runs(work / f"cluster-{nodes}", nodes, rounds, args.database)
    if args.json:
        print(json.dumps({"machine": describe_machine(), "results": results}, indent=1))
        return 0
    base = results[0]
    print(f"lock round trips at light load, {rounds} per configuration; {describe_machine()}")
    print("CPU µs/rt: server CPU per round trip over the window (relay nodes + Redis + "
          "database processes); net: less the servers' idle CPU over as long")
    print(f"{'configuration':<52} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/rt':>10} "
          f"{'relays':>7} {'redis':>6} {'db':>6} {'net':>6} {'idle ms/s':>9} {'× base':>7}")
    for r in results:
        print(f"{r['config']:<52} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
              f"{r['cpu_us_total']:10.0f} {r['cpu_us_relay']:7.0f} {r['cpu_us_redis']:6.0f} "
              f"{r['cpu_us_db']:6.0f} {r['cpu_us_net']:6.0f} {r['idle_cpu_ms_per_s']:9.1f} "
              f"{r['cpu_us_total'] / base['cpu_us_total']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
