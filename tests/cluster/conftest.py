"""One relay cluster per test module: Redis, the database, three ``btogether relay serve``
nodes and HAProxy in front, all real processes on loopback (:mod:`btogether.cluster`).

The database is PostgreSQL when the PostgreSQL store is installed, else one SQLite file
every node opens (WAL lets several processes share it). The world (tenants, people,
phones, a room, an owner) is written before the nodes start; the tests connect to a
chosen node (``cluster.node("relay-2").url``) or through HAProxy (``cluster.url``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from btogether.cluster import LocalCluster
from relay.admin.service import bootstrap_owner
from relay.admin.store_admin import Admin, IssuedCredential
from relay.domain.model import Device, Tenant, User
from relay.node import store_for
from relay.protocol.eid import eid_at
from relay.protocol.link import RelayLink


@dataclass
class Person:
    user: User
    credential: IssuedCredential
    phone: Device
    phone_credential: IssuedCredential


@dataclass
class ClusterWorld:
    cluster: LocalCluster
    owner_token: str
    contoso: Tenant
    fabrikam: Tenant
    alice: Person
    bob: Person
    carol: Person
    room: Device
    room_credential: IssuedCredential

    def node_url(self, n: int) -> str:
        return self.cluster.relays[n - 1].url + "/"

    async def laptop(self, person: Person, node: int | None, laptop_id: str = "laptop-1",
                     **kw: Any) -> RelayLink:
        url = self.node_url(node) if node else self.cluster.url + "/"
        return await RelayLink.connect(url, person.credential.token, laptop_id=laptop_id,
                                       reply_timeout=8.0, **kw)

    async def device(self, credential: IssuedCredential, node: int | None,
                     **kw: Any) -> RelayLink:
        url = self.node_url(node) if node else self.cluster.url + "/"
        link = await RelayLink.connect(url, credential.token, reply_timeout=8.0, **kw)
        if "on_event" not in kw:
            await link.next_event("device.state", within=8.0)
        return link


def eid_now(device: Device) -> bytes:
    return eid_at(device.identity_key, time.time(), device.rotation_exponent)


async def _build(db_url: str) -> dict[str, Any]:
    store = store_for(db_url)
    await store.open()
    try:
        admin = Admin(store)
        _, owner_token = await bootstrap_owner(store, "Olivia Owner", time.time())  # type: ignore[arg-type]
        contoso = await admin.create_tenant("Contoso")
        fabrikam = await admin.create_tenant("Fabrikam")

        async def person(tenant: Tenant, name: str) -> Person:
            user = await admin.create_user(tenant.id, name)
            credential = await admin.issue_credential("user", user.id)
            phone = await admin.create_device(
                tenant.id, f"{name}'s phone", "desk_phone", "personal", location="desk"
            )
            phone = await admin.sign_in_device(phone.id, user.id)
            return Person(user, credential, phone,
                          await admin.issue_credential("device", phone.id))

        room = await admin.create_device(
            contoso.id, "Room 4.01", "room_system", "meeting_room", location="floor 4"
        )
        return {
            "owner_token": owner_token, "contoso": contoso, "fabrikam": fabrikam,
            "alice": await person(contoso, "alice"), "bob": await person(contoso, "bob"),
            "carol": await person(fabrikam, "carol"), "room": room,
            "room_credential": await admin.issue_credential("device", room.id),
        }
    finally:
        await store.close()


@pytest.fixture(scope="module")
def cluster_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterWorld]:
    for binary, package in (("redis-server", "redis-server"), ("haproxy", "haproxy")):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            pytest.skip(f"{binary} is not installed (./dev.sh test installs {package})")
    workdir = Path(tmp_path_factory.mktemp("cluster"))
    cluster = LocalCluster(workdir, nodes=3)
    try:
        cluster.start_redis()
        db_url = cluster.start_database()
        parts = asyncio.run(_build(db_url))
        cluster.start_nodes()
        cluster.start_haproxy()
        yield ClusterWorld(cluster, **parts)
    finally:
        cluster.close()
