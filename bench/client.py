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

Each is printed with its spread next to a baseline measured in the same run:

* resolved — unmodified bleak scanning the laptop's host (same filter as the client)
  until it has heard both adverts: the radio path's floor, without reports or relay;
* lock — a laptop connection of this script sending ``lock.set`` until the phone gets
  ``lock.command``: the relay's share, without the lock watcher and the client;
* control — one JSON line echoed over a bare asyncio Unix socket.

``--runs`` starts the client that many times (one "resolved" sample each).

    python -P bench/client.py [--runs 5] [--trials 40] [--report-interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from beacon.advertising import BeaconConfig, payload_at
from bench.common import line, machine
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
from relay.admin.store_admin import Admin
from relay.config import RelaySettings
from relay.net.server import RelayServer
from relay.protocol import wire
from relay.protocol.frame import DEFAULT_COMPANY_ID
from relay.protocol.link import RelayLink
from relay.storage.sqlite_store import SqliteStore

PHONE_KEY = bytes(range(16))
ROOM_KEY = bytes(range(16, 32))


async def bleak_floor(bus_address: str, expected: int) -> float:
    """Seconds from starting bleak (active, the client's filter) until ``expected`` beacons
    of our company id were heard."""
    heard: set[str] = set()
    done = asyncio.Event()

    def detected(device: BLEDevice, advert: AdvertisementData) -> None:
        if DEFAULT_COMPANY_ID in advert.manufacturer_data:
            heard.add(device.address)
            if len(heard) >= expected:
                done.set()

    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus_address
    scanner = BleakScanner(
        detected,
        scanning_mode="active",
        bluez={"filters": {"Transport": "le", "DuplicateData": True}},
    )
    t0 = time.perf_counter()
    await scanner.start()
    await asyncio.wait_for(done.wait(), 30)
    took = time.perf_counter() - t0
    await scanner.stop()
    return took


async def socket_floor(path: Path, count: int) -> list[float]:
    """One JSON line echoed over a fresh Unix-socket connection, as the control call makes."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, path)
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b'{"op": "status", "args": {}}\n')
        await writer.drain()
        await reader.readline()
        writer.close()
        samples.append(time.perf_counter() - t0)
    server.close()
    await server.wait_closed()
    return samples


async def _client_locks(logind: LogindStandIn, phone: RelayLink, trials: int) -> list[float]:
    """Desktop lock/unlock until the phone's ``lock.command``, through the client."""
    samples = []
    for trial in range(trials):
        t0 = time.perf_counter()
        if trial % 2 == 0:
            logind.desktop_lock()
        else:
            logind.desktop_unlock()
        command = await phone.next_event("lock.command")
        samples.append(time.perf_counter() - t0)
        assert isinstance(command, wire.LockCommand)
        await phone.lock_ack(command.seq)
    return samples


async def main(runs: int, trials: int, report_interval: float) -> None:
    print(machine())
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

        await admin.pair(user.id, "bench-baseline", phone.id)
        resolved: list[float] = []
        radio: list[float] = []
        lock_samples: list[float] = []
        relay_only: list[float] = []
        control_samples: list[float] = []
        async with LogindStandIn(air.bus_address("laptop")) as logind:
            config = ClientConfig(
                relay_url=url,
                laptop_id="bench-laptop",
                laptop_name="Bench laptop",
                scan=ScanSettings(report_interval_s=report_interval),
            )
            lock_config = LockBusConfig(system_bus_address=air.bus_address("laptop"))
            phone_link = await RelayLink.connect(url, phone_token)
            for run in range(runs):
                radio.append(await bleak_floor(air.bus_address("laptop"), 2))
                daemon = ClientDaemon(
                    config,
                    user_token,
                    lock_watcher_factory=lambda: create_lock_watcher(lock_config),
                )
                started = time.perf_counter()
                task = asyncio.create_task(daemon.run())
                while len(daemon.core.nearby(time.monotonic())) < 2:
                    await asyncio.sleep(0.01)
                resolved.append(time.perf_counter() - started)
                if run == 0:
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
                    lock_samples += await _client_locks(logind, phone_link, trials)
                    socket_path = workdir / "control.sock"
                    control = ControlServer(socket_path, ControlApi(daemon.execute).handle)
                    await control.start()
                    for _ in range(200):
                        t0 = time.perf_counter()
                        await ask(socket_path, GetStatus)
                        control_samples.append(time.perf_counter() - t0)
                    await control.stop()
                daemon.stop()
                await task
            baseline_laptop = await RelayLink.connect(url, user_token, laptop_id="bench-baseline")
            for trial in range(trials):
                t0 = time.perf_counter()
                reply = asyncio.create_task(
                    baseline_laptop.lock_set("locked" if trial % 2 == 0 else "unlocked")
                )
                command = await phone_link.next_event("lock.command")
                relay_only.append(time.perf_counter() - t0)
                assert isinstance(command, wire.LockCommand)
                await reply
                await phone_link.lock_ack(command.seq)
            await baseline_laptop.close()
            await phone_link.close()
        floor = await socket_floor(workdir / "echo.sock", 200)
        for advertiser in advertisers:
            await advertiser.stop()
        await server.stop()
        print(f"report interval {report_interval:g} s, advertising interval 100 ms, {runs} runs")
        print(line("resolved (2 devices named)", resolved, radio))
        print(line("lock → phone's lock.command", lock_samples, relay_only))
        print(line("control socket round trip", control_samples, floor))
    finally:
        air.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="client starts")
    parser.add_argument("--trials", type=int, default=40, help="lock changes")
    parser.add_argument("--report-interval", type=float, default=1.0)
    args = parser.parse_args()
    configure_logging("error")
    runs, trials = max(1, min(args.runs, 50)), max(2, min(args.trials, 1000))
    asyncio.run(main(runs, trials, args.report_interval))
