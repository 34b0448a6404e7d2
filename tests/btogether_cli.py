"""Running the ``btogether`` command as a child process, the way a user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hw.process import stop_process


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


@contextmanager
def relay_serve_process(db: Path, workdir: Path) -> Iterator[str]:
    """``btogether relay serve`` on a free loopback port over ``db``, as a process (no
    BTOGETHER_* settings from this environment); yields its URL and stops it (SIGTERM,
    exit 0) on the way out."""
    port_file = workdir / "relay-port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTOGETHER_")}
    relay = subprocess.Popen(
        [*btogether_argv("relay", "serve", "--port", "0", "--db", str(db)),
         "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert relay.poll() is None, "the relay exited while starting"
            assert time.monotonic() < deadline, "the relay did not start within 20 s"
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{port_file.read_text().strip()}/"
    finally:
        assert stop_process(relay) == 0
