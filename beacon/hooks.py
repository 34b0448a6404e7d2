"""Hook commands: what an appliance maker wires to the daemon's events (show a screen, beep).

Each hook is a command line from the configuration, split into words with ``shlex`` and
run without a shell, with the event's details in ``BTOGETHER_*`` environment variables
(``BTOGETHER_EVENT=on_lock``, ``BTOGETHER_SEQ=3``, ``BTOGETHER_MEETING_ID=…``).  A hook
runs in the background and is killed when it outlives its time limit; a hook that is
missing, fails or times out is logged and never stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from beacon.config import HookSettings

_log = structlog.get_logger(__name__)
_OUTPUT_LIMIT = 400


def hook_environment(
    base: Mapping[str, str], hook: str, details: Mapping[str, str]
) -> dict[str, str]:
    """The hook's environment: the daemon's own, plus ``BTOGETHER_EVENT`` and the details."""
    env = dict(base)
    env["BTOGETHER_EVENT"] = hook
    for key, value in details.items():
        env["BTOGETHER_" + key.upper()] = value
    return env


@dataclass(frozen=True, slots=True)
class HookOutcome:
    hook: str
    returncode: int | None  # None: it could not start, or was killed at the time limit
    timed_out: bool = False
    error: str = ""


class HookRunner:
    """Runs the configured hooks in the background; :meth:`drain` waits for them."""

    def __init__(self, settings: HookSettings, base_env: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._running: set[asyncio.Task[HookOutcome]] = set()

    def fire(self, hook: str, details: Mapping[str, str]) -> asyncio.Task[HookOutcome] | None:
        """Start the hook if one is configured for this event; don't wait for it."""
        argv = self._settings.command(hook)
        if argv is None:
            return None
        task = asyncio.create_task(self.run(hook, argv, details), name=f"hook-{hook}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def run(self, hook: str, argv: list[str], details: Mapping[str, str]) -> HookOutcome:
        env = hook_environment(self._base_env, hook, details)
        log = _log.bind(hook=hook, command=argv[0])
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group, so a timeout kills its children too
            )
        except OSError as exc:
            log.error("hook_not_started", error=str(exc))
            return HookOutcome(hook, None, error=str(exc))
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                out, err = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            log.error("hook_timed_out", timeout_s=self._settings.timeout_s)
            return HookOutcome(hook, None, timed_out=True, error="timed out")
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        code = process.returncode
        if code != 0:
            log.error(
                "hook_failed",
                returncode=code,
                stderr=err.decode(errors="replace")[-_OUTPUT_LIMIT:],
            )
            return HookOutcome(hook, code, error=f"exit code {code}")
        log.info("hook_ran", stdout=out.decode(errors="replace")[-_OUTPUT_LIMIT:])
        return HookOutcome(hook, code)

    async def drain(self, within: float) -> None:
        """Wait for running hooks (at most ``within`` s), then cancel what is left."""
        if not self._running:
            return
        _done, pending = await asyncio.wait(set(self._running), timeout=within)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
