"""A read cache of the directory (accounts, devices, policies, credentials, pairings) and the
EID index.

The hot paths (resolving sightings, checking policy and credentials on every request)
must not query the database each time. The store's directory version is checked at
most once per ``check_interval`` seconds (and at once after this relay changed
something); when it moved, the store's change log says which rows changed and only
those are dropped, so an administrator's edit takes effect within that time even when
made by another process or relay node. Listeners hear of every change, which is how
live sessions of a revoked credential or a removed device are found and closed.
Misses are not cached: an unknown id costs a lookup, not memory.

EIDs are resolved by an index kept current in the background (:mod:`relay.domain.eid_indexer`):
it loads every resolvable device once, follows directory changes device by device (the
change log names them) and the clock window by window, so neither a window change nor
an edit rebuilds it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from relay.domain.eid_indexer import EidIndexer
from relay.domain.eid_worker import EidWorker, ProcessWorker
from relay.domain.model import (
    GLOBAL_DEFAULT_POLICY,
    Credential,
    Device,
    DeviceState,
    DirectoryChange,
    Pairing,
    Policy,
    Tenant,
    User,
)
from relay.domain.resolver import EidIndex
from relay.domain.store import DirectoryStore, PairingStore

SIGNED_IN: tuple[DeviceState, ...] = ("signed_in",)

# A directory change whose devices are not known (the change log no longer reaches
# back) re-reads the whole index inline up to this many devices; beyond it, page by page
# in the background.
RECONCILE_INLINE = 2000

ChangeListener = Callable[[Sequence[DirectoryChange] | None, float], Awaitable[None]]


class DirectorySource(DirectoryStore, PairingStore, Protocol):
    """What the directory cache reads: the directory and the pairings of a store."""


class _StoreDevices:
    """The store as the EID indexer reads it."""

    def __init__(self, store: DirectoryStore) -> None:
        self._store = store

    async def device(self, device_id: str) -> Device | None:
        return await self._store.device(device_id)

    async def device_page(self, after: str | None, limit: int) -> Sequence[Device]:
        return await self._store.devices(after=after, limit=limit)


class Directory:
    def __init__(
        self,
        store: DirectorySource,
        check_interval: float = 1.0,
        eid_neighbours: int = 1,
        *,
        clock: Callable[[], float] = time.time,
        eid_worker: Callable[[], EidWorker] = ProcessWorker,
        resolvable_states: Collection[DeviceState] | None = SIGNED_IN,
    ) -> None:
        self._store = store
        self._check_interval = check_interval
        self._eid_neighbours = eid_neighbours
        self._version = -1
        self._pairings_version = -1
        self._laptop_pairings: dict[tuple[str, str], list[Pairing]] = {}
        self._checked_at = float("-inf")
        self._devices: dict[str, Device] = {}
        self._users: dict[str, User] = {}
        self._tenants: dict[str, Tenant] = {}
        self._policies: dict[str, Policy] = {}
        self._credentials: dict[str, Credential] = {}
        self._listeners: list[ChangeListener] = []
        states = frozenset(resolvable_states) if resolvable_states is not None else None
        self.eids = EidIndexer(
            EidIndex(eid_neighbours),
            _StoreDevices(store),
            resolvable=lambda d: states is None or d.state in states,
            clock=clock,
            worker=eid_worker,
        )

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(changes, now)`` after each refresh that saw the directory move
        (``changes`` is None when the change log no longer reached back: assume anything)."""
        self._listeners.append(listener)

    @property
    def version(self) -> int:
        return self._version

    def refresh_due(self, now: float) -> bool:
        """Whether the next read will first check the database for changes."""
        return now - self._checked_at >= self._check_interval

    async def refresh(self, now: float, force: bool = False) -> None:
        if not force and not self.refresh_due(now):
            return
        self._checked_at = now
        version = await self._store.directory_version()
        if version != self._version:
            first = self._version < 0
            changes = None if first else await self._store.changes_since(self._version)
            self._version = version
            self._forget(changes)
            if not first:
                await self._eids_directory_moved(changes, now)
                for listener in self._listeners:
                    await listener(changes, now)
        self.eids.keep_up(now)
        pairings_version = await self._store.pairings_version()
        if pairings_version != self._pairings_version:
            self._pairings_version = pairings_version
            self._laptop_pairings.clear()

    def _forget(self, changes: Sequence[DirectoryChange] | None) -> None:
        if changes is None:
            self._devices.clear()
            self._users.clear()
            self._tenants.clear()
            self._policies.clear()
            self._credentials.clear()
            return
        caches: dict[
            str,
            dict[str, Device]
            | dict[str, User]
            | dict[str, Tenant]
            | dict[str, Policy]
            | dict[str, Credential],
        ] = {
            "devices": self._devices,
            "users": self._users,
            "tenants": self._tenants,
            "policies": self._policies,
            "credentials": self._credentials,
        }
        for change in changes:
            caches[change.kind].pop(change.id, None)

    def forget_pairings(self) -> None:
        """Drop cached pairings (after this relay changed some)."""
        self._laptop_pairings.clear()

    async def _maybe_refresh(self, now: float) -> None:
        if self.refresh_due(now):
            await self.refresh(now)

    async def laptop_pairings(self, user_id: str, laptop_id: str, now: float) -> list[Pairing]:
        """The phones a laptop is paired with (cached: read on every lock change)."""
        await self._maybe_refresh(now)
        key = (user_id, laptop_id)
        pairings = self._laptop_pairings.get(key)
        if pairings is None:
            pairings = await self._store.pairings_of_laptop(user_id, laptop_id)
            self._laptop_pairings[key] = pairings
        return pairings

    async def device(self, device_id: str, now: float) -> Device | None:
        await self._maybe_refresh(now)
        device = self._devices.get(device_id)
        if device is None:
            device = await self._store.device(device_id)
            if device is not None:
                self._devices[device_id] = device
        return device

    async def user(self, user_id: str, now: float) -> User | None:
        await self._maybe_refresh(now)
        user = self._users.get(user_id)
        if user is None:
            user = await self._store.user(user_id)
            if user is not None:
                self._users[user_id] = user
        return user

    async def credential(self, credential_id: str, now: float) -> Credential | None:
        await self._maybe_refresh(now)
        credential = self._credentials.get(credential_id)
        if credential is None:
            credential = await self._store.credential(credential_id)
            if credential is not None:
                self._credentials[credential_id] = credential
        return credential

    async def _tenant(self, tenant_id: str) -> Tenant | None:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = await self._store.tenant(tenant_id)
            if tenant is not None:
                self._tenants[tenant_id] = tenant
        return tenant

    async def _policy(self, policy_id: str) -> Policy | None:
        policy = self._policies.get(policy_id)
        if policy is None:
            policy = await self._store.policy(policy_id)
            if policy is not None:
                self._policies[policy_id] = policy
        return policy

    async def effective_policy(self, tenant_id: str, policy_id: str | None, now: float) -> Policy:
        """The subject's own policy, else its tenant's default, else the global default."""
        await self._maybe_refresh(now)
        if policy_id is not None:
            policy = await self._policy(policy_id)
            if policy is not None:
                return policy
        tenant = await self._tenant(tenant_id)
        if tenant is not None and tenant.default_policy_id is not None:
            policy = await self._policy(tenant.default_policy_id)
            if policy is not None:
                return policy
        return GLOBAL_DEFAULT_POLICY

    # --- EID resolution ----------------------------------------------------------------
    async def start(self, now: float) -> None:
        """Read the directory version, then load the EID index in the background (sightings
        resolve as it fills; later changes reach it through :meth:`refresh`)."""
        await self.refresh(now, force=True)
        self.eids.start()

    async def close(self) -> None:
        await self.eids.close()

    async def _eids_directory_moved(
        self, changes: Sequence[DirectoryChange] | None, now: float
    ) -> None:
        if changes is not None:
            devices = {c.id for c in changes if c.kind == "devices"}
            if devices:
                await self.eids.devices_changed(devices, now)
            return
        # Which devices changed is not known: reconcile the index with the store
        # (unchanged devices cost a comparison, no AES), inline while that is cheap.
        if len(self.eids.index) <= RECONCILE_INLINE and self.eids.loaded.is_set():
            await self.eids.reconcile(now)
        else:
            self.eids.resync("directory changed")

    async def resolve(self, eid: bytes, now: float) -> Device | None:
        """The signed-in device beaconing ``eid`` around ``now``, if any (any tenant: the
        caller filters). A device waiting for activation or sign-in does not resolve."""
        return (await self.resolve_many((eid,), now))[0]

    async def resolve_many(self, eids: Sequence[bytes], now: float) -> list[Device | None]:
        """:meth:`resolve` for a sighting report's EIDs, in their order: one directory
        check and one choice of index tables for the whole batch."""
        if not self.eids.started:
            await self.start(now)
        elif now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        cached = self._devices
        out: list[Device | None] = []
        for device_id in self.eids.index.resolve_many(eids, now):
            if device_id is None:
                out.append(None)
                continue
            device = cached.get(device_id)  # the hot path: no coroutine when cached
            out.append(device if device is not None else await self.device(device_id, now))
        return out
