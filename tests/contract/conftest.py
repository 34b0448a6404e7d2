"""The backends of the contract suites: each implementation of an interface, behind the same tests.

A test asks for ``backend`` (or ``store`` / ``store_factory``) and runs once per entry of
:data:`STORE_BACKENDS`. Each entry makes a fresh, empty database for the test and can
open any number of stores on it — two stores on one database are two relay nodes.
To hold another implementation of :class:`relay.domain.store.RelayStore` to the contract, add
an entry (a name and an async context manager yielding a :class:`StoreBackend`).

PostgreSQL runs on a real ``postgres`` started once per session (``postgres_server``,
tests/conftest.py); each test gets a schema of its own (``search_path`` in the URL), so
the store's migrations run for every test, as they would on a new database.

Redis (the router and ephemeral-state suites) runs on a real ``redis-server`` started once
per session (``redis_server``); each test gets a key namespace of its own.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relay.domain.store import RelayStore
from relay.web.accounts import Accounts
from tests.cluster_harness import RedisServer, redis_available

OpenStore = Callable[[], Awaitable[RelayStore]]


@dataclass
class StoreBackend:
    """One backend for one test: ``open_store()`` opens another store on the test's
    database; ``accounts(store)`` is the browser sign-in records on that store's database
    (None where the backend has none)."""

    name: str
    open_store: OpenStore
    accounts: Callable[[RelayStore], Accounts] | None = None
    opened: list[RelayStore] = field(default_factory=list)


BackendMaker = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[StoreBackend]]


@asynccontextmanager
async def _closing(backend: StoreBackend) -> AsyncIterator[StoreBackend]:
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.close()


def sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AbstractAsyncContextManager[StoreBackend]:
    from relay.storage.sqlite_store import SqliteStore
    from relay.web.accounts import SqliteAccounts

    backend = StoreBackend("sqlite", lambda: _opened(backend, SqliteStore(tmp_path / "relay.sqlite3")))

    def accounts(store: RelayStore) -> Accounts:
        assert isinstance(store, SqliteStore)
        return SqliteAccounts(store)

    backend.accounts = accounts
    return _closing(backend)


_schemas = itertools.count(1)


def postgres_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AbstractAsyncContextManager[StoreBackend]:
    import psycopg

    from relay.storage.postgres_store import PostgresStore
    from relay.web.postgres_accounts import PostgresAccounts

    server = request.getfixturevalue("postgres_server")
    schema = f"contract_{next(_schemas)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{server.url()}?options=-csearch_path%3D{schema}"
    backend = StoreBackend("postgres", lambda: _opened(backend, PostgresStore(url, max_size=4)))

    def accounts(store: RelayStore) -> Accounts:
        assert isinstance(store, PostgresStore)
        return PostgresAccounts(store)

    backend.accounts = accounts
    return _closing(backend)


async def _opened(backend: StoreBackend, store: Any) -> RelayStore:
    await store.open()
    backend.opened.append(store)
    opened: RelayStore = store
    return opened


def memory_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AbstractAsyncContextManager[StoreBackend]:
    """The in-memory store the domain tests run on (tests/fakes): held to the same contract,
    so a domain test cannot pass because the fake is more lenient. Its one "database" is
    the instance: every store opened on it is that instance (two nodes share it)."""
    from tests.fakes import MemoryStore

    database = MemoryStore()
    backend = StoreBackend("memory", lambda: _opened(backend, database))
    return _closing(backend)


STORE_BACKENDS: dict[str, BackendMaker] = {
    "sqlite": sqlite_backend,
    "postgres": postgres_backend,
}
# The store contract only (tests/contract/test_store.py): the memory store keeps no
# browser sign-in records and no restart-proof short-lived state.
STORE_ONLY_BACKENDS: dict[str, BackendMaker] = {**STORE_BACKENDS, "memory": memory_backend}


@pytest.fixture(params=list(STORE_BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreBackend]:
    async with STORE_BACKENDS[request.param](request, tmp_path) as made:
        yield made


@pytest.fixture
async def store(backend: StoreBackend) -> RelayStore:
    """A store on the test's fresh database."""
    return await backend.open_store()


@pytest.fixture
def store_factory(backend: StoreBackend) -> OpenStore:
    """Opens another store on the same database (another relay node)."""
    return backend.open_store


@pytest.fixture
def accounts_of(backend: StoreBackend) -> Callable[[RelayStore], Accounts]:
    if backend.accounts is None:
        pytest.skip(f"the {backend.name} backend keeps no browser sign-in records")
    return backend.accounts


# --- Redis: the router and short-lived state -------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port, once per session."""
    if not redis_available():
        pytest.skip("redis-server is not installed (./dev.sh test installs it)")
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """Keys of one test's routers and state (one Redis serves the whole session)."""
    return "t" + secrets.token_hex(4)
