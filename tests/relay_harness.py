"""A real relay for tests: RelayServer on 127.0.0.1 over SQLite, its settings, a manual clock.

``relay_starter`` runs it on the real clock (the beacons' EIDs follow it), for the beacon's
and the client's tests; the provisioning tests drive ``ManualClock`` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.admin.store_admin import Admin
from relay.config import RelaySettings
from relay.net.server import RelayServer
from relay.storage.sqlite_store import SqliteStore


class ManualClock:
    """A wall clock the test moves, for expiry without sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def relay_settings(db: Path, port: int = 0) -> RelaySettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "db": db,
        "directory_check_s": 0.0,  # admin edits (policy changes) apply at once
    }
    return RelaySettings.model_construct(**{**RelaySettings().model_dump(), **values})


@dataclass
class RelayHarness:
    server: RelayServer
    store: SqliteStore
    admin: Admin
    db: Path
    port: int  # kept after a stop, to start the relay again on the same port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


StartRelay = Callable[..., Awaitable[RelayHarness]]


@asynccontextmanager
async def relay_starter(db: Path) -> AsyncIterator[StartRelay]:
    """Yields ``start(port=0)``, which starts a relay (again, after a stop) on ``db``;
    every relay still running is stopped on exit."""
    running: list[RelayHarness] = []

    async def start(port: int = 0) -> RelayHarness:
        store = SqliteStore(db)
        server = RelayServer(relay_settings(db, port), store)
        await server.start()
        harness = RelayHarness(server, store, Admin(store), db, server.port)
        running.append(harness)
        return harness

    try:
        yield start
    finally:
        for harness in running:
            if harness.server._server is not None:
                await harness.server.stop()
