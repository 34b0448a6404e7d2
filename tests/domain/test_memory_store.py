"""The in-memory store the domain tests run on keeps the SQLite store's rules.

Each check runs against :class:`relay.storage.sqlite_store.SqliteStore` and
:class:`tests.fakes.MemoryStore` alike, so a domain test cannot pass because the fake is
more lenient than the real store. The store contract suite (``tests/contract``) holds it
to the whole contract with the SQLite and PostgreSQL stores; these are the rules the
domain tests lean on most, checked here without a PostgreSQL server.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.domain.model import (
    AdminRecord,
    ConsolePairing,
    Credential,
    Device,
    Pairing,
    Policy,
    Tenant,
    User,
)
from relay.domain.store import RelayStore, StoreConflict
from relay.domain.verification import IssuedCode
from relay.storage.sqlite_store import SqliteStore
from tests.fakes import MemoryStore

NOW = 1_800_000_000.0
KEY = bytes(range(16))


def test_the_fake_has_every_method_of_the_store_interface_with_the_same_signature() -> None:
    members = {
        name
        for cls in RelayStore.__mro__
        if cls.__module__ == "relay.domain.store"
        for name, value in vars(cls).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    assert len(members) > 60
    for name in sorted(members):
        real = inspect.signature(getattr(RelayStore, name))
        fake = inspect.signature(getattr(MemoryStore, name))
        assert list(fake.parameters) == list(real.parameters), name
        assert [p.default for p in fake.parameters.values()] == [
            p.default for p in real.parameters.values()
        ], name
        assert inspect.iscoroutinefunction(getattr(MemoryStore, name)), name
        assert inspect.iscoroutinefunction(getattr(SqliteStore, name)), name


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RelayStore]:
    made: RelayStore = (
        SqliteStore(tmp_path / "r.sqlite3") if request.param == "sqlite" else MemoryStore()
    )
    await made.open()
    yield made
    await made.close()


def phone(device_id: str, tenant_id: str = "t1", **kw: object) -> Device:
    values: dict[str, object] = {
        "id": device_id,
        "tenant_id": tenant_id,
        "name": device_id,
        "kind": "desk_phone",
        "mode": "personal",
        "identity_key": KEY,
        "rotation_exponent": 10,
    }
    values.update(kw)
    return Device(**values)  # type: ignore[arg-type]


def credential(
    cred_id: str, subject_id: str, kind: str = "user", tenant_id: str = "t1"
) -> Credential:
    return Credential(cred_id, cred_id.encode() * 4, kind, subject_id, tenant_id, NOW)  # type: ignore[arg-type]


async def people(store: RelayStore) -> None:
    await store.add_tenant(Tenant("t1", "Contoso"))
    await store.add_tenant(Tenant("t2", "Fabrikam"))
    await store.add_policy(Policy("p1", "t1", "Standard"))
    await store.add_users(
        [User("alice", "t1", "Alice"), User("bob", "t1", "Bob"), User("carol", "t2", "C")]
    )
    await store.add_devices(
        [
            phone("ph-a", state="signed_in", user_id="alice", mac="00:11:22:33:44:55"),
            phone("ph-b", state="signed_in", user_id="bob"),
        ]
    )


async def test_references_and_duplicates_are_refused_and_change_nothing(store: RelayStore) -> None:
    await people(store)
    version = await store.directory_version()
    attempts = [
        store.add_tenant(Tenant("t1", "again")),
        store.add_user(User("dave", "t9", "D")),
        store.add_users([User("dave", "t1", "D"), User("alice", "t1", "A")]),
        store.add_policy(Policy("p2", "t1", "Standard")),
        store.add_devices([phone("ph-c", mac="00:11:22:33:44:55")]),
        store.add_device(phone("ph-d", user_id="nobody")),
        store.set_default_policy("t1", "p-none"),
        store.set_user_policy("nobody", None),
        store.sign_in_device("nobody", "alice", "signed_in"),
        store.add_credentials([credential("c1", "alice"), credential("c1", "bob")]),
        store.add_pairing(Pairing("alice", "l", "l", "ph-none", "t1", NOW)),
        store.set_desired_lock(["ph-none"], "locked", "alice", "l", NOW),
        store.add_admin(AdminRecord("a1", "A", "device_admin", None, NOW), b"h" * 32, "ac1"),
        store.add_admin(AdminRecord("a1", "A", "device_admin", "t9", NOW), b"h" * 32, "ac1"),
        store.rename_user("nobody", "x"),
        store.rename_policy("p-none", "x"),
        store.delete_user("alice", NOW),  # a device is signed in as alice
        store.delete_tenant("t1"),  # accounts and devices remain
    ]
    for attempt in attempts:
        with pytest.raises(StoreConflict) as refused:
            await attempt
        assert "constraint" not in str(refused.value) and str(refused.value)
    assert await store.directory_version() == version
    assert await store.user("dave") is None and await store.device("ph-c") is None
    assert (await store.user("alice")) == User("alice", "t1", "Alice")
    # The same MAC in another tenant is fine.
    await store.add_device(phone("ph-x", tenant_id="t2", mac="00:11:22:33:44:55"))
    assert [d.id for d in await store.devices_by_mac("00:11:22:33:44:55")] == ["ph-a", "ph-x"]


async def test_every_directory_row_changed_is_in_the_change_log(store: RelayStore) -> None:
    await people(store)
    version = await store.directory_version()
    await store.add_credentials([credential("c1", "alice"), credential("c2", "bob")])
    await store.set_user_policy("alice", "p1")
    assert await store.revoke_credential("c1", NOW) and not await store.revoke_credential("c1", NOW)
    changes = await store.changes_since(version)
    assert changes is not None
    assert [(c.kind, c.id) for c in changes] == [
        ("credentials", "c1"),
        ("credentials", "c2"),
        ("users", "alice"),
        ("credentials", "c1"),
    ]
    assert [c.version for c in changes] == list(range(version + 1, version + 5))
    assert await store.directory_version() == version + 4
    assert await store.changes_since(await store.directory_version()) == []


async def test_a_phone_changing_account_ends_its_other_pairings_and_pending_locks(
    store: RelayStore,
) -> None:
    await people(store)
    await store.add_pairings(
        [
            Pairing("alice", "l1", "L", "ph-a", "t1", NOW),
            Pairing("bob", "l2", "L", "ph-a", "t1", NOW),
        ]
    )
    before = await store.pairings_version()
    (record,) = await store.set_desired_lock(["ph-a"], "locked", "alice", "l1", NOW)
    assert (record.seq, record.acked_seq) == (1, 0)
    await store.sign_in_device("ph-a", "bob", "signed_in")
    assert [p.user_id for p in await store.pairings_of_phone("ph-a")] == ["bob"]
    assert await store.pairings_version() != before
    record = await store.lock_record("ph-a")  # type: ignore[assignment]
    assert record is not None and (record.seq, record.acked_seq, record.pending) == (1, 1, False)
    (again,) = await store.set_desired_lock(["ph-a"], "unlocked", "bob", "l2", NOW + 1)
    assert (again.seq, again.acked_seq, again.user_id) == (2, 1, "bob")
    acked = await store.ack_lock("ph-a", 2)
    assert acked is not None and acked.news and acked.record.acked_seq == 2
    assert await store.ack_lock("ph-a", 3) is None
    stale = await store.ack_lock("ph-a", 1)
    assert stale is not None and not stale.news and stale.record.acked_seq == 2


async def test_reset_and_removal(store: RelayStore) -> None:
    await people(store)
    await store.add_credentials([credential("cd", "ph-a", "device")])
    await store.add_pairing(Pairing("alice", "l1", "L", "ph-a", "t1", NOW))
    await store.reset_device("ph-a", NOW)
    device = await store.device("ph-a")
    assert device is not None and (device.state, device.user_id) == ("waiting_for_activation", None)
    assert (await store.credential("cd")).revoked_at == NOW  # type: ignore[union-attr]
    assert await store.pairings_of_phone("ph-a") == []
    await store.add_device(Device("room", "t1", "R", "room_system", "meeting_room", KEY, 8))
    await store.pair_console(ConsolePairing("ph-b", "room", "t1", NOW))
    await store.remove_device("room", NOW)
    assert await store.device("room") is None and await store.console_pairing("ph-b") is None


async def test_a_verification_code_is_used_once(store: RelayStore) -> None:
    await people(store)
    await store.add_device(phone("new", state="waiting_for_activation", mac="02:00:00:00:00:01"))
    await store.set_verification_code("new", IssuedCode("hash", NOW, NOW + 60))
    await store.provision_device("new", "hash", KEY, credential("cn", "new", "device"), NOW)
    device = await store.device("new")
    assert device is not None and device.state == "waiting_for_sign_in"
    with pytest.raises(StoreConflict):
        await store.provision_device("new", "hash", KEY, credential("cm", "new", "device"), NOW)
    await store.add_device(phone("late", state="waiting_for_activation"))
    await store.set_verification_code("late", IssuedCode("h2", NOW, NOW + 60))
    for code_hash, at in (("wrong", NOW), ("h2", NOW + 60)):
        with pytest.raises(StoreConflict):
            await store.provision_device(
                "late", code_hash, KEY, credential("cl", "late", "device"), at
            )
    assert await store.credential("cl") is None


async def test_lists_page_in_id_order(store: RelayStore) -> None:
    await people(store)
    await store.add_users([User(f"u{n}", "t1", f"U{n}") for n in range(5)])
    users = await store.users("t1", after="bob", limit=3)
    assert [u.id for u in users] == ["u0", "u1", "u2"]
    devices = await store.devices("t1", limit=1)
    assert [d.id for d in devices] == ["ph-a"]
    assert [d.id for d in await store.devices(state="signed_in", after="ph-a")] == ["ph-b"]
    await store.add_pairings([Pairing("alice", f"l{n}", "L", "ph-a", "t1", NOW) for n in range(3)])
    page = await store.tenant_pairings("t1", after="alice/l0/ph-a", limit=5)
    assert [p.laptop_id for p in page] == ["l1", "l2"]
    for n in range(5):
        await store.add_audit(NOW + n, "x", "t1" if n % 2 else "t2", f"a{n}", "-", "ok", {"n": n})
    assert [e.action for e in await store.audit("t1", 10)] == ["a1", "a3"]
    tail = await store.audit(None, 2)
    assert [e.action for e in tail] == ["a3", "a4"]
    assert [e.action for e in await store.audit(None, 2, before=tail[0].seq)] == ["a1", "a2"]


async def test_deleting_an_account_and_a_policy(store: RelayStore) -> None:
    await people(store)
    await store.add_credentials([credential("cb", "bob")])
    await store.set_user_policy("bob", "p1")
    await store.set_default_policy("t1", "p1")
    await store.delete_policy("p1")
    assert (await store.user("bob")).policy_id is None  # type: ignore[union-attr]
    assert (await store.tenant("t1")).default_policy_id is None  # type: ignore[union-attr]
    await store.sign_in_device("ph-b", None, "waiting_for_sign_in")
    await store.delete_user("bob", NOW)
    assert await store.user("bob") is None
    assert (await store.credential("cb")).revoked_at == NOW  # type: ignore[union-attr]
    assert await store.devices_signed_in_as("alice") == ["ph-a"]


async def test_administrators_and_their_credentials(store: RelayStore) -> None:
    await people(store)
    owner = AdminRecord("a0", "O", "owner", None, NOW)
    helper = AdminRecord("a1", "H", "device_admin", "t1", NOW + 1)
    await store.add_admin(owner, b"o" * 32, "ac0")
    await store.add_admin(helper, b"h" * 32, "ac1")
    await store.add_admin_credential("a1", b"i" * 32, "ac2", NOW + 2)
    assert await store.admin_by_token_hash(b"h" * 32) == helper
    assert await store.admin_by_credential("ac2") == helper
    assert await store.revoke_admin_credential(
        "ac1", NOW
    ) and not await store.revoke_admin_credential("ac1", NOW)
    assert await store.admin_by_token_hash(b"h" * 32) is None
    revoked = await store.admin_credential_by_hash(b"h" * 32)
    assert revoked is not None and revoked.revoked_at == NOW
    assert [a.id for a in await store.admins(None)] == ["a0", "a1"]
    assert [a.id for a in await store.admins("t1")] == ["a1"]
    assert await store.owner_count() == 1
    assert [c.id for c in await store.admin_credentials("a1")] == ["ac1", "ac2"]
