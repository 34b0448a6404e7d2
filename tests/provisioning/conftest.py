"""Fixtures for provisioning and administration: a real relay (127.0.0.1, port 0) on a real
SQLite file with the admin tables, an owner from the bootstrap, two tenants with a
device administrator each, and helpers for the admin endpoint and for a device that
answers ``login_code.request`` like the beacon daemon does.

The relay's clock is a :class:`ManualClock`, so code expiry and lock-outs are tested
by moving time, not by waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relay.admin.service import bootstrap_owner
from relay.domain.verification import new_login_code
from relay.net.server import RelayServer
from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.admin_link import AdminLink, provision
from relay.protocol.link import RelayLink
from relay.storage.sqlite_store import SqliteStore
from tests.relay_harness import ManualClock, relay_settings


@dataclass
class Tenant:
    id: str
    name: str
    admin_token: str


@dataclass
class Relay:
    server: RelayServer
    store: SqliteStore
    clock: ManualClock
    db: Path
    owner_token: str
    contoso: Tenant
    fabrikam: Tenant
    links: list[AdminLink] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    async def restart(self) -> None:
        """Stop the relay and start a new one on the same database (a new port)."""
        await self.server.stop()
        self.store = SqliteStore(self.db)
        self.server = RelayServer(relay_settings(self.db), self.store, clock=self.clock)
        await self.server.start()

    async def admin(self, token: str | None = None) -> AdminLink:
        link = await AdminLink.connect(self.url, token or self.owner_token, reply_timeout=10.0)
        self.links.append(link)
        return link


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    db = tmp_path / "relay.sqlite3"
    clock = ManualClock()
    store = SqliteStore(db)
    await store.open()
    _, owner_token = await bootstrap_owner(store, "Olivia Owner", clock())
    server = RelayServer(relay_settings(db), store, clock=clock)
    await server.start()
    harness = Relay(server, store, clock, db, owner_token, None, None)  # type: ignore[arg-type]
    owner = await harness.admin()
    for attr, name in (("contoso", "Contoso"), ("fabrikam", "Fabrikam")):
        tenant = await owner.typed(aw.TenantInfo, aw.TenantCreate, name=name)
        created = await owner.typed(
            aw.AdminCreated,
            aw.AdminCreate,
            name=f"{name} devices",
            role="device_admin",
            tenant_id=tenant.id,
        )
        setattr(harness, attr, Tenant(tenant.id, name, created.token))
    try:
        yield harness
    finally:
        for link in harness.links:
            await link.close()
        await server.stop()


class FakeDevice:
    """A device connection that shows a login code and reports it when the relay asks,
    keeping every ``device.state`` it is sent (what the beacon daemon does)."""

    def __init__(self, seed: int = 7) -> None:
        self.code, _ = new_login_code("screen", 0.0, random.Random(seed))
        self.states: list[wire.DeviceStateEvent] = []
        self.link: RelayLink | None = None
        self.credential = ""
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []  # login code reports
        self.watchers: list[asyncio.Task[None]] = []  # reconnect when the account changes
        self.taken = 0
        self.events: asyncio.Queue[wire.Event] = asyncio.Queue()

    async def on_event(self, event: wire.Event) -> None:
        if isinstance(event, wire.LoginCodeRequest):
            # Not awaited here: the link reads replies only after this handler returns.
            self.tasks.append(asyncio.create_task(self.report(event.request_id)))
        elif isinstance(event, wire.DeviceStateEvent):
            self.states.append(event)
            self.changed.set()
        else:
            self.events.put_nowait(event)

    async def report(self, request_id: str) -> None:
        assert self.link is not None
        await self.link.call(wire.LoginCodeReport, request_id=request_id, code=self.code.lower())

    async def connect(self, url: str, credential: str) -> FakeDevice:
        self.credential = credential
        self.link = await RelayLink.connect(url, credential, on_event=self.on_event)
        self.watchers.append(asyncio.create_task(self._reconnect_when_changed(url, self.link)))
        return self

    async def _reconnect_when_changed(self, url: str, link: RelayLink) -> None:
        """Like the beacon daemon: when the relay closes the connection because the
        device's account changed (4002), connect again to get its new state."""
        code, _ = await link.closed
        if code == wire.CloseCode.SESSION_CHANGED and self.link is link:
            await self.connect(url, self.credential)

    async def next_state(self, within: float = 5.0) -> wire.DeviceStateEvent:
        """The next ``device.state`` not yet taken, waiting for it if needed."""
        async with asyncio.timeout(within):
            while len(self.states) <= self.taken:
                self.changed.clear()
                await self.changed.wait()
        self.taken += 1
        return self.states[self.taken - 1]

    async def close(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            await link.close()
        for task in [*self.tasks, *self.watchers]:
            task.cancel()


async def provisioned(
    relay: Relay, admin: AdminLink, mac: str, location: str = "Floor 2", kind: str = "desk_phone"
) -> tuple[aw.DeviceInfo, aw.ProvisionResult]:
    """List a device, generate its code and provision it (the happy path, for set-ups)."""
    device = await admin.typed(aw.DeviceInfo, aw.DeviceAdd, mac=mac, location=location, kind=kind)
    code = await admin.typed(aw.VerificationCode, aw.CodeCreate, device_id=device.id)
    result = await provision(relay.url, mac, code.code)
    return device, result
