"""Lock sync through the real daemon: the laptop locks, the phone's logind session locks."""

from __future__ import annotations

import json

from beacon.memory import MEMORY_FILE, DaemonMemory, save_memory
from hw.standin.logind import LogindStandIn
from relay.protocol import wire
from tests.beacon.conftest import (
    Relay,
    StartDaemon,
    StartRelay,
    World,
    laptop,
    provision,
    provisioned_phone,
    short_dir,
    wait_until,
)


async def _paired(relay: Relay, world: World) -> None:
    await relay.admin.pair(world.alice.id, "laptop-1", world.phone.id)


async def test_laptop_lock_and_unlock_drive_the_phone_session(
    relay: Relay, world: World, logind: LogindStandIn, start_daemon: StartDaemon
) -> None:
    await _paired(relay, world)
    state_dir = provisioned_phone(relay, world)
    running = await start_daemon(state_dir)
    session = logind.session()
    link = await laptop(relay, world)

    result = await link.lock_set("locked")
    (phone_seq,) = result.phones
    applied = await link.next_event("lock.applied")
    assert applied == wire.LockApplied(phone_id=world.phone.id, seq=phone_seq.seq, state="locked")
    assert session.locked_hint is True and session.lock_calls == 1

    await link.lock_set("unlocked")
    applied = await link.next_event("lock.applied")
    assert isinstance(applied, wire.LockApplied) and applied.state == "unlocked"
    assert session.locked_hint is False and session.unlock_calls == 1
    memory = json.loads((state_dir / MEMORY_FILE).read_text())
    assert memory["last_lock_seq"] == applied.seq and memory["last_lock_state"] == "unlocked"
    assert running.console.count("locked seq=") == 1
    assert running.console.count("unlocked seq=") == 1
    await link.close()


async def test_restarted_daemon_acks_but_never_reapplies_an_applied_command(
    relay: Relay, world: World, logind: LogindStandIn, start_daemon: StartDaemon
) -> None:
    """The daemon applied seq 1 and died before its ack reached the relay; meanwhile the
    user unlocked the phone by hand. On restart the relay re-sends seq 1: ack, don't lock."""
    await _paired(relay, world)
    state_dir = provisioned_phone(relay, world)
    link = await laptop(relay, world)
    result = await link.lock_set("locked")  # phone offline: pending at the relay
    seq = result.phones[0].seq
    save_memory(state_dir, DaemonMemory(device_id=world.phone.id, last_lock_seq=seq,
                                        last_lock_state="locked"))
    session = logind.session()

    running = await start_daemon(state_dir)
    applied = await link.next_event("lock.applied")
    assert isinstance(applied, wire.LockApplied) and applied.seq == seq
    assert session.lock_calls == 0 and session.locked_hint is False

    # A newer command is applied as usual.
    await link.lock_set("locked")
    applied = await link.next_event("lock.applied")
    assert isinstance(applied, wire.LockApplied) and applied.seq == seq + 1
    assert session.lock_calls == 1 and session.locked_hint is True
    assert running.console.count("locked seq=") == 1
    await link.close()


async def test_phone_offline_while_the_laptop_locks_locks_when_it_comes_back(
    relay: Relay, world: World, logind: LogindStandIn, start_daemon: StartDaemon
) -> None:
    await _paired(relay, world)
    state_dir = provisioned_phone(relay, world)
    running = await start_daemon(state_dir)
    await running.stop()
    link = await laptop(relay, world)
    await link.lock_set("locked")
    assert logind.session().locked_hint is False

    await start_daemon(state_dir)
    applied = await link.next_event("lock.applied")
    assert isinstance(applied, wire.LockApplied) and applied.state == "locked"
    assert logind.session().locked_hint is True
    await link.close()


async def test_relay_restart_mid_way_daemon_reconnects_and_lock_state_converges(
    start_relay: StartRelay, relay: Relay, world: World, logind: LogindStandIn,
    start_daemon: StartDaemon,
) -> None:
    await _paired(relay, world)
    state_dir = provisioned_phone(relay, world)
    running = await start_daemon(state_dir)
    link = await laptop(relay, world)
    await link.lock_set("locked")
    await link.next_event("lock.applied")
    await link.close()

    port = relay.server.port
    await relay.server.stop()
    await running.console.wait_for("disconnected")
    restarted = await start_relay(port=port)
    await running.console.wait_for("connected", within=15, after=2)
    assert running.console.count("connected") == 2

    link = await laptop(restarted, world)
    await link.lock_set("unlocked")
    applied = await link.next_event("lock.applied")
    assert isinstance(applied, wire.LockApplied) and applied.state == "unlocked"
    await wait_until(lambda: logind.session().locked_hint is False)
    assert logind.session().lock_calls == 1 and logind.session().unlock_calls == 1
    await link.close()


async def test_a_state_dir_too_deep_for_a_socket_costs_only_the_control_socket(
    relay: Relay, world: World, logind: LogindStandIn, start_daemon: StartDaemon
) -> None:
    await _paired(relay, world)
    state_dir = short_dir("bt-phone-") / ("deep" * 30)
    provision(state_dir, relay, world.phone, world.phone_credential)
    running = await start_daemon(state_dir)
    assert running.console.lines[0].startswith("control socket unavailable")
    assert running.console.lines[1].startswith("ready control=- ")
    link = await laptop(relay, world)
    await link.lock_set("locked")
    await link.next_event("lock.applied")
    assert logind.session().locked_hint is True
    await link.close()
