"""The EID worker: a child process that computes batches of EIDs for the relay's index.

``python -m relay.domain.eid_worker`` reads requests on stdin and answers on stdout, in order,
as flat binary frames, so that the relay's side is nothing but its event loop reading a
pipe: no helper thread in the relay holds the GIL (a process pool's feeder and manager
threads do, and one preempted while holding it stalls the loop), nothing is pickled.

A request is ``<IBB`` (devices n, rotation exponent k, windows w), then w window starts
as ``<I``, then n identity keys of 16 bytes. The answer is, per window in order, the n
EIDs of 8 bytes. The worker lowers its own priority: precomputing must never take the
CPU from answering requests.

:class:`ProcessWorker` is the relay's end of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO, Protocol

from relay.protocol.eid import EID_LEN, IDENTITY_KEY_LEN, eids_of_keys

_HEADER = struct.Struct("<IBB")
_WINDOW = struct.Struct("<I")
NICENESS = 10


class EidWorker(Protocol):
    """Computes ``eids_of_keys`` somewhere other than the event loop."""

    async def compute(self, keys: bytes, k: int, windows: Sequence[int]) -> list[bytes]: ...

    async def close(self) -> None: ...


class WorkerFailed(Exception):
    """The worker process is gone or answered nonsense."""


def encode_request(keys: bytes, k: int, windows: Sequence[int]) -> bytes:
    count = len(keys) // IDENTITY_KEY_LEN
    parts = [_HEADER.pack(count, k, len(windows))]
    parts += [_WINDOW.pack(w) for w in windows]
    parts.append(keys)
    return b"".join(parts)


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until the input ends (the relay closed the pipe or went away)."""
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        count, k, window_count = _HEADER.unpack(header)
        raw_windows = requests.read(_WINDOW.size * window_count)
        keys = requests.read(IDENTITY_KEY_LEN * count)
        if len(raw_windows) < _WINDOW.size * window_count or len(keys) < IDENTITY_KEY_LEN * count:
            return
        windows = [w for (w,) in _WINDOW.iter_unpack(raw_windows)]
        for blob in eids_of_keys(keys, k, windows):
            answers.write(blob)
        answers.flush()


class ProcessWorker:
    """The relay's end: starts ``python -m relay.domain.eid_worker`` on first use; requests may
    overlap (answers come back in order, each caller reads its own in turn)."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = list(command or [sys.executable, "-m", "relay.domain.eid_worker"])
        self._process: asyncio.subprocess.Process | None = None
        self._last_read: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()
        self._discarded: list[asyncio.subprocess.Process] = []  # killed, to be reaped

    async def compute(self, keys: bytes, k: int, windows: Sequence[int]) -> list[bytes]:
        process = await self._started()
        assert process.stdin is not None and process.stdout is not None
        size = len(keys) // IDENTITY_KEY_LEN * EID_LEN
        previous, mine = self._last_read, asyncio.get_running_loop().create_future()
        self._last_read = mine
        try:
            process.stdin.write(encode_request(keys, k, windows))
            await process.stdin.drain()
            if previous is not None:
                await asyncio.wait([previous])  # the answers before ours come first
            blob = await process.stdout.readexactly(size * len(windows))
        except asyncio.CancelledError:
            self._discard(process)  # its answer would be read as the next caller's
            raise
        except (asyncio.IncompleteReadError, ConnectionError, RuntimeError) as exc:
            self._discard(process)
            raise WorkerFailed(f"the EID worker stopped: {exc!r}") from None
        finally:
            mine.set_result(None)
        return [blob[i * size : (i + 1) * size] for i in range(len(windows))]

    async def _started(self) -> asyncio.subprocess.Process:
        async with self._starting:
            if self._process is None:
                self._process = await asyncio.create_subprocess_exec(
                    *self._command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            return self._process

    def _discard(self, process: asyncio.subprocess.Process) -> None:
        """Kill a worker whose pipe is out of step; the next call starts a new one."""
        if self._process is process:
            self._process = None
            self._discarded.append(process)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    async def close(self) -> None:
        if self._process is not None:
            self._discard(self._process)
        for process in self._discarded:
            if process.stdin is not None:
                process.stdin.close()
            await process.wait()
        self._discarded.clear()


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
