"""Running the ``btogether`` command as a child process, the way a user would."""

from __future__ import annotations

import asyncio
import sys


def btogether_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "btogether.cli", *args]


async def run_btogether(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b"", timeout: float = 60.0
) -> tuple[int, str, str]:
    """Run ``btogether ARGS`` to completion; returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *btogether_argv(*args),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
