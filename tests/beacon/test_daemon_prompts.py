"""Pair and join prompts through the real daemon: confirmed at the device, or automatically."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

from beacon.control import BEACON, control_path
from hw.control_socket import call
from relay.protocol import wire
from tests.beacon.conftest import (
    Relay,
    StartDaemon,
    World,
    beacon_cli,
    eid_now,
    laptop,
    provision,
    provisioned_phone,
    short_dir,
)


async def test_pair_prompt_is_confirmed_on_the_device_with_beacon_confirm(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    state_dir = provisioned_phone(relay, world)
    running = await start_daemon(state_dir)
    link = await laptop(relay, world)
    await link.report_sightings([(eid_now(world.phone), -60)])
    request = await link.pair_request(world.phone.id)

    line = await running.console.wait_for("pair-prompt")
    assert request.request_id in line and f"code={request.code}" in line
    code, out, err = await beacon_cli("status", "--state-dir", str(state_dir), "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["connected"] is True
    assert [p["id"] for p in status["prompts"]] == [request.request_id]

    code, out, err = await beacon_cli("confirm", "--state-dir", str(state_dir))
    assert code == 0, err
    assert out.strip() == f"confirmed {request.request_id}"
    await link.pair_confirm(request.request_id, True)
    completed = await link.next_event("pair.completed")
    assert isinstance(completed, wire.PairCompleted)
    assert [p.phone_id for p in await link.pairings()] == [world.phone.id]
    await running.console.wait_for("pair-completed")

    code, out, err = await beacon_cli("confirm", "--state-dir", str(state_dir))
    assert code == 1 and "nothing is waiting" in err
    await link.close()


async def test_declining_a_pair_prompt_ends_the_request(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    state_dir = provisioned_phone(relay, world)
    running = await start_daemon(state_dir)
    link = await laptop(relay, world)
    await link.report_sightings([(eid_now(world.phone), -60)])
    request = await link.pair_request(world.phone.id)
    await running.console.wait_for("pair-prompt")

    reply = await call(
        control_path(state_dir), "confirm", {"id": request.request_id, "accept": False},
        daemon=BEACON,
    )
    assert reply == {"id": request.request_id, "accepted": False}
    ended = await link.next_event("pair.ended")
    assert ended == wire.PairEnded(request_id=request.request_id, reason="declined")
    assert await link.pairings() == []
    await link.close()


async def test_unattended_device_auto_confirms_pair_prompts(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    state_dir = provisioned_phone(relay, world)
    running = await start_daemon(state_dir, config="auto_confirm = true\n")
    link = await laptop(relay, world)
    await link.report_sightings([(eid_now(world.phone), -60)])
    request = await link.pair_request(world.phone.id)
    await running.console.wait_for("pair-auto-confirm")
    result = await link.pair_confirm(request.request_id, True)
    assert result.state == "paired"
    await link.next_event("pair.completed")
    await link.close()


async def test_join_prompt_confirmed_at_the_room_reaches_the_laptop(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    state_dir = short_dir("bt-room-")
    provision(state_dir, relay, world.prompt_room, world.prompt_room_credential)
    running = await start_daemon(state_dir, host="room")
    link = await laptop(relay, world)
    await link.report_sightings([(eid_now(world.prompt_room), -55)])
    result = await link.join_request(world.prompt_room.id, "weekly sync")
    assert result.outcome == "pending"
    line = await running.console.wait_for("join-prompt")
    assert result.join_id in line and "weekly sync" in line

    reply = await call(
        control_path(state_dir), "confirm", {"id": None, "accept": True}, daemon=BEACON
    )
    assert reply["id"] == result.join_id
    joined = await link.next_event("join.result")
    assert joined == wire.JoinResult(join_id=result.join_id, room_id=world.prompt_room.id,
                                     outcome="accepted")
    await link.close()


async def test_join_command_is_recorded_and_runs_the_hook_with_the_details(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    state_dir = short_dir("bt-room-")
    provision(state_dir, relay, world.room, world.room_credential)
    seen = state_dir / "hook.json"
    script = (
        "import json, os, sys; "
        "json.dump({k: v for k, v in os.environ.items() if k.startswith('BTOGETHER_')}, "
        "open(sys.argv[1], 'w'))"
    )
    hook = shlex.join([sys.executable, "-c", script, str(seen)])
    config = f"[hooks]\non_join = {json.dumps(hook)}\n"
    running = await start_daemon(state_dir, host="room", config=config)
    link = await laptop(relay, world)
    await link.report_sightings([(eid_now(world.room), -55)])
    result = await link.join_request(world.room.id, "all hands")
    assert result.outcome == "accepted"

    line = await running.console.wait_for("join meeting=")
    assert "all hands" in line
    async with asyncio.timeout(10):
        while not seen.exists() or not seen.read_text():
            await asyncio.sleep(0.05)
    env = json.loads(Path(seen).read_text())
    assert env["BTOGETHER_EVENT"] == "on_join"
    assert env["BTOGETHER_MEETING_ID"] == "all hands"
    assert env["BTOGETHER_JOIN_ID"] == result.join_id
    assert env["BTOGETHER_USER_NAME"] == "alice"
    assert env["BTOGETHER_DEVICE_ID"] == world.room.id
    status = running.daemon.status(0.0)
    assert status["last_join"]["meeting_id"] == "all hands"  # type: ignore[index]
    await link.close()
