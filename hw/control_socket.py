"""A daemon's local control socket: one JSON request, one JSON reply, per connection.

Both daemons serve one — the laptop's ``client run`` (for its commands and its tray) and
the device's ``beacon run`` (for ``beacon status`` and ``beacon confirm``) — on a unix
socket in their state directory, owner-only (the directory is 0700 and the socket
0600), so only the account that holds the credential reaches it. A request is one line
of JSON::

    {"op": "nearby", "args": {}}

and the reply one line::

    {"ok": true, "result": ...}
    {"ok": false, "error": {"code": "policy_denied", "message": "...", "source": "relay"}}

``source`` says who refused: ``relay`` (``code`` is the wire protocol's error code) or
the daemon itself (e.g. ``relay_unreachable``, ``bad_request``). Requests that wait (a
pairing to complete) simply hold their connection open.

Requests are untrusted: a malformed line gets a ``bad_request`` error, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from hw.unix_socket import socket_answers

_log = structlog.get_logger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_BYTES = 16 * 1024 * 1024
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL

Handler = Callable[[str, dict[str, Any]], Awaitable[object]]


class ControlError(Exception):
    """A request the daemon (or the relay behind it) refused."""

    def __init__(self, code: str, message: str, source: str = "client") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.source = source

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "source": self.source}


class DaemonNotRunning(Exception):
    """Nothing answers on the control socket."""


class AlreadyRunning(Exception):
    """Another daemon already serves this state directory."""


class ControlPathTooLong(ValueError):
    """The socket path does not fit in a unix socket address."""


@dataclass(frozen=True, slots=True)
class Daemon:
    """Who serves a control socket, for messages that name it."""

    name: str = "the btogether client"
    start_with: str = "btogether client run"


CLIENT = Daemon()


def check_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlPathTooLong(
            f"the control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "use a shorter --state-dir"
        )


class ControlServer:
    """Serves ``handler(op, args)`` on a unix socket; a ControlError becomes an error reply."""

    def __init__(self, path: Path, handler: Handler, daemon: Daemon = CLIENT) -> None:
        self.path = path
        self._handler = handler
        self._daemon = daemon
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        check_path(self.path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if await asyncio.to_thread(socket_answers, self.path):
                raise AlreadyRunning(f"{self._daemon.name} is already running ({self.path})")
            self.path.unlink()  # left over from a client that did not stop cleanly
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=os.fspath(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        _log.info("control_socket_listening", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            reply = await self._answer(reader)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await reader.readline()
        except ValueError:  # longer than the stream limit
            return _error("bad_request", f"requests are limited to {MAX_REQUEST_BYTES} bytes")
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error("bad_request", "the request is not a line of JSON")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return _error("bad_request", 'the request must be {"op": "...", "args": {...}}')
        args = request.get("args", {})
        if not isinstance(args, dict):
            return _error("bad_request", "args must be a JSON object")
        op: str = request["op"]
        try:
            result = await self._handler(op, args)
        except ControlError as exc:
            _log.info("control_request_refused", op=op, code=exc.code, source=exc.source)
            return {"ok": False, "error": exc.as_json()}
        except Exception as exc:
            _log.exception("control_request_failed", op=op)
            return _error("internal_error", f"{self._daemon.name} failed: {exc!r}")
        return {"ok": True, "result": result}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message, "source": "client"}}


async def call(
    path: Path,
    op: str,
    args: dict[str, Any] | None = None,
    within: float | None = 30.0,
    daemon: Daemon = CLIENT,
) -> Any:
    """Send one request to the daemon; its result, or ControlError / DaemonNotRunning."""
    check_path(path)
    try:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=MAX_REPLY_BYTES)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonNotRunning(
            f"{daemon.name} is not running (nothing answers on {path}); "
            f"start it with `{daemon.start_with}`"
        ) from exc
    except PermissionError:
        raise DaemonNotRunning(
            f"not allowed to reach {path}: run this as {daemon.name}'s user"
        ) from None
    try:
        writer.write(json.dumps({"op": op, "args": args or {}}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(within):
            line = await reader.readline()
    except TimeoutError:
        raise ControlError("timeout", f"{daemon.name} did not answer {op!r} in time") from None
    except ConnectionError as exc:
        raise DaemonNotRunning(f"{daemon.name} closed the connection: {exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not line:
        raise DaemonNotRunning(f"{daemon.name} closed the connection without answering")
    try:
        reply = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError("bad_reply", f"{daemon.name}'s reply is not JSON: {exc}") from exc
    if not isinstance(reply, dict):
        raise ControlError("bad_reply", f"{daemon.name}'s reply is not a JSON object")
    if reply.get("ok") is True:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        raise ControlError("bad_reply", f"{daemon.name}'s error reply has no error object")
    raise ControlError(
        str(error.get("code", "unknown")),
        str(error.get("message", "")),
        str(error.get("source", "client")),
    )


def call_blocking(
    path: Path,
    op: str,
    args: dict[str, Any] | None = None,
    within: float | None = 30.0,
    daemon: Daemon = CLIENT,
) -> Any:
    """:func:`call` for a command line that is not running an event loop."""
    return asyncio.run(call(path, op, args, within, daemon))
