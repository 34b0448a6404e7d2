"""How long provisioning and administration take on one relay (SQLite, loopback).

    .venv/bin/python -m bench.provisioning [--devices 10000] [--provision 200]

Measures, against a real relay on 127.0.0.1 with a temporary database: importing a
CSV of ``--devices`` rows in one ``device.import`` request, listing them, and then
``--provision`` complete provisionings in a row (verification code from the admin
endpoint, then ``provision`` from a fresh ``/provision`` connection, as a device does).
Prints one line per measurement. Bounded in count; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from relay.admin_service import bootstrap_owner
from relay.config import RelaySettings
from relay.node import build_node
from relay.protocol import admin_wire as aw
from relay.protocol.admin_link import AdminLink, provision
from relay.server import RelayServer
from relay.sqlite_store import SqliteStore
from relay.verification import ThrottlePolicy


def _mac(n: int) -> str:
    return f"02:00:00:{(n >> 16) & 0xFF:02X}:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}"


async def main(devices: int, provisions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "relay.sqlite3"
        values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "db": db}
        settings = RelaySettings.model_construct(**{**RelaySettings().model_dump(), **values})
        store = SqliteStore(db)
        await store.open()
        _, token = await bootstrap_owner(store, "bench", time.time())
        # One source address provisions everything here; lift the per-source limit.
        node = build_node(
            settings, store=store, throttle=ThrottlePolicy(source_per_minute=10**9)
        )
        server = RelayServer(settings, node=node)
        await server.start()
        url = f"ws://127.0.0.1:{server.port}/"
        try:
            async with await AdminLink.connect(url, token, reply_timeout=300) as admin:
                tenant = await admin.typed(aw.TenantInfo, aw.TenantCreate, name="Bench")
                rows = "".join(f"{_mac(n)},Floor {n % 40}\n" for n in range(devices))
                csv = "MAC address,Location\n" + rows
                started = time.perf_counter()
                imported = await admin.typed(
                    aw.ImportResult,
                    aw.DeviceImport,
                    tenant_id=tenant.id,
                    csv=csv,
                    kind="desk_phone",
                )
                took = time.perf_counter() - started
                print(
                    f"device.import: {len(imported.added)} rows ({len(csv) / 1e6:.2f} MB) "
                    f"in {took:.2f} s"
                )
                started = time.perf_counter()
                listed = await admin.typed(aw.Devices, aw.DeviceList, tenant_id=tenant.id)
                took = time.perf_counter() - started
                print(f"device.list: {len(listed.devices)} devices in {took:.2f} s")
                per: list[float] = []
                for info in imported.added[:provisions]:
                    started = time.perf_counter()
                    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=info.id)
                    await provision(url, info.mac or "", code.code)
                    per.append(time.perf_counter() - started)
                if per:
                    per.sort()
                    print(
                        f"code.create + provision: {len(per)} devices, median "
                        f"{statistics.median(per) * 1000:.1f} ms, p95 "
                        f"{per[int(0.95 * (len(per) - 1))] * 1000:.1f} ms, "
                        f"total {sum(per):.2f} s"
                    )
        finally:
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--provision", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(min(args.devices, 10_000), min(args.provision, args.devices)))
