"""Fixtures for the relay's tests: a real relay on 127.0.0.1 (port 0) over a real SQLite file.

The relay's clock is a :class:`ManualClock` the test can move forward, so expiry is
tested without sleeping; sockets, websockets, SQLite and the wire are all real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.admin.store_admin import Admin, IssuedCredential
from relay.config import RelaySettings
from relay.domain.model import Device, Policy, Tenant, User
from relay.net.server import RelayServer
from relay.protocol.eid import eid_at
from relay.protocol.link import RelayLink
from relay.storage.sqlite_store import SqliteStore
from tests.relay_harness import ManualClock


@dataclass
class Person:
    user: User
    credential: IssuedCredential
    phone: Device | None = None
    phone_credential: IssuedCredential | None = None


@dataclass
class World:
    """Two tenants: Contoso (alice, bob, a room, a prompting room) and Fabrikam (carol)."""

    contoso: Tenant
    fabrikam: Tenant
    alice: Person
    bob: Person
    carol: Person
    room: Device
    room_credential: IssuedCredential
    prompt_room: Device
    prompt_room_credential: IssuedCredential
    disabled_policy: Policy


@dataclass
class RelayHarness:
    server: RelayServer
    store: SqliteStore
    admin: Admin
    clock: ManualClock
    db: Path
    settings: RelaySettings

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def laptop(self, person: Person, laptop_id: str = "laptop-1", **kw: Any) -> RelayLink:
        return await RelayLink.connect(
            self.url, person.credential.token, laptop_id=laptop_id, reply_timeout=5.0, **kw
        )

    async def device(self, credential: IssuedCredential, **kw: Any) -> RelayLink:
        """A device connected, its ``device.state`` (sent after every welcome) taken."""
        link = await RelayLink.connect(self.url, credential.token, reply_timeout=5.0, **kw)
        if "on_event" not in kw:
            await link.next_event("device.state", within=5.0)
        return link

    def eid(self, device: Device) -> bytes:
        return eid_at(device.identity_key, self.clock(), device.rotation_exponent)


def relay_settings(db: Path, **overrides: Any) -> RelaySettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "db": db, "directory_check_s": 0.0}
    values.update(overrides)
    return RelaySettings.model_construct(**{**RelaySettings().model_dump(), **values})


StartRelay = Callable[..., Awaitable[RelayHarness]]


@pytest.fixture
async def start_relay(tmp_path: Path) -> AsyncIterator[StartRelay]:
    """Start a relay (again, e.g. after a restart) on the test's database file."""
    running: list[RelayHarness] = []
    clock = ManualClock()

    async def start(**overrides: Any) -> RelayHarness:
        db = tmp_path / "relay.sqlite3"
        settings = relay_settings(db, **overrides)
        store = SqliteStore(db)
        server = RelayServer(settings, store, clock=clock)
        await server.start()
        harness = RelayHarness(server, store, Admin(store, clock=clock), clock, db, settings)
        running.append(harness)
        return harness

    yield start
    for harness in running:
        if harness.server._server is not None:
            await harness.server.stop()


@pytest.fixture
async def relay(start_relay: StartRelay) -> RelayHarness:
    return await start_relay()


async def build_world(admin: Admin) -> World:
    contoso = await admin.create_tenant("Contoso")
    fabrikam = await admin.create_tenant("Fabrikam")
    disabled = await admin.create_policy(
        contoso.id, "No Better Together", allow_better_together="Disabled"
    )
    prompt = await admin.create_policy(contoso.id, "Ask the room", proximity_join="prompt")

    async def person(tenant: Tenant, name: str) -> Person:
        user = await admin.create_user(tenant.id, name)
        credential = await admin.issue_credential("user", user.id)
        phone = await admin.create_device(
            tenant.id, f"{name}'s phone", "desk_phone", "personal", location="desk"
        )
        phone = await admin.sign_in_device(phone.id, user.id)
        phone_credential = await admin.issue_credential("device", phone.id)
        return Person(user, credential, phone, phone_credential)

    alice = await person(contoso, "alice")
    bob = await person(contoso, "bob")
    carol = await person(fabrikam, "carol")
    room = await admin.create_device(
        contoso.id, "Room 4.01", "room_system", "meeting_room", location="floor 4"
    )
    room_credential = await admin.issue_credential("device", room.id)
    prompt_room = await admin.create_device(
        contoso.id, "Boardroom", "room_system", "meeting_room", policy_id=prompt.id
    )
    prompt_room_credential = await admin.issue_credential("device", prompt_room.id)
    return World(
        contoso,
        fabrikam,
        alice,
        bob,
        carol,
        room,
        room_credential,
        prompt_room,
        prompt_room_credential,
        disabled,
    )


@pytest.fixture
async def world(relay: RelayHarness) -> World:
    return await build_world(relay.admin)
