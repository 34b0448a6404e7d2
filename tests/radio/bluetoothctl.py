"""Driving the real ``bluetoothctl`` (Debian's bluez) and ``busctl`` against a simulated host.

bluetoothctl is a plain D-Bus client: pointed at a host's bus with
``DBUS_SYSTEM_BUS_ADDRESS`` it talks to the air as it would to bluetoothd.  It runs
interactively with its commands fed on stdin (it reads a pipe line by line), and its
output is read as it comes, colours and prompts stripped, with every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x01|\x02")
_PROMPT = re.compile(r"^(\[[^\]]+\](# |> ))+")

needs_bluetoothctl = pytest.mark.skipif(
    shutil.which("bluetoothctl") is None, reason="needs bluetoothctl (Debian package bluez)"
)
needs_busctl = pytest.mark.skipif(
    shutil.which("busctl") is None, reason="needs busctl (Debian package systemd)"
)


def clean(text: str) -> list[str]:
    """Output lines without colour codes, carriage-return redraws or prompts."""
    lines = []
    for raw in _ANSI.sub("", text).replace("\r", "\n").split("\n"):
        line = _PROMPT.sub("", raw).strip()
        if line:
            lines.append(line)
    return lines


class Bluetoothctl:
    """One interactive bluetoothctl session on one simulated host's bus."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._raw = ""
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @property
    def lines(self) -> list[str]:
        return clean(self._raw)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while chunk := await self._process.stdout.read(4096):
            self._raw += chunk.decode(errors="replace")
            self._changed.set()

    async def send(self, command: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(command.encode() + b"\n")
        await self._process.stdin.drain()

    async def expect(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """The first output line from line ``start`` on matching ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                match = regex.search(line)
                if match:
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._reader.done():
                raise AssertionError(
                    f"bluetoothctl printed nothing matching {pattern!r} in {timeout} s:\n"
                    + "\n".join(self.lines)
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def run(self, command: str, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Send ``command`` and wait for a line matching ``pattern`` printed after it."""
        start = len(self.lines)
        await self.send(command)
        return await self.expect(pattern, timeout, start)

    async def close(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self.send("quit")
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def bluetoothctl(bus_address: str) -> AsyncIterator[Bluetoothctl]:
    """An interactive bluetoothctl on ``bus_address``, connected to (simulated) bluetoothd."""
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus_address, "TERM": "dumb"}
    process = await asyncio.create_subprocess_exec(
        "bluetoothctl",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    session = Bluetoothctl(process)
    try:
        yield session
    finally:
        await session.close()


def run_bluetoothctl(bus_address: str, *args: str, timeout: float = 15) -> list[str]:
    """A one-shot ``bluetoothctl ARGS`` (non-interactive); its cleaned output lines."""
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus_address, "TERM": "dumb"}
    result = subprocess.run(
        ["bluetoothctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return clean(result.stdout + result.stderr)


def busctl(bus_address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["busctl", f"--address={bus_address}", "--no-pager", *args],
        capture_output=True,
        text=True,
        timeout=15,
    )
