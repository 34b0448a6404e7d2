"""Stopping a child process politely: SIGTERM, a bounded wait, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def stop_process(
    process: subprocess.Popen[Any],
    timeout: float = 5.0,
    *,
    group: bool = False,
    kill_group: bool | None = None,
) -> int | None:
    """SIGTERM ``process``, wait up to ``timeout`` s, then SIGKILL it and wait again.

    ``group`` signals the whole process group the process leads (it was started with
    ``start_new_session=True``), so its children go too. ``kill_group`` overrides that for
    the SIGKILL alone: a leader that tidies up its own children on SIGTERM gets the SIGTERM
    by itself, and the group is only killed if it does not finish. Returns the exit code.
    """
    if process.poll() is None:
        _signal(process, signal.SIGTERM, group)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL, group if kill_group is None else kill_group)
            process.wait(timeout=timeout)
    return process.returncode


def _signal(process: subprocess.Popen[Any], signum: signal.Signals, group: bool) -> None:
    if group:
        with contextlib.suppress(ProcessLookupError):  # it finished in the meantime
            os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
