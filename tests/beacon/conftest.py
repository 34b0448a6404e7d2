"""Fixtures for the beacon daemon's tests: a real relay, a simulated phone host, real daemons.

* a relay (tests/relay_harness.py: 127.0.0.1, port 0, a temporary SQLite file) with a tenant,
  alice (a laptop credential), her personal desk phone signed in to her, and two rooms
  (one that accepts joins itself, one that asks);
* the simulated air with a ``phone`` host: its bus carries the air's ``org.bluez``; each
  test starts a logind stand-in on it (the desktop sets the hint, as a locker would);
* the daemon itself, in-process (``start_daemon``) — its console lines are collected so a
  test can wait for one — or as a subprocess in the tests that say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from beacon.config import BeaconSettings, load_config
from beacon.daemon import BeaconDaemon
from beacon.hooks import HookRunner
from beacon.state import DeviceIdentity, save_identity
from hw.advertiser.bluez import BlueZAdvertiser
from hw.audio.pulse import PulseAudioRouter
from hw.lock import LockBusConfig, create_session_locker
from hw.sim.launch import AirProcess, start_air
from hw.standin.logind import LogindStandIn
from relay.admin.store_admin import IssuedCredential
from relay.domain.model import Device, User
from relay.protocol.eid import eid_at
from relay.protocol.link import RelayLink
from tests.btogether_cli import run_btogether
from tests.relay_harness import RelayHarness as Relay
from tests.relay_harness import StartRelay, relay_starter


@dataclass
class World:
    tenant_name: str
    alice: User
    alice_credential: IssuedCredential
    phone: Device
    phone_credential: IssuedCredential
    room: Device
    room_credential: IssuedCredential
    prompt_room: Device
    prompt_room_credential: IssuedCredential


@pytest.fixture
async def start_relay(tmp_path: Path) -> AsyncIterator[StartRelay]:
    """Start the relay (again, on the same port after a restart) on the test's database."""
    async with relay_starter(tmp_path / "relay.sqlite3") as start:
        yield start


@pytest.fixture
async def relay(start_relay: StartRelay) -> Relay:
    return await start_relay()


@pytest.fixture
async def world(relay: Relay) -> World:
    admin = relay.admin
    tenant = await admin.create_tenant("Contoso")
    alice = await admin.create_user(tenant.id, "alice")
    alice_credential = await admin.issue_credential("user", alice.id)
    phone = await admin.create_device(tenant.id, "alice's phone", "desk_phone", "personal")
    phone = await admin.sign_in_device(phone.id, alice.id)
    phone_credential = await admin.issue_credential("device", phone.id)
    room = await admin.create_device(tenant.id, "Room 4.01", "room_system", "meeting_room")
    room_credential = await admin.issue_credential("device", room.id)
    ask = await admin.create_policy(tenant.id, "Ask the room", proximity_join="prompt")
    prompt_room = await admin.create_device(
        tenant.id, "Boardroom", "room_system", "meeting_room", policy_id=ask.id
    )
    prompt_room_credential = await admin.issue_credential("device", prompt_room.id)
    return World(tenant.name, alice, alice_credential, phone, phone_credential, room,
                 room_credential, prompt_room, prompt_room_credential)


_SHORT_DIRS: list[Path] = []


def short_dir(prefix: str) -> Path:
    """A directory whose Unix socket paths fit in sun_path (pytest's tmp_path may not);
    removed after the test."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    _SHORT_DIRS.append(path)
    return path


@pytest.fixture(autouse=True)
def _remove_short_dirs() -> Iterator[None]:
    yield
    while _SHORT_DIRS:
        shutil.rmtree(_SHORT_DIRS.pop(), ignore_errors=True)


def provision(state_dir: Path, relay: Relay, device: Device, credential: IssuedCredential,
              organisation: str = "Contoso") -> DeviceIdentity:
    """Write the device state file as `btogether beacon provision` would."""
    identity = DeviceIdentity(
        relay_url=relay.url,
        device_id=device.id,
        tenant_id=device.tenant_id,
        organisation=organisation,
        credential=credential.token,
        identity_key=device.identity_key.hex(),
        rotation_exponent=device.rotation_exponent,
        provisioned_at=time.time(),
    )
    save_identity(state_dir, identity)
    return identity


def provisioned_phone(relay: Relay, world: World) -> Path:
    """A new short state directory with alice's desk phone provisioned in it."""
    state_dir = short_dir("bt-phone-")
    provision(state_dir, relay, world.phone, world.phone_credential)
    return state_dir


@pytest.fixture(scope="session")
def air() -> Iterator[AirProcess]:
    with start_air([("phone", 0.0, 0.0), ("room", 5.0, 0.0)]) as process:
        yield process


@pytest.fixture
async def logind(air: AirProcess) -> AsyncIterator[LogindStandIn]:
    async with LogindStandIn(air.bus_address("phone"), desktop_sets_hint=True) as standin:
        yield standin


@dataclass
class Console:
    """The daemon's stdout lines, kept so a test can wait for one."""

    lines: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        self.changed.set()

    async def wait_for(self, prefix: str, within: float = 10.0, after: int = 0) -> str:
        async with asyncio.timeout(within):
            while True:
                for line in self.lines[after:]:
                    if line.startswith(prefix):
                        return line
                self.changed.clear()
                await self.changed.wait()

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines if line.startswith(prefix))


@dataclass
class RunningDaemon:
    daemon: BeaconDaemon
    task: asyncio.Task[None]
    console: Console
    state_dir: Path

    async def stop(self) -> None:
        if not self.task.done():
            self.daemon.request_stop()
        await asyncio.wait_for(self.task, 10)


StartDaemon = Callable[..., Awaitable[RunningDaemon]]


@pytest.fixture
async def start_daemon(air: AirProcess, _remove_short_dirs: None) -> AsyncIterator[StartDaemon]:
    """Run the real daemon in-process against the phone host's bus (and a PulseAudio)."""
    running: list[RunningDaemon] = []

    async def start(
        state_dir: Path,
        *,
        settings: BeaconSettings | None = None,
        config: str | None = None,
        host: str = "phone",
        wait_connected: bool = True,
    ) -> RunningDaemon:
        if settings is None:
            path = None
            if config is not None:
                path = state_dir / "beacon.toml"
                path.write_text(config)
            settings = load_config(path, required=path is not None, env={})
        bus = air.bus_address(host)
        identity_file = state_dir / "device.json"
        from beacon.state import load_identity

        identity = load_identity(state_dir)
        assert identity is not None, identity_file
        console = Console()
        daemon = BeaconDaemon(
            identity,
            settings,
            state_dir,
            locker=create_session_locker(LockBusConfig(system_bus_address=bus),
                                         confirm_timeout=2.0),
            audio=PulseAudioRouter(settings.audio.server),
            advertiser=BlueZAdvertiser(bus_address=bus),
            hooks=HookRunner(settings.hooks),
            rng=__import__("random").Random(7),
            out=console,
            tick_s=0.05,
        )
        task = asyncio.create_task(daemon.run())
        handle = RunningDaemon(daemon, task, console, state_dir)
        running.append(handle)
        await console.wait_for("ready")
        if wait_connected:
            await console.wait_for("connected")
        return handle

    yield start
    for handle in running:
        with contextlib.suppress(Exception):
            await handle.stop()


async def laptop(relay: Relay, world: World, laptop_id: str = "laptop-1") -> RelayLink:
    return await RelayLink.connect(relay.url, world.alice_credential.token,
                                   laptop_id=laptop_id, reply_timeout=5.0)


async def beacon_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``btogether beacon ARGS`` as a process: (exit code, stdout, stderr)."""
    return await run_btogether("beacon", *args, env=env, timeout=30)


def eid_now(device: Device) -> bytes:
    return eid_at(device.identity_key, time.time(), device.rotation_exponent)


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
