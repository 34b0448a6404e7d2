"""The daemon's local control socket: ``beacon status`` and ``beacon confirm`` talk to it.

A Unix socket in the state directory, owner-only (the state directory is 0700 too), so
only the device's own account — the one that holds its credential — can confirm a pair
request.  One JSON object per line each way: a request ``{"op": "status"}`` or
``{"op": "confirm", "id": ID|null, "accept": bool}``, and one reply ``{"ok": true, …}``
or ``{"ok": false, "error": "…"}``; then the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from hw.unix_socket import socket_answers

CONTROL_SOCKET = "control.sock"
MAX_REQUEST_BYTES = 4096
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL
_log = structlog.get_logger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(RuntimeError):
    """The control socket cannot be served or reached; the message says why."""


class ControlPathTooLong(ControlError):
    """The socket path does not fit in a Unix socket address."""


def control_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_SOCKET


def _check_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlPathTooLong(
            f"the control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "use a shorter --state-dir"
        )


class ControlServer:
    """Serves the control socket; ``handler`` answers each request dict."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        _check_length(self.path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if socket_answers(self.path):
                raise ControlError(f"another beacon daemon is running ({self.path} answers)")
            self.path.unlink()  # left behind by a daemon that died
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is None:
            return  # never started: the path may belong to another daemon
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
            reply = await self._answer(line)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError) as exc:
            _log.info("control_request_dropped", error=str(exc)[:200])
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "the request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": "the request needs an op"}
        try:
            return await self._handler(request)
        except Exception as exc:  # a bad request must not take the daemon down
            _log.exception("control_request_failed", op=request.get("op"))
            return {"ok": False, "error": f"internal error: {exc}"}


def control_request(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its reply (blocking)."""
    _check_length(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"no beacon daemon is running here ({path} does not answer); "
                "start it with `btogether beacon run`"
            ) from None
        except PermissionError:
            raise ControlError(
                f"not allowed to reach {path}: run as the daemon's user"
            ) from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError("the daemon sent an unreadable reply") from None
    if not isinstance(reply, dict):
        raise ControlError("the daemon sent an unreadable reply")
    return reply
