"""hw.process.stop_process: SIGTERM first, SIGKILL when the process (group) does not finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hw.process import stop_process

IGNORES_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(30)"
)


def _child(code: str, **kwargs: object) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    process.stdout.close()
    return process  # type: ignore[no-any-return]


@pytest.mark.parametrize("group", [False, True])
def test_a_process_that_obeys_sigterm_ends_with_it(group: bool) -> None:
    process = _child("import time; print('ready', flush=True); time.sleep(30)",
                     start_new_session=group)  # fmt: skip
    assert stop_process(process, timeout=5, group=group) == -signal.SIGTERM


@pytest.mark.parametrize("group", [False, True])
def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(group: bool) -> None:
    process = _child(IGNORES_SIGTERM, start_new_session=group)
    assert stop_process(process, timeout=0.3, group=group) == -signal.SIGKILL


def test_kill_group_kills_the_leaders_children_too() -> None:
    leader = _child(
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}], stdout=subprocess.DEVNULL); "
        "print('ready', flush=True); time.sleep(30)",
        start_new_session=True,
    )
    assert stop_process(leader, timeout=0.3, kill_group=True) == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _group_alive(leader.pid):
        assert time.monotonic() < deadline, "the leader's child outlived it"
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_finished_process_is_left_alone() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=10)
    assert stop_process(process, group=True) == 0
