"""Live changes for open admin pages: which tenant's devices changed, when.

:class:`Changes` watches what the relay shares with every relay node — the directory's
version (any change to devices, users, policies, credentials), the pairings' version,
and presence (which of a tenant's devices are connected) — about twice a second, but only
for tenants someone is watching. When a tenant's picture changes, each watcher of that
tenant is told "changed"; the page then asks again through the admin API, so what it
shows has passed the same role and tenant checks as any other request. The events carry
no data, so an event stream cannot leak another tenant's. Watching shared state (not one
process's connection events) keeps it right on a cluster of relays.

It also remembers when each watched device was last seen online (for "last seen").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from relay.service import Presence, device_address
from relay.store import RelayStore

log = structlog.get_logger("relay.web.live")

POLL_S = 0.5


@dataclass
class _Tenant:
    watchers: set[asyncio.Queue[str]] = field(default_factory=set)
    device_ids: list[str] = field(default_factory=list)
    fingerprint: object = None


class Changes:
    def __init__(
        self,
        store: RelayStore,
        presence: Presence,
        clock: Callable[[], float],
        poll_s: float = POLL_S,
    ) -> None:
        self.store = store
        self.presence = presence
        self.clock = clock
        self.poll_s = poll_s
        self.last_seen: dict[str, float] = {}
        self._tenants: dict[str, _Tenant] = {}
        self._versions: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for tenant in self._tenants.values():
            for queue in tenant.watchers:
                queue.put_nowait("bye")

    def watch(self, tenant_id: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=4)
        self._tenants.setdefault(tenant_id, _Tenant()).watchers.add(queue)
        return queue

    def unwatch(self, tenant_id: str, queue: asyncio.Queue[str]) -> None:
        tenant = self._tenants.get(tenant_id)
        if tenant is not None:
            tenant.watchers.discard(queue)
            if not tenant.watchers:
                del self._tenants[tenant_id]

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("live_check_failed")
            await asyncio.sleep(self.poll_s)

    async def check(self) -> None:
        """Look once; tell the watchers of every tenant whose picture changed."""
        versions = (await self.store.directory_version(), await self.store.pairings_version())
        reload = versions != self._versions
        self._versions = versions
        now = self.clock()
        for tenant_id, tenant in list(self._tenants.items()):
            if reload or tenant.fingerprint is None:
                tenant.device_ids = [d.id for d in await self.store.devices(tenant_id)]
            online = frozenset(
                [d for d in tenant.device_ids if await self.presence.is_online(device_address(d))]
            )
            for device_id in online:
                self.last_seen[device_id] = now
            fingerprint = (versions, online)
            if fingerprint != tenant.fingerprint:
                first = tenant.fingerprint is None
                tenant.fingerprint = fingerprint
                if not first:
                    for queue in tenant.watchers:
                        with contextlib.suppress(asyncio.QueueFull):  # one pending is enough
                            queue.put_nowait("changed")
