"""How long provisioning and administration take on one relay (SQLite, loopback).

    python -P bench/provisioning.py [--devices 10000] [--provision 200] [--runs 3]

Against a real relay on 127.0.0.1 with a temporary database, each of ``--runs`` times on
a fresh database: importing a CSV of ``--devices`` rows in one ``device.import``
request, listing them (``device.list``, one page), and ``--provision`` complete
provisionings in a row (a verification code from the admin endpoint, then
``provision`` from a fresh ``/provision`` connection, as a device does).

Baselines measured in the same run, on the same machine:

* import: the same devices written straight into a fresh SQLite store
  (``add_devices``), without CSV, protocol or validation: the database's floor;
* list: the same devices read straight from the store (``devices(tenant)``);
* code + provision: one request on an open websocket plus a fresh websocket connection
  with one request, against a bare ``websockets`` echo server on loopback (the
  transport's floor for the same two exchanges).

Bounded in count; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench.common import line, machine
from btogether.logs import configure_logging
from relay.admin.service import bootstrap_owner, device_info
from relay.config import RelaySettings
from relay.domain.model import Device, Tenant
from relay.domain.verification import ThrottlePolicy
from relay.net.server import RelayServer
from relay.node import build_node
from relay.protocol import admin_wire as aw
from relay.protocol.admin_link import AdminLink, provision
from relay.protocol.eid import DEFAULT_ROTATION_EXPONENT
from relay.storage.sqlite_store import SqliteStore


def _mac(n: int) -> str:
    return f"02:00:00:{(n >> 16) & 0xFF:02X}:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}"


async def relay_run(devices: int, provisions: int) -> tuple[float, float, list[float]]:
    """One run on a fresh database: (import s, list s, code + provision s each)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "relay.sqlite3"
        values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "db": db}
        settings = RelaySettings.model_construct(**{**RelaySettings().model_dump(), **values})
        store = SqliteStore(db)
        await store.open()
        _, token = await bootstrap_owner(store, "bench", time.time())
        # One source address provisions everything here; lift the per-source limit.
        node = build_node(settings, store=store, throttle=ThrottlePolicy(source_per_minute=10**9))
        server = RelayServer(settings, node=node)
        await server.start()
        url = f"ws://127.0.0.1:{server.port}/"
        try:
            async with await AdminLink.connect(url, token, reply_timeout=300) as admin:
                tenant = await admin.typed(aw.TenantInfo, aw.TenantCreate, name="Bench")
                rows = "".join(f"{_mac(n)},Floor {n % 40}\n" for n in range(devices))
                csv = "MAC address,Location\n" + rows
                t0 = time.perf_counter()
                imported = await admin.typed(
                    aw.ImportResult,
                    aw.DeviceImport,
                    tenant_id=tenant.id,
                    csv=csv,
                    kind="desk_phone",
                )
                took_import = time.perf_counter() - t0
                assert len(imported.added) == devices, imported.errors[:3]
                t0 = time.perf_counter()
                listed = await admin.typed(
                    aw.Devices, aw.DeviceList, tenant_id=tenant.id, limit=min(devices, 5000)
                )
                took_list = time.perf_counter() - t0
                assert len(listed.devices) == min(devices, 5000)
                each: list[float] = []
                for info in imported.added[:provisions]:
                    t0 = time.perf_counter()
                    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=info.id)
                    await provision(url, info.mac or "", code.code)
                    each.append(time.perf_counter() - t0)
        finally:
            await server.stop()
        return took_import, took_list, each


async def store_run(devices: int) -> tuple[float, float]:
    """The database's floor: the same rows written and read straight through the store,
    and each turned into what ``device.list`` answers."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "relay.sqlite3")
        await store.open()
        try:
            await store.add_tenant(Tenant("t_bench", "Bench"))
            rows = [
                Device(
                    id=f"d_{n:016x}",
                    tenant_id="t_bench",
                    name=f"Floor {n % 40}",
                    kind="desk_phone",
                    mode="personal",
                    identity_key=n.to_bytes(16, "big"),
                    rotation_exponent=DEFAULT_ROTATION_EXPONENT,
                    location=f"Floor {n % 40}",
                    mac=_mac(n),
                    state="waiting_for_activation",
                )
                for n in range(devices)
            ]
            t0 = time.perf_counter()
            await store.add_devices(rows)
            took_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            read = await store.devices("t_bench", limit=min(devices, 5000))
            [device_info(d) for d in read]
            took_read = time.perf_counter() - t0
        finally:
            await store.close()
        return took_write, took_read


async def transport_floor(count: int) -> list[float]:
    """One request on an open websocket + one on a fresh connection, echoed, on loopback."""

    async def echo(conn: ServerConnection) -> None:
        async for message in conn:
            await conn.send(message)

    samples: list[float] = []
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"
        async with connect(url, compression=None) as kept:
            for _ in range(count):
                t0 = time.perf_counter()
                await kept.send('{"type":"code.create","id":1}')
                await kept.recv()
                async with connect(url, compression=None) as fresh:
                    await fresh.send('{"type":"provision","id":1}')
                    await fresh.recv()
                samples.append(time.perf_counter() - t0)
    return samples


async def main(devices: int, provisions: int, runs: int) -> None:
    print(machine())
    print(f"{runs} runs, each on a fresh database: {devices} devices, {provisions} provisionings")
    imports: list[float] = []
    lists: list[float] = []
    each: list[float] = []
    writes: list[float] = []
    reads: list[float] = []
    floor: list[float] = []
    for _ in range(runs):
        took_import, took_list, per = await relay_run(devices, provisions)
        imports.append(took_import)
        lists.append(took_list)
        each += per
        write, read = await store_run(devices)
        writes.append(write)
        reads.append(read)
        floor += await transport_floor(provisions)
    print(line(f"device.import ({devices} rows)", imports, writes, scale=1.0, unit="s"))
    print(line(f"device.list ({min(devices, 5000)})", lists, reads, scale=1.0, unit="s"))
    print(line("code.create + provision", each, floor))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--provision", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging("error")
    devices = max(1, min(args.devices, 10_000))
    asyncio.run(main(devices, min(args.provision, devices), max(1, min(args.runs, 10))))
