"""``btogether client tray``: the client core and its control socket, with the tray icon.

pystray must own the main thread (:mod:`client.tray`), so the client (the same
:func:`client.commands.serve` as ``client run``, control socket included, so the commands
work alongside the tray) runs on an asyncio loop in a second thread. The tray's menu is
rebuilt from :meth:`client.daemon.ClientCore.tray_state` twice a second (the menu only
redraws when its rows change), and every menu action runs on the client's loop through
:class:`client.daemon.CoreTrayActions`. Quitting from the menu, SIGTERM or SIGINT stops both.

When a client already runs for this state directory (``client run`` as a systemd user
service, say), the tray *attaches* to it instead of starting a second one (which the
relay would take for the same laptop connecting twice): it reads the state with the
``tray_state`` operation of the control socket and carries out actions through it
(:class:`RemoteTrayActions`). "Quit btogether" then stops that client too (the ``stop``
operation: it exits 0, so its user unit's Restart=on-failure leaves it stopped) and
closes the tray.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from client.config import ClientConfig, ClientFiles
from client.daemon import DEFAULT_AD_HOC_MEETING, ClientCore, CoreTrayActions
from client.tray_menu import (
    JoinOutcome,
    NearbyPhone,
    NearbyRoom,
    PairedPhone,
    PairingCode,
    PendingPairing,
    TrayState,
)
from hw.control_socket import ControlError, DaemonNotRunning, call
from hw.unix_socket import socket_answers

_log = structlog.get_logger(__name__)
TRAY_REFRESH_S = 0.5
START_TIMEOUT_S = 15.0
EXIT_USAGE = 2

Serve = Callable[..., Coroutine[Any, Any, None]]


def run_tray(
    files: ClientFiles,
    config: ClientConfig,
    credential: str,
    *,
    lock_watch: bool,
    backend: str | None,
    serve: Serve,
) -> int:
    from client.tray import Tray, TrayUnavailable, asyncio_action_sink, load_pystray

    prog = "btogether client tray"
    try:
        load_pystray(backend)
    except TrayUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if socket_answers(files.socket_path):
        return _run_attached(files.socket_path, backend)

    started = threading.Event()
    trays: list[Any] = []
    found: dict[str, Any] = {}
    failure: list[BaseException] = []
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        # Installed before anything starts: a SIGTERM that comes early is not lost.
        stopping.set()
        if "core" in found:
            with contextlib.suppress(RuntimeError):  # the client's loop has already ended
                found["loop"].call_soon_threadsafe(found["core"].stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    def on_core(core: ClientCore) -> None:
        found["core"] = core
        found["loop"] = asyncio.get_running_loop()
        found["refresher"] = asyncio.ensure_future(_refresh(core, trays))
        if stopping.is_set():
            core.stop()
        started.set()

    def client_thread() -> None:
        try:
            asyncio.run(
                serve(
                    files,
                    config,
                    credential,
                    lock_watch=lock_watch,
                    on_core=on_core,
                    handle_signals=False,
                )
            )
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            started.set()
            for tray in trays:
                with contextlib.suppress(Exception):
                    tray.stop()

    thread = threading.Thread(target=client_thread, name="btogether-client", daemon=True)
    thread.start()
    started.wait(START_TIMEOUT_S)
    if "core" not in found:
        thread.join(1.0)
        print(
            f"{prog}: the client did not start: {failure[0] if failure else 'timeout'}",
            file=sys.stderr,
        )
        return 1
    core: ClientCore = found["core"]
    loop: asyncio.AbstractEventLoop = found["loop"]

    def stop_client() -> None:
        with contextlib.suppress(RuntimeError):  # the client's loop has already ended
            loop.call_soon_threadsafe(core.stop)

    def quit_all() -> None:
        core.stop()  # runs on the client's loop (a tray action)
        for tray in trays:
            tray.stop()

    try:
        tray = Tray(
            asyncio_action_sink(loop, CoreTrayActions(core, quit_all)),
            state=core.tray_state(),
            backend=backend,
        )
    except TrayUnavailable as exc:
        stop_client()
        thread.join(10.0)
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    trays.append(tray)

    def stop_if_done(shown: Any) -> None:
        # The client may have ended (a signal, a crash) while the tray was starting.
        if not thread.is_alive():
            shown.stop()

    try:
        if thread.is_alive():
            tray.run(stop_if_done)
    finally:
        stop_client()
        thread.join(10.0)
    if failure:
        print(f"{prog}: {failure[0]}", file=sys.stderr)
        return 1
    return 0


async def _refresh(core: ClientCore, trays: list[Any]) -> None:
    while True:
        for tray in trays:
            try:
                tray.update(core.tray_state())
            except Exception:
                _log.exception("tray_update_failed")
        await asyncio.sleep(TRAY_REFRESH_S)


# --- attached to a running client ----------------------------------------------------------


def tray_state_from_json(data: Any) -> TrayState:
    """The TrayState the ``tray_state`` operation sent (as ``dataclasses.asdict`` made it)."""
    pending = data.get("pending")
    code = data.get("pairing_code")
    join = data.get("last_join")
    return TrayState(
        relay_connected=bool(data["relay_connected"]),
        rooms=tuple(NearbyRoom(**room) for room in data["rooms"]),
        phones=tuple(NearbyPhone(**phone) for phone in data["phones"]),
        paired=tuple(PairedPhone(**phone) for phone in data["paired"]),
        pending=PendingPairing(**pending) if pending else None,
        lock_sync=bool(data["lock_sync"]),
        audio_phone_id=data.get("audio_phone_id"),
        meeting_id=data.get("meeting_id"),
        pairing_code=PairingCode(**code) if code else None,
        last_join=JoinOutcome(**join) if join else None,
    )


async def fetch_tray_state(socket_path: Path) -> TrayState:
    """The running client's tray state; an unreachable client shows as offline."""
    try:
        return tray_state_from_json(await call(socket_path, "tray_state", within=5.0))
    except (DaemonNotRunning, ControlError, KeyError, TypeError, AttributeError):
        return TrayState(relay_connected=False)


class RemoteTrayActions:
    """The tray's actions carried out by a running client over its control socket."""

    def __init__(
        self,
        socket_path: Path,
        meeting: Callable[[], str | None],
        on_quit: Callable[[], None],
    ) -> None:
        self._path = socket_path
        self._meeting = meeting
        self._on_quit = on_quit

    async def _call(self, op: str, **args: Any) -> None:
        await call(self._path, op, {k: v for k, v in args.items() if v is not None})

    async def join_room(self, room_id: str) -> None:
        await self._call("join", room=room_id, wait=0)

    async def connect_phone(self, phone_id: str) -> None:
        await self._call("connect", phone=phone_id)

    async def confirm_pairing(self, phone_id: str) -> None:
        await self._call("confirm", accept=True)

    async def decline_pairing(self, phone_id: str) -> None:
        await self._call("confirm", accept=False)

    async def audio_on(self, phone_id: str) -> None:
        meeting = self._meeting() or DEFAULT_AD_HOC_MEETING
        await self._call("audio_on", phone=phone_id, meeting=meeting, wait=0)

    async def audio_off(self, phone_id: str) -> None:
        await self._call("audio_off", phone=phone_id, wait=0)

    async def lock_sync(self, enabled: bool) -> None:
        await self._call("lock_sync", enabled=enabled)

    async def unpair(self, phone_id: str) -> None:
        await self._call("unpair", phone=phone_id)

    async def set_meeting(self, meeting_id: str | None) -> None:
        await self._call("meeting", meeting=meeting_id)

    async def quit(self) -> None:
        """Stop the client this tray is attached to, then close the tray."""
        try:
            await self._call("stop")
        except (DaemonNotRunning, ControlError) as exc:
            _log.warning("tray_client_not_stopped", error=str(exc))
        self._on_quit()


def _run_attached(socket_path: Path, backend: str | None) -> int:
    from client.tray import Tray, asyncio_action_sink

    _log.info("tray_attached", socket=str(socket_path))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="btogether-tray-io", daemon=True)
    thread.start()
    shown: list[TrayState] = [TrayState()]
    trays: list[Any] = []

    def quit_tray() -> None:
        for tray in trays:
            tray.stop()

    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()
        quit_tray()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    actions = RemoteTrayActions(socket_path, lambda: shown[0].meeting_id, quit_tray)
    tray = Tray(asyncio_action_sink(loop, actions), backend=backend)
    trays.append(tray)

    async def refresh() -> None:
        while True:
            shown[0] = await fetch_tray_state(socket_path)
            tray.update(shown[0])
            await asyncio.sleep(TRAY_REFRESH_S)

    refresher = asyncio.run_coroutine_threadsafe(refresh(), loop)

    def stop_if_asked(shown: Any) -> None:
        if stopping.is_set():  # a signal that came while the tray was starting
            shown.stop()

    try:
        tray.run(stop_if_asked)
    finally:
        refresher.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
    return 0
