"""A read cache of the directory (accounts, devices, policies, pairings) and the EID index.

The hot paths (resolving sightings, checking policy on every lock change) must not
query the database each time. Everything here is dropped when the store's
directory version changes; the version is checked at most once per
``check_interval`` seconds, so an administrator's change takes effect within that
time, even when made by another process on the same database file.

EIDs are resolved by an index kept current in the background (:mod:`relay.eid_indexer`):
it loads every resolvable device once, follows directory changes device by device and
the clock window by window, so neither a window change nor an edit rebuilds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor

from relay.eid_indexer import EidIndexer, worker_process
from relay.model import GLOBAL_DEFAULT_POLICY, Device, DeviceState, Pairing, Policy, Tenant, User
from relay.resolver import EidIndex
from relay.store import Store

# A directory change re-reads the whole index inline (so that it applies within this
# check) up to this many devices; beyond it, page by page in the background.
RECONCILE_INLINE = 2000


class _StoreDevices:
    """The store as the EID indexer reads it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def device(self, device_id: str) -> Device | None:
        return await self._store.device(device_id)

    async def device_page(self, after: str | None, limit: int) -> Sequence[Device]:
        return await self._store.devices(after=after, limit=limit)


class Directory:
    def __init__(
        self,
        store: Store,
        check_interval: float = 1.0,
        eid_neighbours: int = 1,
        *,
        clock: Callable[[], float] = time.time,
        eid_worker: Callable[[], Executor] = worker_process,
        resolvable_states: Collection[DeviceState] | None = None,
    ) -> None:
        self._store = store
        self._check_interval = check_interval
        self._eid_neighbours = eid_neighbours
        self._version = -1
        self._pairings_version = -1
        self._laptop_pairings: dict[tuple[str, str], list[Pairing]] = {}
        self._checked_at = float("-inf")
        self._devices: dict[str, Device | None] = {}
        self._users: dict[str, User | None] = {}
        self._tenants: dict[str, Tenant | None] = {}
        self._policies: dict[str, Policy | None] = {}
        states = frozenset(resolvable_states) if resolvable_states is not None else None
        self.eids = EidIndexer(
            EidIndex(eid_neighbours),
            _StoreDevices(store),
            resolvable=lambda d: states is None or d.state in states,
            clock=clock,
            executor=eid_worker,
        )

    async def refresh(self, now: float, force: bool = False) -> None:
        if not force and now - self._checked_at < self._check_interval:
            return
        self._checked_at = now
        version = await self._store.directory_version()
        if version != self._version:
            first = self._version < 0
            self._version = version
            self._devices.clear()
            self._users.clear()
            self._tenants.clear()
            self._policies.clear()
            if not first:
                await self._eids_directory_moved(now)
        self.eids.keep_up(now)
        pairings_version = await self._store.pairings_version()
        if pairings_version != self._pairings_version:
            self._pairings_version = pairings_version
            self._laptop_pairings.clear()

    def forget_pairings(self) -> None:
        """Drop cached pairings (after this relay changed some)."""
        self._laptop_pairings.clear()

    async def laptop_pairings(self, user_id: str, laptop_id: str, now: float) -> list[Pairing]:
        """The phones a laptop is paired with (cached: read on every lock change)."""
        if now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        key = (user_id, laptop_id)
        pairings = self._laptop_pairings.get(key)
        if pairings is None:
            pairings = await self._store.pairings_of_laptop(user_id, laptop_id)
            self._laptop_pairings[key] = pairings
        return pairings

    async def device(self, device_id: str, now: float) -> Device | None:
        if now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        if device_id not in self._devices:
            self._devices[device_id] = await self._store.device(device_id)
        return self._devices[device_id]

    async def user(self, user_id: str, now: float) -> User | None:
        if now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        if user_id not in self._users:
            self._users[user_id] = await self._store.user(user_id)
        return self._users[user_id]

    async def _tenant(self, tenant_id: str) -> Tenant | None:
        if tenant_id not in self._tenants:
            self._tenants[tenant_id] = await self._store.tenant(tenant_id)
        return self._tenants[tenant_id]

    async def _policy(self, policy_id: str) -> Policy | None:
        if policy_id not in self._policies:
            self._policies[policy_id] = await self._store.policy(policy_id)
        return self._policies[policy_id]

    async def effective_policy(self, tenant_id: str, policy_id: str | None, now: float) -> Policy:
        """The subject's own policy, else its tenant's default, else the global default."""
        if now - self._checked_at >= self._check_interval:
            await self.refresh(now)
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

    async def _eids_directory_moved(self, now: float) -> None:
        # Which devices changed is not known here: reconcile the index with the store
        # (unchanged devices cost a comparison, no AES), inline while that is cheap.
        if len(self.eids.index) <= RECONCILE_INLINE and self.eids.loaded.is_set():
            await self.eids.reconcile(now)
        else:
            self.eids.resync("directory changed")

    async def resolve(self, eid: bytes, now: float) -> Device | None:
        """The device beaconing ``eid`` around ``now``, if any (any tenant: the caller filters)."""
        if not self.eids.started:
            await self.start(now)
        elif now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        device_id = self.eids.index.resolve(eid, now)
        if device_id is None:
            return None
        device = self._devices.get(device_id)  # the hot path: no coroutine when cached
        return device if device is not None else await self.device(device_id, now)
