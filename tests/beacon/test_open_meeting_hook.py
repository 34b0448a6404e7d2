"""The shipped join hook (packaging/hooks/open-meeting): a room added to a meeting opens the
meeting's URL — Jitsi, Zoom and Teams style — and refuses anything else from the laptop."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.beacon.conftest import (
    Relay,
    StartDaemon,
    World,
    eid_now,
    laptop,
    provision,
    short_dir,
)

HOOK = Path(__file__).resolve().parents[2] / "packaging" / "hooks" / "open-meeting"
# What the room's browser would be given: the opener records its arguments.
RECORDER = "import json, sys; open(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n')"


def _opener(record: Path) -> str:
    return shlex.join([sys.executable, "-c", RECORDER, str(record)])


def run_hook(
    meeting: str | None, record: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTOGETHER_")}
    if meeting is not None:
        env["BTOGETHER_MEETING_ID"] = meeting
    done = subprocess.run(
        [str(HOOK), "--opener", _opener(record), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    opened = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return done, opened


@pytest.mark.parametrize(
    ("meeting", "args", "url"),
    [
        ("https://meet.jit.si/TeamStandup", (), "https://meet.jit.si/TeamStandup"),
        ("TeamStandup", (), "https://meet.jit.si/TeamStandup"),
        (
            "81234567890",
            ("--template", "https://zoom.us/j/{meeting}"),
            "https://zoom.us/j/81234567890",
        ),
        ("https://us02web.zoom.us/j/812345?pwd=x", (), "https://us02web.zoom.us/j/812345?pwd=x"),
        (
            "https://teams.microsoft.com/meet/2345678?p=AbCd",
            (),
            "https://teams.microsoft.com/meet/2345678?p=AbCd",
        ),
        (
            "weekly",
            ("--template", "https://meet.example.org/{meeting}"),
            "https://meet.example.org/weekly",
        ),
    ],
)
def test_meeting_urls_and_ids_are_opened(
    meeting: str, args: tuple[str, ...], url: str, tmp_path: Path
) -> None:
    done, opened = run_hook(meeting, tmp_path / "opened", *args)
    assert done.returncode == 0, done.stderr
    assert opened == [[url]]


@pytest.mark.parametrize(
    ("meeting", "why"),
    [
        ("http://meet.jit.si/Plain", "only https"),
        ("https://evil.example.com/phish", "not an allowed meeting host"),
        ("https://zoom.us.evil.example.com/j/1", "not an allowed meeting host"),
        ("https://user:pw@meet.jit.si/x", "user name or password"),
        ("all hands", "neither an https URL nor a meeting id"),
        ("-rf", "neither an https URL nor a meeting id"),
        ("javascript://alert(1)", "only https"),
        (None, "BTOGETHER_MEETING_ID is not set"),
    ],
)
def test_anything_else_is_refused_and_nothing_is_opened(
    meeting: str | None, why: str, tmp_path: Path
) -> None:
    done, opened = run_hook(meeting, tmp_path / "opened")
    assert done.returncode == 2 and why in done.stderr and "Traceback" not in done.stderr
    assert opened == []


def test_allow_replaces_the_default_hosts_but_the_templates(tmp_path: Path) -> None:
    done, opened = run_hook("https://zoom.us/j/1", tmp_path / "opened", "--allow", "meet.corp")
    assert done.returncode == 2 and opened == []
    done, opened = run_hook("https://meet.corp/x", tmp_path / "opened", "--allow", "meet.corp")
    assert done.returncode == 0 and opened == [["https://meet.corp/x"]]


async def test_a_room_added_to_a_meeting_opens_it_through_the_daemon(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    state_dir = short_dir("bt-room-")
    provision(state_dir, relay, world.room, world.room_credential)
    record = state_dir / "opened"
    hook = shlex.join([str(HOOK), "--opener", _opener(record)])
    running = await start_daemon(
        state_dir, host="room", config=f"[hooks]\non_join = {json.dumps(hook)}\n"
    )
    link = await laptop(relay, world)
    await link.report_sightings([(eid_now(world.room), -55)])
    result = await link.join_request(world.room.id, "https://meet.jit.si/AllHands")
    assert result.outcome == "accepted"
    async with asyncio.timeout(10):
        # The opener creates the file before it writes its line: wait for the whole line.
        while not (record.exists() and record.read_text().endswith("\n")):
            await asyncio.sleep(0.05)
    assert json.loads(record.read_text()) == ["https://meet.jit.si/AllHands"]
    await running.console.wait_for("join meeting=")
    await link.close()
