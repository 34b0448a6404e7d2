"""A read cache of the directory (accounts, devices, policies, pairings) and the EID index.

The hot paths (resolving sightings, checking policy on every lock change) must not
query the database each time. Everything here is dropped when the store's
directory version changes; the version is checked at most once per
``check_interval`` seconds, so an administrator's change takes effect within that
time, even when made by another process on the same database file.
"""

from __future__ import annotations

from relay.model import GLOBAL_DEFAULT_POLICY, Device, Pairing, Policy, Tenant, User
from relay.resolver import EidIndex, build_index
from relay.store import Store


class Directory:
    def __init__(self, store: Store, check_interval: float = 1.0, eid_neighbours: int = 1) -> None:
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
        self._index: EidIndex | None = None
        self._index_devices: dict[str, Device] = {}

    async def refresh(self, now: float, force: bool = False) -> None:
        if not force and now - self._checked_at < self._check_interval:
            return
        self._checked_at = now
        version = await self._store.directory_version()
        if version != self._version:
            self._version = version
            self._devices.clear()
            self._users.clear()
            self._tenants.clear()
            self._policies.clear()
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

    async def resolve(self, eid: bytes, now: float) -> Device | None:
        """The device beaconing ``eid`` around ``now``, if any (any tenant: the caller filters)."""
        if now - self._checked_at >= self._check_interval:
            await self.refresh(now)
        if self._index is None or self._index.stale(now, self._version):
            devices = await self._store.devices()
            self._index_devices = {d.id: d for d in devices}
            self._index = build_index(
                devices, now, self._version, self._eid_neighbours, previous=self._index
            )
        device_id = self._index.resolve(eid)
        return self._index_devices.get(device_id) if device_id else None
