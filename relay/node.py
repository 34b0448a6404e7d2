"""The composition root: one relay node's parts, built from its settings and wired once.

``build_node(settings)`` reads the database URL (a SQLite path or ``sqlite:///…``, or
``postgresql://…``) and the optional Redis URL and builds the store, the router and
presence, the short-lived state, the directory cache, the domain services and the
metrics, handing each its collaborators. Nothing is patched after construction, and
the network shell (:mod:`relay.net.server`) only receives the finished node.

Embedded default (no Redis): SQLite, an in-process router, in-memory short-lived
state, with provisioning's guess counters in the SQLite file so a restart does not
reset them. A cluster (PostgreSQL and Redis) uses the Redis router and state for
everything short-lived, shared by every node.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relay.admin.service import AdminService
from relay.config import RelaySettings
from relay.domain.consoles import Consoles
from relay.domain.directory import Directory
from relay.domain.ephemeral import EphemeralState, MemoryEphemeral
from relay.domain.handlers import handlers_of
from relay.domain.metrics import RelayMetrics
from relay.domain.provisioning import Provisioning
from relay.domain.routing import LocalRouter, Router
from relay.domain.service import RelayService, Rules
from relay.domain.store import RelayStore
from relay.domain.verification import ThrottlePolicy
from relay.storage.sqlite_ephemeral import SqliteEphemeral
from relay.storage.sqlite_store import SqliteStore
from relay.storage.sqlite_writer import Synchronous
from relay.web.account_admin import AccountAdmin
from relay.web.accounts import Accounts, SqliteAccounts
from relay.web.app import WebFront
from relay.web.sso import ProviderClient, SsoCheck
from relay.web.sso_admin import SsoAdmin


class SettingsError(ValueError):
    """The settings name something this relay cannot use (a bad URL, a missing part)."""


@dataclass
class RelayNode:
    """Everything one relay process runs on, wired."""

    settings: RelaySettings
    store: RelayStore
    router: Router
    ephemeral: EphemeralState  # pair requests, hand-offs, prompts, sightings, login codes
    guesses: EphemeralState  # provisioning guess counters and alerts (survive restarts)
    directory: Directory
    service: RelayService
    provisioning: Provisioning
    consoles: Consoles
    admin: AdminService
    web: WebFront
    metrics: RelayMetrics
    clock: Callable[[], float]

    async def open(self) -> None:
        await self.store.open()
        # Several nodes on one PostgreSQL database need Redis; one node without it is fine.
        postgres = sys.modules.get("relay.storage.postgres_store")
        if postgres is not None and isinstance(self.store, postgres.PostgresStore):
            await self.store.claim_node(alone=self.settings.redis is None)
        await self.router.start()
        await self.directory.start(self.clock())  # the EID index loads in the background
        await self.web.start()

    async def close(self) -> None:
        await self.web.stop()
        await self.directory.close()
        await self.router.stop()
        await self.store.close()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL or plain path; None for another scheme."""
    if "://" not in url:
        return Path(url)
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    # sqlite:///relative/or/absolute: the path after the third slash, as SQLAlchemy reads it
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else parts.path
    if not path:
        raise SettingsError(f"no file in the database URL {url!r} (e.g. sqlite:///relay.sqlite3)")
    return Path(path)


def display_db(db: str | Path) -> str:
    """The database URL as logs and messages may show it: without its password."""
    db = str(db)  # tests (and older callers) hand a SQLite file as a Path
    parts = urlsplit(db) if "://" in db else None
    if parts is None or parts.password is None:
        return db
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{host}").geturl()


def store_for(db: str, synchronous: Synchronous = "normal") -> RelayStore:
    """The store a database URL (or SQLite file path) names; not yet opened."""
    path = sqlite_path(db)
    if path is not None:
        return SqliteStore(path, synchronous)
    scheme = urlsplit(db).scheme
    if scheme in ("postgresql", "postgres"):
        module = _optional("relay.storage.postgres_store", "a PostgreSQL database")
        try:
            store: RelayStore = module.PostgresStore(db)
        except ValueError as exc:  # a URL libpq cannot parse
            raise SettingsError(str(exc)) from None
        return store
    raise SettingsError(
        f"unknown database URL scheme {scheme!r}: use a file path, sqlite:///path or "
        "postgresql://…"
    )


def accounts_for(store: RelayStore) -> Accounts:
    """People's sign-in records (passwords, browser sessions…), in the store's database."""
    if isinstance(store, SqliteStore):
        return SqliteAccounts(store)
    module = _optional("relay.web.postgres_accounts", "browser sign-in on PostgreSQL")
    accounts: Accounts = module.PostgresAccounts(store)
    return accounts


def _optional(name: str, what: str) -> Any:
    """A backend module whose libraries are an optional extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SettingsError(
            f"{what} needs the 'cluster' extra: pip install 'btogether[cluster]' ({exc})"
        ) from None


def _durable_state(store: RelayStore) -> EphemeralState | None:
    """Short-lived state kept in the store's own database (guess counters and lock-outs
    that a restart must not reset, when there is no Redis)."""
    if isinstance(store, SqliteStore):
        return SqliteEphemeral(store)
    # The PostgreSQL backend is optional: if the store is one, its module is loaded.
    postgres = sys.modules.get("relay.storage.postgres_store")
    if postgres is not None and isinstance(store, postgres.PostgresStore):
        module = _optional("relay.storage.postgres_ephemeral", "a PostgreSQL database")
        state: EphemeralState = module.PostgresEphemeral(store)
        return state
    return None


def rules_of(settings: RelaySettings) -> Rules:
    return Rules(
        sighting_freshness=settings.sighting_freshness_s,
        pair_request_ttl=settings.pair_request_ttl_s,
        join_prompt_ttl=settings.join_prompt_ttl_s,
        pushes_per_minute=settings.pushes_per_minute,
    )


def build_node(
    settings: RelaySettings,
    *,
    store: RelayStore | None = None,
    router: Router | None = None,
    ephemeral: EphemeralState | None = None,
    guesses: EphemeralState | None = None,
    metrics: RelayMetrics | None = None,
    directory: Directory | None = None,
    throttle: ThrottlePolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> RelayNode:
    """Build a relay node from its settings; any part given is used instead of built."""
    store = store if store is not None else store_for(settings.db, settings.sqlite_synchronous)
    metrics = metrics or RelayMetrics()
    if settings.redis is not None and (router is None or ephemeral is None or guesses is None):
        module = _optional("relay.storage.redis_state", "Redis")
        try:
            client = module.connect(settings.redis)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        # One connection pool for both; the router closes it when the node stops.
        # (``is None``, not ``or``: a router or state holding nothing yet has length 0.)
        redis_state: EphemeralState = module.RedisEphemeral(client)
        if router is None:
            router = module.RedisRouter(client, metrics=metrics, close_client=True)
        ephemeral = redis_state if ephemeral is None else ephemeral
        guesses = redis_state if guesses is None else guesses
    router = LocalRouter(metrics) if router is None else router
    ephemeral = MemoryEphemeral() if ephemeral is None else ephemeral
    if guesses is None:
        guesses = _durable_state(store) or ephemeral
    directory = directory or Directory(
        store, settings.directory_check_s, settings.eid_neighbours, clock=clock
    )
    provisioning = Provisioning(store, directory, router, ephemeral, guesses, throttle=throttle)
    consoles = Consoles(store, router)
    service = RelayService(
        store,
        directory,
        ephemeral,
        router,
        rules_of(settings),
        handlers={**handlers_of(provisioning), **handlers_of(consoles)},
        device_state=provisioning.device_state,
    )
    accounts = accounts_for(store)
    sso_client = ProviderClient()
    sso_check = SsoCheck(store, accounts, sso_client)
    admin = AdminService(
        store,
        provisioning,
        service,
        router,
        clock=clock,
        handlers=AccountAdmin(store, accounts).handlers(),
        extensions=[
            lambda service: SsoAdmin(service, store, accounts, sso_client, sso_check).handlers()
        ],
    )
    web = WebFront(
        store,
        accounts,
        admin,
        provisioning,
        router,
        clock,
        sso_client=sso_client,
        sso_check=sso_check,
        sso_check_every_s=settings.sso_check_s,
        shared=ephemeral,
    )
    return RelayNode(
        settings=settings,
        store=store,
        router=router,
        ephemeral=ephemeral,
        guesses=guesses,
        directory=directory,
        service=service,
        provisioning=provisioning,
        consoles=consoles,
        admin=admin,
        web=web,
        metrics=metrics,
        clock=clock,
    )
