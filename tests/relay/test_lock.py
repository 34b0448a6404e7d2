"""Lock sync: durable desired state, delivered on reconnect, acknowledged, never out of order."""

from __future__ import annotations

import asyncio
import sqlite3

from relay.protocol import wire
from tests.relay.conftest import RelayHarness, StartRelay, World
from tests.relay.helpers import paired_alice, refusal


def _row(relay: RelayHarness, phone_id: str) -> tuple[int, str, int] | None:
    """Read the lock state straight from the database file, as another process would."""
    with sqlite3.connect(relay.db) as db:
        row = db.execute(
            "SELECT seq, state, acked_seq FROM lock_states WHERE phone_id = ?", (phone_id,)
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


async def test_lock_is_durable_before_the_laptop_is_answered_then_acked(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone_id = world.alice.phone.id
    laptop, phone = await paired_alice(relay, world, "laptop-a")

    result = await laptop.lock_set("locked")
    assert result.phones == [wire.PhoneLockSeq(phone_id=phone_id, seq=1)]
    assert _row(relay, phone_id) == (1, "locked", 0)  # committed before the reply
    command = await phone.next_event("lock.command")
    assert command == wire.LockCommand(seq=1, state="locked", laptop_id="laptop-a")
    await phone.lock_ack(1)
    applied = await laptop.next_event("lock.applied")
    assert applied == wire.LockApplied(phone_id=phone_id, seq=1, state="locked")
    for _ in range(100):  # the ack is written behind: losing it only means a re-delivery
        if _row(relay, phone_id) == (1, "locked", 1):
            break
        await asyncio.sleep(0.02)
    assert _row(relay, phone_id) == (1, "locked", 1)
    await phone.lock_ack(1)  # a repeated ack is harmless and sends nothing
    assert laptop.pending_events() == []
    await laptop.close()
    await phone.close()


async def test_offline_phone_gets_only_the_latest_state_on_reconnect(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world)
    await phone.close()
    await laptop.lock_set("locked")
    await laptop.lock_set("unlocked")
    phone = await relay.device(world.alice.phone_credential)
    command = await phone.next_event("lock.command")
    assert command == wire.LockCommand(seq=2, state="unlocked", laptop_id="laptop-1")
    await phone.lock_ack(2)
    await laptop.next_event("lock.applied")
    await phone.close()
    # Acknowledged: nothing is re-sent on the next connection.
    phone = await relay.device(world.alice.phone_credential)
    assert (await phone.ping()).server_time > 0
    assert phone.pending_events() == []
    await phone.close()
    await laptop.close()


async def test_stale_ack_of_a_superseded_command_does_not_confirm_the_new_one(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world)
    await laptop.lock_set("locked")
    await laptop.lock_set("unlocked")
    await phone.lock_ack(1)  # version 2: a successful ack is not answered...
    await phone.ping()  # ...so a ping's reply says the relay has taken it in
    assert laptop.pending_events() == []
    assert _row(relay, world.alice.phone.id)[:2] == (2, "unlocked")  # type: ignore[index]
    assert await refusal(phone.call(wire.LockAck, seq=3)) == wire.ErrorCode.WRONG_STATE
    await phone.lock_ack(2)
    assert (await laptop.next_event("lock.applied")) == wire.LockApplied(
        phone_id=world.alice.phone.id, seq=2, state="unlocked"
    )
    await laptop.close()
    await phone.close()


async def test_unpaired_laptop_cannot_set_lock_and_phone_cannot_either(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone_credential is not None
    laptop = await relay.laptop(world.alice)
    phone = await relay.device(world.alice.phone_credential)
    assert await refusal(laptop.lock_set("locked")) == wire.ErrorCode.NOT_PAIRED
    assert await refusal(phone.call(wire.LockSet, state="locked")) == wire.ErrorCode.FORBIDDEN
    assert await refusal(phone.call(wire.LockAck, seq=1)) == wire.ErrorCode.WRONG_STATE
    await laptop.close()
    await phone.close()


async def test_lock_is_refused_once_policy_disables_better_together(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world)
    await relay.admin.set_user_policy(world.alice.user.id, world.disabled_policy.id)
    assert await refusal(laptop.lock_set("locked")) == wire.ErrorCode.POLICY_DENIED
    assert _row(relay, world.alice.phone.id) is None
    await laptop.close()
    await phone.close()


async def test_restart_keeps_pairings_and_delivers_pending_lock_state(
    start_relay: StartRelay, relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    await phone.close()
    assert (await laptop.lock_set("locked")).phones[0].seq == 1
    await relay.server.stop()
    code, _ = await laptop.closed
    assert code == wire.CloseCode.GOING_AWAY

    again = await start_relay()
    laptop = await again.laptop(world.alice, "laptop-a")
    assert [p.phone_id for p in await laptop.pairings()] == [world.alice.phone.id]
    phone = await again.device(world.alice.phone_credential)
    command = await phone.next_event("lock.command")
    assert command == wire.LockCommand(seq=1, state="locked", laptop_id="laptop-a")
    await phone.lock_ack(1)
    await laptop.next_event("lock.applied")
    # The sequence continues where it was: nothing is applied twice or out of order.
    assert (await laptop.lock_set("unlocked")).phones[0].seq == 2
    await laptop.close()
    await phone.close()
