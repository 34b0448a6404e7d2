"""Live changes for open admin pages: which tenant's devices changed, when.

:class:`Changes` watches what the relay shares with every relay node — the directory's
version (any change to devices, users, policies, credentials), the pairings' version,
and presence (which of a tenant's devices are connected) — about twice a second, but only
for tenants someone is watching. When a tenant's picture changes, each watcher of that
tenant is told "changed"; the page then asks again through the admin API, so what it
shows has passed the same role and tenant checks as any other request. The events carry
no data, so an event stream cannot leak another tenant's. Watching shared state (not one
process's connection events) keeps it right on a cluster of relays.

It also records when each watched device was last seen online (for "last seen"), in the
relay's shared short-lived state: every node's page shows the same time, whichever node
saw the device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from relay.domain.ephemeral import EphemeralState, MemoryEphemeral
from relay.domain.service import Presence, device_address
from relay.domain.store import RelayStore, StoreUnavailable

log = structlog.get_logger("relay.web.live")

POLL_S = 0.5
SEEN_EVERY_S = 5.0  # "last seen" of an online device is written at most this often
SEEN_KEPT_S = 30 * 86_400.0


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
        shared: EphemeralState | None = None,
    ) -> None:
        self.store = store
        self.presence = presence
        self.clock = clock
        self.poll_s = poll_s
        self.shared = shared if shared is not None else MemoryEphemeral()
        self._seen_written: dict[str, float] = {}  # device -> when this node last wrote it
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

    async def last_seen(self, device_ids: list[str]) -> dict[str, float]:
        """When each of these devices was last seen online, by any node (if ever watched)."""
        values = await self.shared.get_many([_seen_key(d) for d in device_ids], self.clock())
        return {d: float(v) for d, v in zip(device_ids, values, strict=True) if v is not None}

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except StoreUnavailable as exc:  # an outage: said once a round, no traceback
                log.warning("live_check_unavailable", error=str(exc))
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
            seen = [d for d in online if now - self._seen_written.get(d, 0.0) >= SEEN_EVERY_S]
            if seen:
                await self.shared.set_many(
                    [(_seen_key(d), repr(now)) for d in seen], SEEN_KEPT_S, now
                )
                self._seen_written.update(dict.fromkeys(seen, now))
            fingerprint = (versions, online)
            if fingerprint != tenant.fingerprint:
                first = tenant.fingerprint is None
                tenant.fingerprint = fingerprint
                if not first:
                    for queue in tenant.watchers:
                        with contextlib.suppress(asyncio.QueueFull):  # one pending is enough
                            queue.put_nowait("changed")


def _seen_key(device_id: str) -> str:
    return f"seen:{device_id}"
