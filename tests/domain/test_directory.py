"""The directory cache: reads come from memory within the check interval, an edit made by
anyone reaches it within that interval, misses are not cached, and the EID index follows."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.admin.store_admin import Admin
from relay.domain.directory import Directory
from relay.domain.model import GLOBAL_DEFAULT_POLICY, DirectoryChange
from relay.protocol.eid import eid_at
from tests.fakes import MemoryStore
from tests.relay_harness import ManualClock


class CountingStore(MemoryStore):
    """Counts the reads the directory makes, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()
        self.forget_changes = False

    def _count(self, name: str) -> None:
        self.reads[name] += 1

    async def device(self, device_id: str) -> Any:
        self._count("device")
        self._count(f"device {device_id}")
        return await super().device(device_id)

    async def user(self, user_id: str) -> Any:
        self._count("user")
        return await super().user(user_id)

    async def credential(self, credential_id: str) -> Any:
        self._count("credential")
        return await super().credential(credential_id)

    async def tenant(self, tenant_id: str) -> Any:
        self._count("tenant")
        return await super().tenant(tenant_id)

    async def policy(self, policy_id: str) -> Any:
        self._count("policy")
        return await super().policy(policy_id)

    async def directory_version(self) -> int:
        self._count("directory_version")
        return await super().directory_version()

    async def changes_since(self, version: int) -> list[DirectoryChange] | None:
        if self.forget_changes:  # the change log no longer reaches back
            return None
        return await super().changes_since(version)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[CountingStore, Directory, Admin, ManualClock]]:
    store = CountingStore()
    await store.open()
    clock = ManualClock()
    directory = Directory(store, 1.0, 1, clock=clock)
    yield store, directory, Admin(store, clock=clock), clock
    await directory.close()


async def test_reads_within_the_check_interval_come_from_memory(setup: Any) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    policy = await admin.create_policy(tenant.id, "P", make_default=True)
    user = await admin.create_user(tenant.id, "u", policy.id)
    device = await admin.create_device(tenant.id, "d", "desk_phone", "personal")
    credential = await admin.issue_credential("user", user.id)
    now = clock()
    store.reads.clear()
    for _ in range(3):
        assert (await directory.device(device.id, now)) == device
        assert (await directory.user(user.id, now)) == user
        assert (await directory.credential(credential.credential_id, now)) is not None
        assert (await directory.effective_policy(tenant.id, None, now)) == policy
        assert (await directory.effective_policy(tenant.id, policy.id, now)) == policy
    assert store.reads["device"] == store.reads["user"] == store.reads["credential"] == 1
    assert store.reads["tenant"] == store.reads["policy"] == 1
    assert store.reads["directory_version"] == 1  # checked once in the interval


async def test_the_store_is_checked_again_once_the_interval_has_passed(setup: Any) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    device = await admin.create_device(tenant.id, "d", "desk_phone", "personal")
    renamed = await admin.create_user(tenant.id, "u")
    await directory.device(device.id, clock())
    await directory.device(device.id, clock() + 0.999)
    await store.sign_in_device(device.id, renamed.id, "signed_in")  # another writer
    store.reads["device"] = 1
    assert store.reads["directory_version"] == 1
    assert (await directory.device(device.id, clock() + 0.999)).user_id is None  # type: ignore[union-attr]
    assert store.reads["device"] == 1
    seen = await directory.device(device.id, clock() + 1.0)
    assert seen is not None and seen.user_id == renamed.id
    assert store.reads["directory_version"] == 2


async def test_a_refresh_is_due_exactly_when_the_next_read_checks_the_store(setup: Any) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    device = await admin.create_device(tenant.id, "d", "desk_phone", "personal")
    assert directory.refresh_due(clock())  # never read
    await directory.device(device.id, clock())
    assert not directory.refresh_due(clock() + 0.999)
    assert directory.refresh_due(clock() + 1.0)  # the interval, to the end
    checks = store.reads["directory_version"]
    await directory.device(device.id, clock() + 0.999)
    assert store.reads["directory_version"] == checks  # not due: not checked
    await directory.device(device.id, clock() + 1.0)
    assert store.reads["directory_version"] == checks + 1  # due: checked


async def test_a_forced_refresh_reads_the_version_at_once(setup: Any) -> None:
    store, directory, _admin, clock = setup
    await directory.refresh(clock())
    await directory.refresh(clock())
    assert store.reads["directory_version"] == 1
    await directory.refresh(clock(), force=True)
    assert store.reads["directory_version"] == 2


async def test_unknown_ids_are_looked_up_every_time(setup: Any) -> None:
    store, directory, _, clock = setup
    for _ in range(2):
        assert await directory.device("d_x", clock()) is None
        assert await directory.user("u_x", clock()) is None
        assert await directory.credential("c_x", clock()) is None
    assert store.reads["device"] == store.reads["user"] == store.reads["credential"] == 2


async def test_the_effective_policy_falls_back_to_the_tenants_then_the_global_default(
    setup: Any,
) -> None:
    _, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    now = clock()
    assert await directory.effective_policy(tenant.id, None, now) == GLOBAL_DEFAULT_POLICY
    assert await directory.effective_policy("t_unknown", None, now) == GLOBAL_DEFAULT_POLICY
    assert await directory.effective_policy(tenant.id, "p_gone", now) == GLOBAL_DEFAULT_POLICY
    default = await admin.create_policy(tenant.id, "D", make_default=True)
    own = await admin.create_policy(tenant.id, "O")
    await directory.refresh(now, force=True)
    assert await directory.effective_policy(tenant.id, None, now) == default
    assert await directory.effective_policy(tenant.id, "p_gone", now) == default
    assert await directory.effective_policy(tenant.id, own.id, now) == own


async def test_an_edit_drops_only_what_changed(setup: Any) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    a = await admin.create_device(tenant.id, "a", "desk_phone", "personal")
    b = await admin.create_device(tenant.id, "b", "desk_phone", "personal")
    now = clock()
    store.reads.clear()
    await directory.device(a.id, now)
    await directory.device(b.id, now)
    await store.rename_device(a.id, "a2", None)
    await directory.refresh(now, force=True)
    assert (await directory.device(a.id, now)).name == "a2"  # type: ignore[union-attr]
    assert (await directory.device(b.id, now)).name == "b"  # type: ignore[union-attr]
    assert store.reads[f"device {b.id}"] == 1 and store.reads[f"device {a.id}"] > 1


async def test_without_a_change_log_everything_is_dropped_and_the_index_reconciled_at_once(
    setup: Any,
) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    user = await admin.create_user(tenant.id, "u")
    device = await admin.create_device(tenant.id, "d", "desk_phone", "personal")
    await admin.sign_in_device(device.id, user.id)
    now = clock()
    await directory.start(now)
    await directory.eids.loaded.wait()
    eid = eid_at(device.identity_key, now, device.rotation_exponent)
    assert (await directory.resolve(eid, now)) is not None
    store.forget_changes = True
    await admin.sign_out_device(device.id)
    await directory.refresh(now, force=True)
    # Reconciled inline: the signed-out device no longer resolves, without waiting.
    assert directory.eids.index.resolve(eid, now) is None
    assert (await directory.device(device.id, now)).state == "waiting_for_sign_in"  # type: ignore[union-attr]


async def test_a_device_change_reaches_the_index_and_other_changes_do_not_touch_it(
    setup: Any,
) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    user = await admin.create_user(tenant.id, "u")
    device = await admin.create_device(tenant.id, "d", "desk_phone", "personal")
    now = clock()
    await directory.start(now)
    await directory.eids.loaded.wait()
    eid = eid_at(device.identity_key, now, device.rotation_exponent)
    await admin.sign_in_device(device.id, user.id)
    await store.set_user_policy(user.id, None)
    before = store.reads["device"]
    await directory.refresh(now, force=True)
    assert directory.eids.index.resolve(eid, now) == device.id
    assert store.reads["device"] - before == 1  # the device; not the user's id


async def test_a_fresh_directory_starts_its_index_on_the_first_sighting(setup: Any) -> None:
    _store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    device = await admin.create_device(tenant.id, "d", "room_system", "meeting_room")
    now = clock()
    eid = eid_at(device.identity_key, now, device.rotation_exponent)
    assert not directory.eids.started
    await directory.resolve(eid, now)
    assert directory.eids.started
    await directory.eids.loaded.wait()
    assert await directory.resolve(eid, now) == device


async def test_a_sighting_checks_the_directory_once_the_interval_has_passed(setup: Any) -> None:
    store, directory, admin, clock = setup
    tenant = await admin.create_tenant("T")
    device = await admin.create_device(tenant.id, "d", "room_system", "meeting_room")
    now = clock()
    eid = eid_at(device.identity_key, now, device.rotation_exponent)
    await directory.start(now)
    await directory.eids.loaded.wait()
    assert await directory.resolve(eid, now) == device
    checks = store.reads["directory_version"]
    assert await directory.resolve(eid, now + 0.5) == device
    assert store.reads["directory_version"] == checks  # no check within the interval
    await store.reset_device(device.id, now)  # by another process
    assert await directory.resolve(eid, now + 0.5) == device  # within the interval
    assert await directory.resolve(eid, now + 1.0) is None


async def test_which_states_resolve_is_a_choice(setup: Any) -> None:
    store, _, admin, clock = setup
    tenant = await admin.create_tenant("T")
    device = await admin.create_device(
        tenant.id, "d", "room_system", "meeting_room", state="waiting_for_sign_in"
    )
    now = clock()
    eid = eid_at(device.identity_key, now, device.rotation_exponent)
    for states, resolves in (
        (None, True),
        (("signed_in",), False),
        (("waiting_for_sign_in",), True),
    ):
        directory = Directory(store, 1.0, 1, clock=clock, resolvable_states=states)  # type: ignore[arg-type]
        await directory.start(now)
        await directory.eids.loaded.wait()
        assert (await directory.resolve(eid, now) is not None) is resolves, states
        await directory.close()
