"""The store contract (relay.domain.store): every backend keeps the same rules, tested the same way.

Each test runs once per backend (tests/contract/conftest.py). What is checked is what a
relay relies on: records read back as written, refusals as StoreConflict with a message
for a person, versions and the directory change log moved by every writer, paging in
byte order, what ends when a phone changes account or is reset or removed, and writes
raced by two stores on one database (two relay nodes) decided once.
"""

from __future__ import annotations

import asyncio
import sys
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
from tests.contract.conftest import STORE_ONLY_BACKENDS, OpenStore, StoreBackend


@pytest.fixture(params=list(STORE_ONLY_BACKENDS))
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreBackend]:
    """Every store backend, the domain tests' in-memory store included."""
    async with STORE_ONLY_BACKENDS[request.param](request, tmp_path) as made:
        yield made


NOW = 1_800_000_000.0
KEY = bytes(range(16))


def phone(device_id: str, tenant_id: str = "t1", **kw: object) -> Device:
    values: dict[str, object] = {
        "id": device_id,
        "tenant_id": tenant_id,
        "name": f"{device_id} phone",
        "kind": "desk_phone",
        "mode": "personal",
        "identity_key": KEY,
        "rotation_exponent": 10,
    }
    values.update(kw)
    return Device(**values)  # type: ignore[arg-type]


def credential(cred_id: str, subject_id: str, kind: str = "user", tenant_id: str = "t1",
               at: float = NOW) -> Credential:
    return Credential(cred_id, f"hash-{cred_id}".encode(), kind, subject_id, tenant_id, at)  # type: ignore[arg-type]


async def tenant_with_people(store: RelayStore) -> None:
    """Tenant t1 (policy p1 default), users alice and bob, alice's phone signed in, a room;
    tenant t2 with carol."""
    await store.add_tenant(Tenant("t1", "Contoso"))
    await store.add_policy(Policy("p1", "t1", "Standard"))
    await store.set_default_policy("t1", "p1")
    await store.add_tenant(Tenant("t2", "Fabrikam"))
    await store.add_users([User("alice", "t1", "Alice"), User("bob", "t1", "Bob")])
    await store.add_user(User("carol", "t2", "Carol"))
    await store.add_devices(
        [
            phone("ph-alice", state="signed_in", user_id="alice", mac="00:11:22:33:44:55"),
            phone("ph-bob", state="signed_in", user_id="bob"),
            Device("room", "t1", "Room 1", "room_system", "meeting_room", KEY, 8,
                   location="2nd floor", capabilities=("join", "audio")),
        ]
    )


def assert_for_a_person(exc: StoreConflict) -> None:
    text = str(exc)
    assert text
    for database_words in ("constraint", "violates", "UNIQUE", "duplicate key", "DETAIL",
                           "sqlite", "psycopg", "NUL (0x00)"):
        assert database_words not in text, text


# --- directory --------------------------------------------------------------------------


async def test_directory_records_read_back_as_written(store: RelayStore) -> None:
    await tenant_with_people(store)
    assert await store.tenant("t1") == Tenant("t1", "Contoso", "p1")
    assert [t.id for t in await store.tenants()] == ["t1", "t2"]
    assert await store.policy("p1") == Policy("p1", "t1", "Standard", "Enabled", "auto", True)
    assert await store.user("carol") == User("carol", "t2", "Carol")
    room = await store.device("room")
    assert room == Device("room", "t1", "Room 1", "room_system", "meeting_room", KEY, 8,
                          location="2nd floor", state="waiting_for_sign_in",
                          capabilities=("join", "audio"))
    alice_phone = await store.device("ph-alice")
    assert alice_phone is not None
    assert (alice_phone.mac, alice_phone.user_id, alice_phone.state) == (
        "00:11:22:33:44:55", "alice", "signed_in")
    assert alice_phone.identity_key == KEY and isinstance(alice_phone.identity_key, bytes)


async def test_unknown_ids_read_as_nothing_even_when_the_database_could_not_hold_them(
    store: RelayStore,
) -> None:
    await tenant_with_people(store)
    for odd in ("nobody", "", "a\x00b", "é" * 300):
        assert await store.tenant(odd) is None
        assert await store.user(odd) is None
        assert await store.device(odd) is None
        assert await store.policy(odd) is None
        assert await store.credential(odd) is None
        assert await store.lock_record(odd) is None
        assert await store.pairings_of_phone(odd) == []
        assert await store.devices_by_mac(odd) == []
    assert await store.credential_by_hash(b"\x00unknown") is None


async def test_refused_writes_say_why_for_a_person_and_change_nothing(store: RelayStore) -> None:
    await tenant_with_people(store)
    version = await store.directory_version()
    cases = [
        (store.add_tenant(Tenant("t1", "Again")), "already exists"),
        (store.add_policy(Policy("p2", "t1", "Standard")), "a policy with this name already exists"),
        (store.add_device(phone("ph-x", mac="00:11:22:33:44:55")), "MAC address"),
        (store.add_user(User("dave", "no-such-tenant", "Dave")), "does not exist"),
        (store.add_device(phone("ph-y", rotation_exponent=99)), "out of range"),
        (store.add_device(phone("ph-z", identity_key=b"short")), "out of range"),
    ]
    for write, words in cases:
        with pytest.raises(StoreConflict) as caught:
            await write
        assert words in str(caught.value)
        assert_for_a_person(caught.value)
    # A batch with one bad row is refused whole.
    with pytest.raises(StoreConflict):
        await store.add_users([User("dave", "t1", "Dave"), User("alice", "t1", "Alice again")])
    assert await store.user("dave") is None
    assert await store.directory_version() == version
    # The same MAC address in another tenant is allowed.
    await store.add_device(phone("ph-t2", tenant_id="t2", mac="00:11:22:33:44:55"))
    assert [d.id for d in await store.devices_by_mac("00:11:22:33:44:55")] == ["ph-alice", "ph-t2"]


async def test_policies_are_set_and_unknown_subjects_are_refused(store: RelayStore) -> None:
    await tenant_with_people(store)
    await store.add_policy(Policy("p2", "t1", "Strict", "Disabled", "prompt", False))
    await store.set_user_policy("alice", "p2")
    await store.set_device_policy("room", "p2")
    await store.set_default_policy("t1", None)
    assert (await store.user("alice")).policy_id == "p2"  # type: ignore[union-attr]
    assert (await store.device("room")).policy_id == "p2"  # type: ignore[union-attr]
    assert (await store.tenant("t1")).default_policy_id is None  # type: ignore[union-attr]
    for write, what in (
        (store.set_user_policy("nobody", "p2"), "no such user"),
        (store.set_device_policy("nothing", "p2"), "no such device"),
        (store.set_default_policy("nowhere", "p2"), "no such tenant"),
    ):
        with pytest.raises(StoreConflict, match=what):
            await write
    with pytest.raises(StoreConflict, match="does not exist"):
        await store.set_user_policy("alice", "no-such-policy")
    await store.update_policy(Policy("p2", "t1", "Strict", "Enabled", "off", True), auto_confirm=True)
    assert await store.policy("p2") == Policy("p2", "t1", "Strict", "Enabled", "off", True)
    assert await store.policy_auto_confirm("p2") is True
    assert await store.policy_auto_confirm("p1") is False
    assert await store.policy_ids("t1") == ["p1", "p2"]  # by name: Standard, Strict


async def test_every_directory_write_moves_the_version_and_is_in_the_change_log(
    store: RelayStore,
) -> None:
    start = await store.directory_version()
    assert await store.changes_since(start) == []

    async def changed(write: object) -> set[tuple[str, str]]:
        before = await store.directory_version()
        await write  # type: ignore[misc]
        after = await store.directory_version()
        assert after > before
        changes = await store.changes_since(before)
        assert changes is not None
        assert [c.version for c in changes] == sorted(c.version for c in changes)
        assert max(c.version for c in changes) == after
        return {(c.kind, c.id) for c in changes}

    assert await changed(store.add_tenant(Tenant("t1", "Contoso"))) == {("tenants", "t1")}
    assert await changed(store.add_policy(Policy("p1", "t1", "Standard"))) == {("policies", "p1")}
    assert await changed(store.set_default_policy("t1", "p1")) == {("tenants", "t1")}
    assert await changed(store.add_users([User("a", "t1", "A"), User("b", "t1", "B")])) == {
        ("users", "a"), ("users", "b")}
    assert await changed(store.add_device(phone("d1"))) == {("devices", "d1")}
    assert ("devices", "d1") in await changed(store.sign_in_device("d1", "a", "signed_in"))
    assert await changed(store.add_credentials([credential("c1", "a")])) == {("credentials", "c1")}
    assert await changed(store.revoke_credential("c1", NOW)) == {("credentials", "c1")}
    assert await changed(store.rename_user("b", "Bee")) == {("users", "b")}
    assert await changed(store.delete_user("b", NOW)) == {("users", "b")}
    # Reads and refused writes leave the version alone.
    version = await store.directory_version()
    await store.tenants()
    assert await store.revoke_credential("c1", NOW) is False
    with pytest.raises(StoreConflict):
        await store.rename_tenant("nowhere", "x")
    assert await store.directory_version() == version
    everything = await store.changes_since(start)
    assert everything is not None and len(everything) >= 11


async def test_a_change_log_pruned_past_a_version_says_it_no_longer_knows(
    store: RelayStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sys.modules[type(store).__module__]
    if not hasattr(module, "CHANGE_LOG_KEPT"):
        pytest.skip("this backend keeps no change log to prune")
    monkeypatch.setattr(module, "CHANGE_LOG_KEPT", 2)
    await store.add_tenant(Tenant("t1", "Contoso"))
    await store.add_users([User(f"u{i}", "t1", f"U{i}") for i in range(5)])
    version = await store.directory_version()
    await store.prune(NOW)
    assert await store.changes_since(0) is None
    recent = await store.changes_since(version - 1)
    assert recent is not None and [c.version for c in recent] == [version]


async def test_credentials_are_found_by_id_hash_and_subject_and_revoked_once(
    store: RelayStore,
) -> None:
    await tenant_with_people(store)
    await store.add_credentials(
        [
            credential("c2", "alice", at=NOW + 2),
            credential("c1", "alice", at=NOW + 1),
            credential("c3", "ph-bob", kind="device", at=NOW + 3),
        ]
    )
    assert await store.credential("c1") == credential("c1", "alice", at=NOW + 1)
    assert await store.credential_by_hash(b"hash-c3") == credential("c3", "ph-bob", "device",
                                                                    at=NOW + 3)
    assert [c.id for c in await store.credentials_of("t1", "alice")] == ["c1", "c2"]
    assert [c.id for c in await store.credentials_of("t1", None)] == ["c1", "c2", "c3"]
    assert await store.credentials_of("t2", None) == []
    assert await store.revoke_credential("c1", NOW + 10) is True
    assert await store.revoke_credential("c1", NOW + 20) is False
    assert (await store.credential("c1")).revoked_at == NOW + 10  # type: ignore[union-attr]
    assert [c.id for c in await store.credentials_of("t1", "alice")] == ["c1", "c2"]
    with pytest.raises(StoreConflict, match="this credential already exists"):
        await store.add_credentials([Credential("c9", b"hash-c2", "user", "alice", "t1", NOW)])


# --- paging -----------------------------------------------------------------------------


async def test_pages_come_in_byte_order_and_continue_after_the_last_id(store: RelayStore) -> None:
    await store.add_tenant(Tenant("t1", "Contoso"))
    await store.add_tenant(Tenant("t2", "Fabrikam"))
    # Byte order: upper case before lower case, '_' between them; no locale folding.
    ids = ["a", "B", "_x", "b", "A", "a-1", "Z", "é"]
    await store.add_users([User(i, "t1", i) for i in ids])
    await store.add_user(User("other", "t2", "Other"))
    expected = sorted(ids)
    assert [u.id for u in await store.users("t1")] == expected
    pages, after = [], None
    while page := await store.users("t1", after=after, limit=3):
        pages.append([u.id for u in page])
        after = page[-1].id
    assert pages == [expected[0:3], expected[3:6], expected[6:]]

    await store.add_devices(
        [phone(f"d{i:02d}", state="signed_in" if i % 2 else "waiting_for_sign_in") for i in range(7)]
        + [phone("D-upper"), phone("t2-d", tenant_id="t2")]
    )
    assert [d.id for d in await store.devices("t1")] == ["D-upper"] + [f"d{i:02d}" for i in range(7)]
    assert [d.id for d in await store.devices()][-1] == "t2-d"
    assert [d.id for d in await store.devices("t1", after="d02", limit=2)] == ["d03", "d04"]
    assert [d.id for d in await store.devices(state="signed_in")] == ["d01", "d03", "d05"]
    assert [d.id for d in await store.devices("t1", after="d01", limit=1, state="signed_in")] == [
        "d03"]
    assert await store.devices("t2", after="t2-d") == []


async def test_tenant_pairings_page_by_user_laptop_and_phone(store: RelayStore) -> None:
    await tenant_with_people(store)
    await store.add_device(phone("ph-alice-2", state="signed_in", user_id="alice"))
    made = [
        Pairing(user, laptop, f"{laptop} name", ph, "t1", NOW)
        for user, ph in (("alice", "ph-alice"), ("alice", "ph-alice-2"), ("bob", "ph-bob"))
        for laptop in ("L2", "L1")
    ]
    await store.add_pairings(made)
    keys = [(p.user_id, p.laptop_id, p.phone_id) for p in await store.tenant_pairings("t1")]
    assert keys == sorted(keys) and len(keys) == 6
    seen, after = [], None
    while page := await store.tenant_pairings("t1", after=after, limit=4):
        seen += [(p.user_id, p.laptop_id, p.phone_id) for p in page]
        last = page[-1]
        after = f"{last.user_id}/{last.laptop_id}/{last.phone_id}"
    assert seen == keys
    assert await store.tenant_pairings("t2") == []


# --- pairings and lock state ------------------------------------------------------------


async def test_pairings_are_added_replaced_listed_and_removed_with_their_version(
    store: RelayStore,
) -> None:
    await tenant_with_people(store)
    v0 = await store.pairings_version()
    await store.add_pairing(Pairing("alice", "L1", "Work laptop", "ph-alice", "t1", NOW))
    v1 = await store.pairings_version()
    assert v1 != v0
    await store.add_pairing(Pairing("alice", "L1", "Renamed laptop", "ph-alice", "t1", NOW + 1))
    await store.add_pairing(Pairing("alice", "L0", "Old laptop", "ph-alice", "t1", NOW))
    assert await store.pairings_of_laptop("alice", "L1") == [
        Pairing("alice", "L1", "Renamed laptop", "ph-alice", "t1", NOW + 1)]
    assert [p.laptop_id for p in await store.pairings_of_phone("ph-alice")] == ["L0", "L1"]
    v2 = await store.pairings_version()
    assert await store.remove_pairing("alice", "L0", "ph-alice") is True
    assert await store.pairings_version() != v2
    assert await store.remove_pairing("alice", "L0", "ph-alice") is False
    assert [p.laptop_id for p in await store.pairings_of_phone("ph-alice")] == ["L1"]
    with pytest.raises(StoreConflict, match="does not exist"):
        await store.add_pairing(Pairing("alice", "L1", "x", "no-such-phone", "t1", NOW))


async def test_lock_seq_grows_by_one_per_change_and_acks_never_go_back(store: RelayStore) -> None:
    await tenant_with_people(store)
    (first,) = await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    assert (first.seq, first.state, first.acked_seq, first.pending) == (1, "locked", 0, True)
    both = await store.set_desired_lock(["ph-alice", "ph-bob"], "unlocked", "alice", "L1", NOW + 1)
    assert [(r.phone_id, r.seq, r.state) for r in both] == [
        ("ph-alice", 2, "unlocked"), ("ph-bob", 1, "unlocked")]
    assert await store.set_desired_lock([], "locked", "alice", "L1", NOW) == []

    assert await store.ack_lock("ph-alice", 3) is None  # never sent
    assert await store.ack_lock("room", 1) is None  # no lock state at all
    superseded = await store.ack_lock("ph-alice", 1)  # applied, but a newer one is pending
    assert superseded is not None and superseded.news
    assert (superseded.record.seq, superseded.record.acked_seq, superseded.record.pending) == (
        2, 1, True)
    acked = await store.ack_lock("ph-alice", 2)
    assert acked is not None and acked.news
    assert (acked.record.seq, acked.record.acked_seq, acked.record.pending) == (2, 2, False)
    assert (acked.record.state, acked.record.user_id, acked.record.laptop_id) == (
        "unlocked", "alice", "L1")
    again = await store.ack_lock("ph-alice", 2)  # the same ack repeated
    assert again is not None and not again.news and again.record == acked.record
    stale = await store.ack_lock("ph-alice", 1)  # a late ack of an older command
    assert stale is not None and not stale.news and stale.record.acked_seq == 2
    record = await store.lock_record("ph-alice")
    assert record is not None and (record.seq, record.acked_seq, record.updated_at) == (2, 2, NOW + 1)
    (third,) = await store.set_desired_lock(["ph-alice"], "locked", "alice", "L2", NOW + 2)
    assert (third.seq, third.laptop_id, third.pending) == (3, "L2", True)
    record = await store.lock_record("ph-alice")
    assert record is not None and (record.seq, record.acked_seq) == (3, 2)
    with pytest.raises(StoreConflict):
        await store.set_desired_lock(["no-such-phone"], "locked", "alice", "L1", NOW)


async def test_lock_changes_made_at_once_are_applied_in_order_and_fail_alone(
    store: RelayStore,
) -> None:
    await tenant_with_people(store)
    results = await asyncio.gather(
        store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW),
        store.set_desired_lock(["ph-bob", "no-such-phone"], "locked", "bob", "L2", NOW),
        store.set_desired_lock(["ph-alice", "ph-bob"], "unlocked", "alice", "L1", NOW + 1),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreConflict)
    assert [(r.phone_id, r.seq, r.state) for r in results[0]] == [("ph-alice", 1, "locked")]  # type: ignore[union-attr]
    assert [(r.phone_id, r.seq, r.state) for r in results[2]] == [  # type: ignore[union-attr]
        ("ph-alice", 2, "unlocked"), ("ph-bob", 1, "unlocked")]
    record = await store.lock_record("ph-bob")
    assert record is not None and (record.seq, record.state) == (1, "unlocked")


async def test_acks_made_at_once_are_each_answered_for_their_own_phone(
    store: RelayStore,
) -> None:
    """A node under load acknowledges many phones in one moment (PostgreSQL: one
    statement for all): each ack is answered as if alone — news, a repeat, an ack of a
    command never sent, a phone with no lock state — and a phone acking twice at once
    has both applied in order."""
    await tenant_with_people(store)
    await store.set_desired_lock(["ph-alice", "ph-bob"], "locked", "alice", "L1", NOW)
    await store.set_desired_lock(["ph-alice"], "unlocked", "alice", "L1", NOW + 1)
    alice_first, alice_second, bob, never_sent, no_state = await asyncio.gather(
        store.ack_lock("ph-alice", 1),
        store.ack_lock("ph-alice", 2),
        store.ack_lock("ph-bob", 1),
        store.ack_lock("ph-bob", 2),
        store.ack_lock("room", 1),
    )
    assert alice_first is not None and alice_first.news
    assert (alice_first.record.seq, alice_first.record.acked_seq) == (2, 1)
    assert alice_second is not None and alice_second.news
    assert (alice_second.record.acked_seq, alice_second.record.pending) == (2, False)
    assert bob is not None and bob.news and not bob.record.pending
    assert never_sent is None and no_state is None
    again = await asyncio.gather(store.ack_lock("ph-alice", 2), store.ack_lock("ph-bob", 1))
    assert [(a is not None and a.news) for a in again] == [False, False]
    for phone_id, acked in (("ph-alice", 2), ("ph-bob", 1)):
        record = await store.lock_record(phone_id)
        assert record is not None and record.acked_seq == acked


async def test_a_phone_signed_in_to_another_account_loses_its_pairings_and_pending_lock(
    store: RelayStore, store_factory: OpenStore
) -> None:
    await tenant_with_people(store)
    await store.add_pairings(
        [Pairing("alice", "L1", "Laptop", "ph-alice", "t1", NOW),
         Pairing("alice", "L1", "Laptop", "ph-bob", "t1", NOW)]
    )
    await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    version = await store.pairings_version()

    # Signed in again to the same account: nothing ends.
    await store.sign_in_device("ph-alice", "alice", "signed_in")
    assert len(await store.pairings_of_phone("ph-alice")) == 1
    assert (await store.lock_record("ph-alice")).pending  # type: ignore[union-attr]

    await store.sign_in_device("ph-alice", "bob", "signed_in")
    other_node = await store_factory()
    for reader in (store, other_node):
        assert await reader.pairings_of_phone("ph-alice") == []
        assert [p.phone_id for p in await reader.pairings_of_laptop("alice", "L1")] == ["ph-bob"]
        record = await reader.lock_record("ph-alice")
        assert record is not None and record.seq == 1 and not record.pending
        device = await reader.device("ph-alice")
        assert device is not None and (device.user_id, device.state) == ("bob", "signed_in")
    assert await store.pairings_version() != version
    # bob's next command continues the sequence: the phone never mistakes it for an old one.
    (record,) = await store.set_desired_lock(["ph-alice"], "unlocked", "bob", "L9", NOW + 1)
    assert (record.seq, record.pending) == (2, True)

    await store.sign_in_device_as("ph-alice", None, "waiting_for_sign_in", "common_area")
    device = await store.device("ph-alice")
    assert device is not None and (device.user_id, device.state, device.mode) == (
        None, "waiting_for_sign_in", "common_area")
    assert not (await store.lock_record("ph-alice")).pending  # type: ignore[union-attr]
    with pytest.raises(StoreConflict, match="no such device"):
        await store.sign_in_device("nothing", "bob", "signed_in")
    with pytest.raises(StoreConflict, match="no such device"):
        await store.sign_in_device_as("nothing", "bob", "signed_in", "personal")


# --- administrators, provisioning, consoles, audit ------------------------------------------


async def test_administrators_and_their_credentials(store: RelayStore) -> None:
    await tenant_with_people(store)
    owner = AdminRecord("a-owner", "Olivia", "owner", None, NOW)
    admin = AdminRecord("a-dev", "Dan", "device_admin", "t1", NOW + 1)
    assert await store.owner_count() == 0
    await store.add_admin(owner, b"owner-token", "ac1")
    await store.add_admin(admin, b"dev-token", "ac2")
    await store.add_admin_credential("a-dev", b"dev-token-2", "ac3", NOW + 2)
    assert await store.owner_count() == 1
    assert await store.admin("a-dev") == admin
    assert await store.admin_by_token_hash(b"dev-token-2") == admin
    assert await store.admin_by_credential("ac1") == owner
    cred = await store.admin_credential_by_hash(b"dev-token")
    assert cred is not None and (cred.id, cred.admin_id, cred.revoked_at) == ("ac2", "a-dev", None)
    assert [a.id for a in await store.admins(None)] == ["a-owner", "a-dev"]
    assert await store.admins("t1") == [admin]
    assert await store.tenant_admins("t1") == [admin]
    assert [c.id for c in await store.admin_credentials("a-dev")] == ["ac2", "ac3"]
    assert await store.revoke_admin_credential("ac2", NOW + 5) is True
    assert await store.revoke_admin_credential("ac2", NOW + 6) is False
    assert await store.admin_by_token_hash(b"dev-token") is None
    assert await store.admin_by_credential("ac2") is None
    assert (await store.admin_credential_by_hash(b"dev-token")).revoked_at == NOW + 5  # type: ignore[union-attr]
    with pytest.raises(StoreConflict):  # an owner belongs to no tenant
        await store.add_admin(AdminRecord("a-bad", "Bad", "owner", "t1", NOW), b"t", "ac9")
    with pytest.raises(StoreConflict, match="this credential already exists"):
        await store.add_admin_credential("a-owner", b"owner-token", "ac10", NOW)


async def _listed_device(store: RelayStore) -> None:
    await tenant_with_people(store)
    await store.add_device(phone("new", state="waiting_for_activation", mac="aa:bb:cc:dd:ee:ff"))
    await store.add_credentials([credential("old-cred", "new", "device")])
    await store.set_verification_code("new", IssuedCode("h1", NOW, NOW + 60))


async def test_provisioning_uses_the_code_once_and_is_all_or_nothing(store: RelayStore) -> None:
    await _listed_device(store)
    assert await store.verification_code("new") == IssuedCode("h1", NOW, NOW + 60)
    await store.set_verification_code("new", IssuedCode("h2", NOW + 1, NOW + 61))
    assert await store.verification_code("new") == IssuedCode("h2", NOW + 1, NOW + 61)
    new_key = bytes(16)

    with pytest.raises(StoreConflict, match="used or replaced"):  # the replaced code
        await store.provision_device("new", "h1", new_key, credential("c-new", "new", "device"), NOW + 2)
    with pytest.raises(StoreConflict, match="used or replaced"):  # expired
        await store.provision_device("new", "h2", new_key, credential("c-new", "new", "device"), NOW + 61)
    assert await store.credential("c-new") is None

    await store.provision_device("new", "h2", new_key, credential("c-new", "new", "device"), NOW + 3)
    device = await store.device("new")
    assert device is not None
    assert (device.state, device.user_id, device.identity_key) == ("waiting_for_sign_in", None, new_key)
    assert (await store.credential("old-cred")).revoked_at == NOW + 3  # type: ignore[union-attr]
    assert (await store.credential("c-new")).revoked_at is None  # type: ignore[union-attr]
    assert (await store.verification_code("new")).used_at == NOW + 3  # type: ignore[union-attr]

    with pytest.raises(StoreConflict, match="used or replaced"):
        await store.provision_device("new", "h2", KEY, credential("c-again", "new", "device"), NOW + 4)
    assert await store.credential("c-again") is None


async def test_provisioning_a_device_not_waiting_for_activation_leaves_the_code_unused(
    store: RelayStore,
) -> None:
    await _listed_device(store)
    await store.sign_in_device("new", None, "waiting_for_sign_in")
    version = await store.directory_version()
    with pytest.raises(StoreConflict, match="no longer waiting for activation"):
        await store.provision_device("new", "h1", bytes(16), credential("c-new", "new", "device"), NOW + 1)
    assert (await store.verification_code("new")).used_at is None  # type: ignore[union-attr]
    assert (await store.credential("old-cred")).revoked_at is None  # type: ignore[union-attr]
    assert await store.credential("c-new") is None
    assert (await store.device("new")).identity_key == KEY  # type: ignore[union-attr]
    assert await store.directory_version() == version


async def test_a_reset_device_ends_its_credentials_pairings_and_lock_commands(
    store: RelayStore, store_factory: OpenStore
) -> None:
    await tenant_with_people(store)
    await store.add_credentials([credential("phone-cred", "ph-alice", "device")])
    await store.add_pairing(Pairing("alice", "L1", "Laptop", "ph-alice", "t1", NOW))
    await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    other_node = await store_factory()
    assert (await other_node.lock_record("ph-alice")).pending  # type: ignore[union-attr]

    await store.reset_device("ph-alice", NOW + 1)
    for reader in (store, other_node):
        device = await reader.device("ph-alice")
        assert device is not None and (device.state, device.user_id) == ("waiting_for_activation", None)
        assert (await reader.credential("phone-cred")).revoked_at == NOW + 1  # type: ignore[union-attr]
        assert await reader.pairings_of_phone("ph-alice") == []
        # No stale command: whatever the store says now is not pending for the phone.
        record = await reader.lock_record("ph-alice")
        assert record is None or not record.pending


async def test_a_removed_device_leaves_nothing_behind(store: RelayStore) -> None:
    await tenant_with_people(store)
    await store.add_credentials([credential("phone-cred", "ph-alice", "device")])
    await store.add_pairing(Pairing("alice", "L1", "Laptop", "ph-alice", "t1", NOW))
    await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    await store.set_verification_code("ph-alice", IssuedCode("h", NOW, NOW + 60))
    await store.add_device(phone("console", kind="conference_phone", mode="meeting_room"))
    await store.pair_console(ConsolePairing("console", "ph-alice", "t1", NOW))
    pairings = await store.pairings_version()

    await store.remove_device("ph-alice", NOW + 1)
    assert await store.device("ph-alice") is None
    assert await store.lock_record("ph-alice") is None
    assert await store.verification_code("ph-alice") is None
    assert await store.pairings_of_phone("ph-alice") == []
    assert await store.console_pairing("console") is None
    assert await store.pairings_version() != pairings
    assert (await store.credential("phone-cred")).revoked_at == NOW + 1  # type: ignore[union-attr]
    assert await store.devices_by_mac("00:11:22:33:44:55") == []


async def test_consoles_pair_with_one_room_at_a_time(store: RelayStore) -> None:
    await tenant_with_people(store)
    await store.add_device(phone("console", kind="conference_phone", mode="meeting_room"))
    await store.add_device(Device("room2", "t1", "Room 2", "room_system", "meeting_room", KEY, 8))
    await store.pair_console(ConsolePairing("console", "room", "t1", NOW))
    await store.pair_console(ConsolePairing("console", "room2", "t1", NOW + 1))
    assert await store.console_pairing("console") == ConsolePairing("console", "room2", "t1", NOW + 1)
    assert await store.console_pairings("t1") == [ConsolePairing("console", "room2", "t1", NOW + 1)]
    assert await store.console_pairings("t2") == []
    assert await store.unpair_console("console") is True
    assert await store.unpair_console("console") is False
    with pytest.raises(StoreConflict, match="does not exist"):
        await store.pair_console(ConsolePairing("console", "no-room", "t1", NOW))


async def test_the_audit_log_pages_back_from_the_newest(store: RelayStore) -> None:
    await tenant_with_people(store)
    for i in range(5):
        await store.add_audit(NOW + i, "a-owner", "t1" if i % 2 else "t2", f"act{i}", f"x{i}",
                              "ok", {"n": i, "text": "nul\x00 é"})
    await store.add_audit(NOW + 9, "a-owner", None, "global", "-", "refused", {})
    newest = await store.audit(None, 3)
    assert [r.action for r in newest] == ["act3", "act4", "global"]  # oldest first
    older = await store.audit(None, 10, before=newest[0].seq)
    assert [r.action for r in older] == ["act0", "act1", "act2"]
    t1 = await store.audit("t1", 10)
    assert [r.action for r in t1] == ["act1", "act3"]
    assert t1[0].detail == {"n": 1, "text": "nul\x00 é"}
    assert (t1[0].at, t1[0].actor, t1[0].tenant_id, t1[0].target, t1[0].outcome) == (
        NOW + 1, "a-owner", "t1", "x1", "ok")
    assert await store.audit("t1", 10, before=t1[0].seq) == []


async def test_renames_and_deletions(store: RelayStore) -> None:
    await tenant_with_people(store)
    await store.rename_tenant("t1", "Contoso Ltd")
    await store.rename_user("alice", "Alice A.")
    await store.rename_device("room", "Boardroom", None)
    await store.rename_device("ph-bob", "Bob's desk", "3rd floor")
    await store.rename_policy("p1", "Default")
    assert (await store.tenant("t1")).name == "Contoso Ltd"  # type: ignore[union-attr]
    assert (await store.user("alice")).name == "Alice A."  # type: ignore[union-attr]
    room = await store.device("room")
    assert room is not None and (room.name, room.location) == ("Boardroom", "2nd floor")
    bob_phone = await store.device("ph-bob")
    assert bob_phone is not None and (bob_phone.name, bob_phone.location) == ("Bob's desk", "3rd floor")
    assert (await store.policy("p1")).name == "Default"  # type: ignore[union-attr]
    for rename, what in (
        (store.rename_tenant("x", "y"), "tenant"), (store.rename_user("x", "y"), "user"),
        (store.rename_device("x", "y", None), "device"), (store.rename_policy("x", "y"), "policy"),
    ):
        with pytest.raises(StoreConflict, match=f"no such {what}"):
            await rename

    # Deleting an account: its laptop credentials revoked, its pairings and locks gone.
    await store.add_credentials([credential("bob-laptop", "bob")])
    await store.add_pairing(Pairing("bob", "L1", "Laptop", "ph-alice", "t1", NOW))
    await store.set_desired_lock(["ph-alice"], "locked", "bob", "L1", NOW)
    await store.sign_in_device("ph-bob", None, "waiting_for_sign_in")
    assert await store.devices_signed_in_as("alice") == ["ph-alice"]
    assert await store.devices_signed_in_as("bob") == []
    await store.delete_user("bob", NOW + 1)
    assert await store.user("bob") is None
    assert (await store.credential("bob-laptop")).revoked_at == NOW + 1  # type: ignore[union-attr]
    assert await store.pairings_of_laptop("bob", "L1") == []
    assert await store.lock_record("ph-alice") is None

    # Deleting a policy: whoever had it falls back to the default (none).
    await store.set_user_policy("alice", "p1")
    await store.delete_policy("p1")
    assert await store.policy("p1") is None
    assert (await store.user("alice")).policy_id is None  # type: ignore[union-attr]
    assert (await store.tenant("t1")).default_policy_id is None  # type: ignore[union-attr]

    # Deleting an empty tenant takes its policies and device administrators along.
    await store.add_policy(Policy("p-t2", "t2", "Fabrikam policy"))
    await store.add_admin(AdminRecord("a-t2", "Fay", "device_admin", "t2", NOW), b"fay", "ac-fay")
    await store.delete_user("carol", NOW)
    await store.delete_tenant("t2")
    assert await store.tenant("t2") is None
    assert await store.policy("p-t2") is None
    assert await store.admin("a-t2") is None
    assert await store.admin_by_token_hash(b"fay") is None
    with pytest.raises(StoreConflict):  # t1 still has accounts and devices
        await store.delete_tenant("t1")
    assert await store.tenant("t1") is not None


# --- several relay nodes on one database ----------------------------------------------------


async def test_what_one_node_acknowledges_the_next_one_reads(
    store: RelayStore, store_factory: OpenStore
) -> None:
    await tenant_with_people(store)
    await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    version = await store.directory_version()
    await store.close()
    later = await store_factory()
    assert await later.ready()
    assert await later.directory_version() == version
    assert (await later.lock_record("ph-alice")).seq == 1  # type: ignore[union-attr]
    assert await later.tenant("t1") == Tenant("t1", "Contoso", "p1")


async def test_lock_changes_raced_by_two_nodes_never_share_a_seq(
    store: RelayStore, store_factory: OpenStore
) -> None:
    await tenant_with_people(store)
    other = await store_factory()
    rounds = 15
    results = await asyncio.gather(
        *(
            node.set_desired_lock(["ph-alice", "ph-bob"], "locked", "alice", f"L{i}", NOW + i)
            for i in range(rounds)
            for node in (store, other)
        )
    )
    for phone_id in ("ph-alice", "ph-bob"):
        seqs = sorted(r.seq for records in results for r in records if r.phone_id == phone_id)
        assert seqs == list(range(1, 2 * rounds + 1))
        assert (await other.lock_record(phone_id)).seq == 2 * rounds  # type: ignore[union-attr]


async def test_a_lock_record_read_after_another_node_wrote_is_the_new_one(
    store: RelayStore, store_factory: OpenStore
) -> None:
    """A node that has read (or written, or acknowledged) a phone's lock record reads the
    one another node wrote since, not what it read before (no stale cache)."""
    await tenant_with_people(store)
    other = await store_factory()
    (first,) = await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    assert (await store.lock_record("ph-alice")).seq == first.seq  # type: ignore[union-attr]
    assert (await other.lock_record("ph-alice")).seq == first.seq  # type: ignore[union-attr]
    (second,) = await other.set_desired_lock(["ph-alice"], "unlocked", "alice", "L2", NOW + 1)
    record = await store.lock_record("ph-alice")
    assert record is not None and (record.seq, record.state, record.laptop_id) == (
        second.seq, "unlocked", "L2")
    await store.ack_lock("ph-alice", second.seq)
    assert not (await store.lock_record("ph-alice")).pending  # type: ignore[union-attr]
    for _ in range(50):  # the ack need not be durable at once; it is within a moment
        record = await other.lock_record("ph-alice")
        if record is not None and not record.pending:
            break
        await asyncio.sleep(0.02)
    assert record is not None and not record.pending
    await other.remove_device("ph-alice", NOW + 2)
    assert await store.lock_record("ph-alice") is None


async def test_a_verification_code_raced_by_two_nodes_provisions_once(
    store: RelayStore, store_factory: OpenStore
) -> None:
    await _listed_device(store)
    other = await store_factory()
    outcomes = await asyncio.gather(
        store.provision_device("new", "h1", bytes(16), credential("c-a", "new", "device"), NOW + 1),
        other.provision_device("new", "h1", bytes(16), credential("c-b", "new", "device"), NOW + 1),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "StoreConflict"]
    issued = [c for c in ("c-a", "c-b") if await store.credential(c) is not None]
    assert len(issued) == 1
    devices = [c for c in await store.credentials_of("t1", "new") if c.revoked_at is None]
    assert [c.id for c in devices] == issued


async def test_directory_writes_by_two_nodes_are_seen_by_both_in_one_order(
    store: RelayStore, store_factory: OpenStore
) -> None:
    await tenant_with_people(store)
    other = await store_factory()
    start = await store.directory_version()
    await asyncio.gather(
        *(
            node.add_user(User(f"{name}-{i}", "t1", name))
            for i in range(8)
            for node, name in ((store, "from-a"), (other, "from-b"))
        ),
        store.sign_in_device("ph-bob", "alice", "signed_in"),
        other.revoke_credential("none", NOW),
    )
    version = await other.directory_version()
    assert version == await store.directory_version() == start + 17
    seen_a, seen_b = await store.changes_since(start), await other.changes_since(start)
    assert seen_a == seen_b
    assert seen_a is not None and [c.version for c in seen_a] == list(range(start + 1, version + 1))
    assert {c.id for c in seen_a if c.kind == "users"} == {
        f"{name}-{i}" for i in range(8) for name in ("from-a", "from-b")}
    pairings = await store.pairings_version()
    await other.add_pairing(Pairing("alice", "L1", "Laptop", "ph-alice", "t1", NOW))
    assert await store.pairings_version() != pairings


async def test_ready_while_open_and_not_after_close(store: RelayStore) -> None:
    assert await store.ready() is True
    await store.close()
    assert await store.ready() is False
