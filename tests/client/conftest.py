"""Fixtures for the laptop client's tests: a real relay, the simulated air with beacons, logind.

* ``air`` (once per session): the simulated BlueZ air with a laptop, Alice's desk phone
  (1 m away), Bob's desk phone (2 m), a shared conference phone (3 m) and a room (5 m);
  a real ``btogether beacon advertise`` runs on each device's host with a fixed key.
* ``relay`` / ``start_relay``: a real relay on 127.0.0.1 (port 0, or the same port again
  for a restart) over a temporary SQLite file, with the real clock (the beacons' EIDs
  follow it); ``world`` provisions the tenant, users, devices (with the beacons' keys) and
  credentials through :class:`relay.admin.store_admin.Admin`.
* ``logind``: a logind stand-in on the laptop host's bus, to lock the laptop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.config import ClientConfig, ScanSettings
from client.daemon import ClientDaemon
from hw.lock import LockBusConfig, create_lock_watcher
from hw.sim.launch import AirProcess, start_air
from hw.standin.logind import LogindStandIn
from relay.admin.store_admin import IssuedCredential
from relay.domain.model import Device, Policy, Tenant, User
from relay.protocol.link import RelayLink
from tests.btogether_cli import btogether_argv as btogether_argv
from tests.relay_harness import RelayHarness as RelayHarness
from tests.relay_harness import StartRelay as StartRelay
from tests.relay_harness import relay_starter

KEYS = {
    "phone": bytes.fromhex("11111111111111111111111111111111"),
    "bob-phone": bytes.fromhex("22222222222222222222222222222222"),
    "conf-phone": bytes.fromhex("33333333333333333333333333333333"),
    "room": bytes.fromhex("44444444444444444444444444444444"),
}
POSITIONS = {
    "laptop": (0.0, 0.0),
    "phone": (1.0, 0.0),
    "bob-phone": (0.0, 2.0),
    "conf-phone": (-3.0, 0.0),
    "room": (0.0, -5.0),
}
INTERVAL_S = 0.1


@dataclass
class Air:
    process: AirProcess
    beacons: list[subprocess.Popen[bytes]]

    def address(self, host: str) -> str:
        return self.process.bus_address(host)


@pytest.fixture(scope="session")
def air() -> Iterator[Air]:
    process = start_air(list((n, x, y) for n, (x, y) in POSITIONS.items()), interval_s=INTERVAL_S)
    beacons: list[subprocess.Popen[bytes]] = []
    try:
        for host, key in KEYS.items():
            env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": process.bus_address(host)}
            beacons.append(
                subprocess.Popen(
                    btogether_argv("beacon", "advertise", "--key", key.hex()),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        for beacon in beacons:  # each prints its first EID once on the air
            assert beacon.stdout is not None
            line = beacon.stdout.readline()
            assert line.startswith(b"EID"), f"a beacon did not start: {line!r}"
        yield Air(process, beacons)
    finally:
        for beacon in beacons:
            beacon.terminate()
        for beacon in beacons:
            try:
                beacon.wait(5)
            except subprocess.TimeoutExpired:
                beacon.kill()
                beacon.wait()
        process.stop()


@pytest.fixture
async def start_relay(tmp_path: Path) -> AsyncIterator[StartRelay]:
    """Start the relay (again, after a stop, on the same port and database)."""
    async with relay_starter(tmp_path / "relay.sqlite3") as start:
        yield start


@pytest.fixture
async def relay(start_relay: StartRelay) -> RelayHarness:
    return await start_relay()


@dataclass
class World:
    tenant: Tenant
    alice: User
    alice_credential: IssuedCredential
    phone: Device
    phone_credential: IssuedCredential
    bob: User
    bob_phone: Device
    bob_phone_credential: IssuedCredential
    conf_phone: Device
    room: Device
    room_credential: IssuedCredential
    disabled: Policy


@pytest.fixture
async def world(relay: RelayHarness) -> World:
    admin = relay.admin
    tenant = await admin.create_tenant("Contoso")
    disabled = await admin.create_policy(
        tenant.id, "No Better Together", allow_better_together="Disabled"
    )
    alice = await admin.create_user(tenant.id, "alice")
    bob = await admin.create_user(tenant.id, "bob")

    async def device(name: str, kind: Any, mode: Any, key: str, user: User | None) -> Device:
        made = await admin.create_device(
            tenant.id, name, kind, mode, location="floor 4", identity_key=KEYS[key]
        )
        return await admin.sign_in_device(made.id, user.id) if user is not None else made

    phone = await device("Alice's desk phone", "desk_phone", "personal", "phone", alice)
    bob_phone = await device("Bob's desk phone", "desk_phone", "personal", "bob-phone", bob)
    conf_phone = await device(
        "Kitchen speakerphone", "conference_phone", "common_area", "conf-phone", None
    )
    room = await device("Room 4.01", "room_system", "meeting_room", "room", None)
    return World(
        tenant=tenant,
        alice=alice,
        alice_credential=await admin.issue_credential("user", alice.id),
        phone=phone,
        phone_credential=await admin.issue_credential("device", phone.id),
        bob=bob,
        bob_phone=bob_phone,
        bob_phone_credential=await admin.issue_credential("device", bob_phone.id),
        conf_phone=conf_phone,
        room=room,
        room_credential=await admin.issue_credential("device", room.id),
        disabled=disabled,
    )


@pytest.fixture
async def phone_link(relay: RelayHarness, world: World) -> AsyncIterator[RelayLink]:
    """Alice's desk phone's side, played by the test (the beacon daemon is not needed)."""
    link = await RelayLink.connect(relay.url, world.phone_credential.token, reply_timeout=5.0)
    yield link
    with contextlib.suppress(Exception):
        await link.close()


@pytest.fixture
async def logind(air: Air) -> AsyncIterator[LogindStandIn]:
    async with LogindStandIn(air.address("laptop")) as standin:
        yield standin


async def eventually(
    check: Callable[[], Any], within: float = 10.0, every: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not within {within} s: {what or check} (last: {last!r})")


@dataclass
class RunningDaemon:
    daemon: ClientDaemon
    task: asyncio.Task[None]
    saved: list[ClientConfig]


@pytest.fixture
async def make_daemon(
    air: Air, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[RunningDaemon]]]:
    """Run a ClientDaemon in this process, on the laptop's host (bleak and logind on its bus)."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", air.address("laptop"))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    running: list[RunningDaemon] = []

    async def make(
        relay_url: str,
        credential: str,
        daemon_kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> RunningDaemon:
        fields: dict[str, Any] = {
            "relay_url": relay_url,
            "laptop_id": "laptop-test",
            "laptop_name": "Alice's laptop",
            "scan": ScanSettings(report_interval_s=0.2, retry_s=0.5),
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.5,
        }
        fields.update(overrides)
        config = ClientConfig.model_validate(fields)
        saved: list[ClientConfig] = []
        lock_config = LockBusConfig(system_bus_address=air.address("laptop"))
        daemon = ClientDaemon(
            config,
            credential,
            lock_watcher_factory=lambda: create_lock_watcher(lock_config),
            rng=random.Random(7),
            save_config=saved.append,
            **(daemon_kwargs or {}),
        )
        task = asyncio.create_task(daemon.run())
        handle = RunningDaemon(daemon, task, saved)
        running.append(handle)
        return handle

    yield make
    for handle in running:
        handle.daemon.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.task, 10)
