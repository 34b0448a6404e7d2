"""`btogether demo` itself, as a user runs it: the whole story to exit 0, and a failed step.

Apart from tests/e2e/test_story.py so that the two run side by side on the suite's
workers (each takes minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_story import machine_has_pulseaudio

pytestmark = pytest.mark.timeout(300)


def test_demo_command_tells_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "btogether.cli", "demo", "--json", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    steps = [line for line in lines if "step" in line]
    assert all(step["ok"] for step in steps)
    titles = " | ".join(step["title"] for step in steps)
    for part in ("discovers", "nearest room", "Connect my desk phone", "locks", "unlocks",
                 "audio", "Walk to room B"):
        assert part in titles
    skipped = [step["title"] for step in steps if step.get("skipped")]
    if machine_has_pulseaudio():
        # Every step this machine was set up for ran: none may pass by being skipped.
        assert skipped == [], skipped
        audio = next(s for s in steps if s["title"] == "Use the phone as the meeting's audio device")
        assert "default sink speakerphone, source speakerphone_mic" in audio["detail"]
    else:
        assert skipped == ["Start the phone's sound server", "Use the phone as the meeting's "
                           "audio device", "Give the audio back"]
    assert lines[-1]["summary"] == "ok"
    assert lines[-1]["skipped"] == len(skipped)
    assert lines[-1]["steps"] == len(steps) - len(skipped)


def test_a_failed_step_stops_the_demo_with_a_clear_message_and_exit_code(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path)}  # no dbus-daemon here
    done = subprocess.run(
        [sys.executable, "-m", "btogether.cli", "demo", "--workdir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert done.returncode == 1
    assert "DEMO FAILED: step 1 (Start the simulated air" in done.stderr
    assert "Traceback" not in done.stderr
    assert "logs:" in done.stderr
