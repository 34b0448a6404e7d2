"""The relay on PostgreSQL: the same story as on SQLite, and what a database outage looks like.

A real ``postgres`` (tests/conftest.py) under a real relay on loopback. While the database
is stopped, ``/readyz`` answers 503, requests are refused with ``unavailable`` and new
connections with 503; once it is back the same relay process serves again, its open
connections untouched, and nothing refused during the outage was half-written.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from websockets.exceptions import InvalidStatus

from btogether.local_postgres import LocalPostgres
from relay.admin.store_admin import Admin
from relay.domain.ephemeral import MemoryEphemeral
from relay.domain.model import Credential
from relay.domain.routing import LocalRouter
from relay.domain.store import StoreUnavailable
from relay.domain.verification import IssuedCode
from relay.net.server import RelayServer
from relay.node import build_node
from relay.protocol import wire
from relay.protocol.link import RelayLink
from relay.storage.postgres_store import PostgresStore
from tests.btogether_cli import run_btogether as btogether
from tests.relay.conftest import RelayHarness, World, build_world, relay_settings
from tests.relay.helpers import paired_alice, refusal
from tests.relay_harness import ManualClock

_schemas = iter(range(1, 10_000))


def fresh_database(server: LocalPostgres) -> str:
    """A URL whose tables land in a new, empty schema of the test server."""
    schema = f"relay_{next(_schemas)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{server.url()}?options=-csearch_path%3D{schema}"


@pytest.fixture
async def pg_relay(postgres_server: LocalPostgres) -> AsyncIterator[RelayHarness]:
    url = fresh_database(postgres_server)
    clock = ManualClock(time.time())
    store = PostgresStore(url)
    server = RelayServer(relay_settings(url), store, clock=clock)  # type: ignore[arg-type]
    await server.start()
    harness = RelayHarness(server, store, Admin(store, clock=clock), clock, Path(url),  # type: ignore[arg-type]
                           server.settings)
    try:
        yield harness
    finally:
        if not postgres_server.running():  # an outage test failed half-way
            postgres_server.start()
        await server.stop()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def readyz(relay: RelayHarness) -> int:
    return await asyncio.to_thread(_get, relay.http + "/readyz")


async def test_the_relay_pairs_and_syncs_locks_on_postgresql(pg_relay: RelayHarness) -> None:
    world = await build_world(pg_relay.admin)
    assert world.alice.phone is not None
    laptop, phone = await paired_alice(pg_relay, world)
    result = await laptop.lock_set("locked")
    assert result.phones == [wire.PhoneLockSeq(phone_id=world.alice.phone.id, seq=1)]
    assert await phone.next_event("lock.command") == wire.LockCommand(
        seq=1, state="locked", laptop_id="laptop-1")
    await phone.lock_ack(1)
    await laptop.next_event("lock.applied")
    record = await pg_relay.store.lock_record(world.alice.phone.id)
    assert record is not None and (record.seq, record.acked_seq) == (1, 1)
    assert await readyz(pg_relay) == 200
    await laptop.close()
    await phone.close()


async def test_a_database_outage_is_unavailable_then_served_again_without_a_restart(
    pg_relay: RelayHarness, postgres_server: LocalPostgres
) -> None:
    world: World = await build_world(pg_relay.admin)
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone_id = world.alice.phone.id
    laptop, phone = await paired_alice(pg_relay, world)
    await laptop.lock_set("locked")
    await phone.next_event("lock.command")

    postgres_server.stop()
    assert await readyz(pg_relay) == 503
    assert await refusal(laptop.lock_set("unlocked")) == wire.ErrorCode.UNAVAILABLE
    with pytest.raises(InvalidStatus) as refused:  # a new connection is told, not dropped
        await RelayLink.connect(pg_relay.url, world.bob.credential.token, laptop_id="l-2")
    assert refused.value.response.status_code == 503
    # Open connections stay open: each request is answered, none is carried out unjudged.
    assert await refusal(laptop.ping()) == wire.ErrorCode.UNAVAILABLE

    postgres_server.start()
    back_at = time.monotonic()
    while await readyz(pg_relay) != 200:
        assert time.monotonic() - back_at < 10, "the relay did not see the database come back"
        await asyncio.sleep(0.1)
    result = await laptop.lock_set("unlocked")
    # The refused change was not written: the sequence continues from the last acknowledged one.
    assert result.phones == [wire.PhoneLockSeq(phone_id=phone_id, seq=2)]
    assert await phone.next_event("lock.command") == wire.LockCommand(
        seq=2, state="unlocked", laptop_id="laptop-1")
    bob = await pg_relay.laptop(world.bob, laptop_id="l-2")
    assert (await bob.ping()).server_time > 0
    for link in (laptop, phone, bob):
        await link.close()


async def test_a_transaction_cut_off_mid_way_changes_nothing(
    postgres_server: LocalPostgres,
) -> None:
    """Provisioning is four writes; the connection is killed while the third waits for a
    row lock. The store says unavailable, and the code, the device and its credentials are
    as they were."""
    url = fresh_database(postgres_server)
    store = PostgresStore(url)
    await store.open()
    admin = Admin(store)
    try:
        tenant = await admin.create_tenant("Contoso")
        device = await admin.create_device(tenant.id, "Phone", "desk_phone", "personal")
        await store.reset_device(device.id, 0.0)
        now = time.time()
        await store.set_verification_code(device.id, IssuedCode("code", now, now + 60))
        new_credential = Credential("c-new", b"new-token", "device", device.id, tenant.id, now)

        with psycopg.connect(url, autocommit=True) as blocker:
            blocker.execute("BEGIN")
            blocker.execute("SELECT 1 FROM devices WHERE id = %s FOR UPDATE", (device.id,))
            provisioning = asyncio.create_task(
                store.provision_device(device.id, "code", bytes(16), new_credential, now + 1)
            )
            victim = None
            for _ in range(200):
                row = blocker.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'btogether-relay'"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                if row is not None:
                    victim = row[0]
                    break
                await asyncio.sleep(0.02)
            assert victim is not None, "the provisioning transaction never waited for the lock"
            blocker.execute("SELECT pg_terminate_backend(%s)", (victim,))
            with pytest.raises(StoreUnavailable):
                await provisioning
            blocker.execute("ROLLBACK")

        code = await store.verification_code(device.id)
        assert code is not None and code.used_at is None
        assert await store.credential("c-new") is None
        after = await store.device(device.id)
        assert after is not None and after.state == "waiting_for_activation"
        assert after.identity_key == device.identity_key
        # And the store works again at once (the pool replaced the dead connection).
        await store.provision_device(device.id, "code", bytes(16), new_credential, now + 2)
        assert (await store.device(device.id)).state == "waiting_for_sign_in"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_bootstrap_and_the_admin_commands_work_on_postgresql(
    postgres_server: LocalPostgres, tmp_path: Path
) -> None:
    url = fresh_database(postgres_server)
    token_file, password_file = tmp_path / "owner-token", tmp_path / "password"
    password_file.write_text("correct horse battery staple\n")
    rc, out, err = await btogether(
        "admin", "bootstrap", "--db", url, "--owner", "Olivia", "--tenant", "Contoso",
        "--token-file", str(token_file), "--password-file", str(password_file), "--json",
    )
    assert rc == 0, err
    made = json.loads(out)
    assert made["admin_center_login"] == "olivia"
    rc, _, err = await btogether("admin", "bootstrap", "--db", url, "--owner", "Eve")
    assert rc == 1 and "already has an owner" in err

    store = PostgresStore(url)
    server = RelayServer(relay_settings(url), store)  # type: ignore[arg-type]
    await server.start()
    try:
        common = ["--relay", f"ws://127.0.0.1:{server.port}/", "--token-file", str(token_file)]
        rc, out, err = await btogether("admin", "whoami", "--json", *common)
        assert rc == 0 and json.loads(out)["name"] == "Olivia", err
        csv = tmp_path / "devices.csv"
        csv.write_text("MAC address,Location\n00:1B:44:11:3A:B7,Floor 2\n")
        rc, out, err = await btogether(
            "admin", "devices", "import", str(csv), "--kind", "desk_phone", *common
        )
        assert rc == 0 and "imported 1 device(s)" in out, err
        rc, out, err = await btogether("admin", "devices", "list", "--json", *common)
        (device,) = json.loads(out)["devices"]
        assert device["mac"] == "00:1B:44:11:3A:B7"
        rc, out, err = await btogether("admin", "codes", "create", device["id"], *common)
        assert rc == 0 and "code:" in out, err
        login = await store.one("SELECT login FROM web_logins")
        assert login is not None and login["login"] == "olivia"
    finally:
        await server.stop()


async def test_a_second_node_needs_redis_and_a_node_without_it_excludes_a_cluster(
    pg_relay: RelayHarness, postgres_server: LocalPostgres
) -> None:
    url = pg_relay.settings.db
    for redis in (None, "redis://127.0.0.1:1/0"):
        settings = relay_settings(url, redis=redis)  # type: ignore[arg-type]
        node = build_node(settings, store=PostgresStore(url), router=LocalRouter(),
                          ephemeral=MemoryEphemeral(), guesses=MemoryEphemeral())
        with pytest.raises(StoreUnavailable) as refused:
            await node.open()
        await node.store.close()
        assert "--redis" in str(refused.value) and "\n" not in str(refused.value)
        assert ("another relay node" if redis is None else "without Redis") in str(refused.value)
    # The first node is unaffected, and after it stops a cluster node may start.
    assert await readyz(pg_relay) == 200
    await pg_relay.server.stop()
    cluster_node = build_node(relay_settings(url, redis="redis://127.0.0.1:1/0"),  # type: ignore[arg-type]
                              store=PostgresStore(url), router=LocalRouter(),
                              ephemeral=MemoryEphemeral(), guesses=MemoryEphemeral())
    await cluster_node.store.open()
    await cluster_node.store.claim_node(alone=False)  # type: ignore[attr-defined]
    assert await cluster_node.store.ready()
    await cluster_node.store.close()


async def test_a_relay_cannot_start_on_an_unreachable_database(tmp_path: Path) -> None:
    store = PostgresStore("postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    message = str(caught.value)
    assert "postgresql://nobody@127.0.0.1:1/none" in message and "secret" not in message
    assert "\n" not in message
    assert await store.ready() is False
