"""How quickly the laptop client sees, reports and mirrors, end to end over real components.

A relay on 127.0.0.1 (temporary SQLite), the simulated air with a laptop, a desk phone
(1 m) and a room (5 m) each advertising with the real BlueZ advertiser, the real
:class:`client.daemon.ClientDaemon` scanning with bleak on the laptop's host, and a logind
stand-in on the laptop's bus. The phone's side is a RelayLink played by this script.

* resolved: from starting the client until both devices are in its ranked nearby list
  with their names (scanner start, first reports, relay resolution);
* lock: from the desktop locking (logind ``Lock`` + ``LockedHint``) until the paired
  phone receives ``lock.command``, over --trials lock/unlock transitions;
* control: one round trip of the ``status`` operation over the control socket.

Printed as min / median / p95 (ms).

    python bench/client.py [--trials 20] [--report-interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beacon.advertising import BeaconConfig, payload_at
from btogether.logs import configure_logging
from client.api import ControlApi, ask
from client.config import ClientConfig, ScanSettings
from client.daemon import ClientDaemon
from client.operations import Confirm, Connect, GetStatus, WaitPair
from client.views import PairOutcome, PairStarted
from hw.advertiser.bluez import BlueZAdvertiser
from hw.control_socket import ControlServer
from hw.lock import LockBusConfig, create_lock_watcher
from hw.sim.launch import start_air
from hw.standin.logind import LogindStandIn
from relay.admin import Admin
from relay.config import RelaySettings
from relay.protocol import wire
from relay.protocol.link import RelayLink
from relay.server import RelayServer
from relay.sqlite_store import SqliteStore

PHONE_KEY = bytes(range(16))
ROOM_KEY = bytes(range(16, 32))


def summary(name: str, samples_s: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{name:<9} n={len(ms):<3} min {ms[0]:7.1f}  median {statistics.median(ms):7.1f}  "
        f"p95 {p95:7.1f} ms"
    )


async def main(trials: int, report_interval: float) -> None:
    air = start_air([("laptop", 0, 0), ("phone", 1, 0), ("room", 0, 5)])
    workdir = Path(tempfile.mkdtemp(prefix="btogether-bench-client-"))
    try:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = air.bus_address("laptop")
        values = {"host": "127.0.0.1", "port": 0, "db": workdir / "relay.sqlite3"}
        settings = RelaySettings.model_construct(**{**RelaySettings().model_dump(), **values})
        store = SqliteStore(settings.db)
        server = RelayServer(settings, store)
        await server.start()
        url = f"ws://127.0.0.1:{server.port}/"
        admin = Admin(store)
        tenant = await admin.create_tenant("Bench")
        user = await admin.create_user(tenant.id, "alice")
        phone = await admin.create_device(
            tenant.id, "Desk phone", "desk_phone", "personal", identity_key=PHONE_KEY
        )
        await admin.sign_in_device(phone.id, user.id)
        await admin.create_device(
            tenant.id, "Room", "room_system", "meeting_room", identity_key=ROOM_KEY
        )
        user_token = (await admin.issue_credential("user", user.id)).token
        phone_token = (await admin.issue_credential("device", phone.id)).token
        advertisers = []
        for host, key in (("phone", PHONE_KEY), ("room", ROOM_KEY)):
            advertiser = BlueZAdvertiser(bus_address=air.bus_address(host))
            await advertiser.start(payload_at(BeaconConfig(identity_key=key), time.time()))
            advertisers.append(advertiser)

        async with LogindStandIn(air.bus_address("laptop")) as logind:
            config = ClientConfig(
                relay_url=url,
                laptop_id="bench-laptop",
                laptop_name="Bench laptop",
                scan=ScanSettings(report_interval_s=report_interval),
            )
            lock_config = LockBusConfig(system_bus_address=air.bus_address("laptop"))
            daemon = ClientDaemon(
                config, user_token, lock_watcher_factory=lambda: create_lock_watcher(lock_config)
            )
            started = time.perf_counter()
            task = asyncio.create_task(daemon.run())
            while len(daemon.core.nearby(time.monotonic())) < 2:
                await asyncio.sleep(0.01)
            resolved = time.perf_counter() - started
            phone_link = await RelayLink.connect(url, phone_token)
            pair = await daemon.execute(Connect(phone=phone.id))
            assert isinstance(pair, PairStarted)
            prompt = await phone_link.next_event("pair.prompt")
            assert isinstance(prompt, wire.PairPrompt)
            await phone_link.pair_confirm(prompt.request_id, True)
            await daemon.execute(Confirm(request_id=pair.request_id))
            outcome = await daemon.execute(WaitPair(request_id=pair.request_id, timeout=5))
            assert isinstance(outcome, PairOutcome) and outcome.outcome == "paired"
            while daemon.core.lock_status != "watching":
                await asyncio.sleep(0.01)

            lock_samples: list[float] = []
            for trial in range(trials):
                t0 = time.perf_counter()
                if trial % 2 == 0:
                    logind.desktop_lock()
                else:
                    logind.desktop_unlock()
                command = await phone_link.next_event("lock.command")
                lock_samples.append(time.perf_counter() - t0)
                assert isinstance(command, wire.LockCommand)
                await phone_link.lock_ack(command.seq)

            socket_path = workdir / "control.sock"
            control = ControlServer(socket_path, ControlApi(daemon.execute).handle)
            await control.start()
            control_samples = []
            for _ in range(200):
                t0 = time.perf_counter()
                await ask(socket_path, GetStatus)
                control_samples.append(time.perf_counter() - t0)
            await control.stop()

            daemon.stop()
            await task
            await phone_link.close()
        for advertiser in advertisers:
            await advertiser.stop()
        await server.stop()
        print(f"report interval {report_interval:g} s, advertising interval 100 ms")
        print(summary("resolved", [resolved]))
        print(summary("lock", lock_samples))
        print(summary("control", control_samples))
    finally:
        air.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--report-interval", type=float, default=1.0)
    args = parser.parse_args()
    configure_logging("error")
    asyncio.run(main(args.trials, args.report_interval))
