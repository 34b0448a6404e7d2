"""``btogether client tray``: the client daemon and its control socket, with the tray icon.

pystray must own the main thread (:mod:`client.tray.icon`), so the client (the same
:func:`client.cli.commands.serve` as ``client run``, control socket included, so the commands
work alongside the tray) runs on an asyncio loop in a second thread. The tray's menu is
rebuilt from the client's :class:`~client.views.TrayState` twice a second (the menu only
redraws when its rows change), and every menu action is one of the client's commands
(:class:`CommandTrayActions`), carried out on the client's loop. Quitting from the menu,
SIGTERM or SIGINT stops both.

When a client already runs for this state directory (``client run`` as a systemd user
service, say), the tray *attaches* to it instead of starting a second one (which the
relay would take for the same laptop connecting twice): it reads the state with the
``tray_state`` operation of the control socket and sends the same commands through it.
"Quit btogether" then stops that client too (the ``stop`` operation: it exits 0, so its
user unit's Restart=on-failure leaves it stopped) and closes the tray.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import structlog

from client.api import ask
from client.config import ClientConfig, ClientFiles
from client.core import DEFAULT_AD_HOC_MEETING
from client.daemon import ClientDaemon
from client.operations import (
    AudioOff,
    AudioOn,
    Command,
    Confirm,
    Connect,
    GetTrayState,
    Join,
    SetLockSync,
    SetMeeting,
    Stop,
    Unpair,
)
from client.views import TrayState
from hw.control_socket import ControlError, DaemonNotRunning
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
    from client.tray.icon import Tray, TrayUnavailable, asyncio_action_sink, load_pystray

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
        if "daemon" in found:
            with contextlib.suppress(RuntimeError):  # the client's loop has already ended
                found["loop"].call_soon_threadsafe(found["daemon"].stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    def on_daemon(daemon: ClientDaemon) -> None:
        found["daemon"] = daemon
        found["loop"] = asyncio.get_running_loop()
        found["refresher"] = asyncio.ensure_future(_refresh(daemon, trays))
        if stopping.is_set():
            daemon.stop()
        started.set()

    def client_thread() -> None:
        try:
            asyncio.run(
                serve(
                    files,
                    config,
                    credential,
                    lock_watch=lock_watch,
                    on_daemon=on_daemon,
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
    if "daemon" not in found:
        thread.join(1.0)
        print(
            f"{prog}: the client did not start: {failure[0] if failure else 'timeout'}",
            file=sys.stderr,
        )
        return 1
    daemon: ClientDaemon = found["daemon"]
    loop: asyncio.AbstractEventLoop = found["loop"]

    def stop_client() -> None:
        with contextlib.suppress(RuntimeError):  # the client's loop has already ended
            loop.call_soon_threadsafe(daemon.stop)

    def close_trays() -> None:
        for tray in trays:
            tray.stop()

    async def in_process(kind: type[Command[Any]], args: Mapping[str, object]) -> object:
        return await daemon.execute(kind.model_validate(args))

    actions = CommandTrayActions(in_process, lambda: daemon.core.meeting_id, close_trays)
    try:
        tray = Tray(
            asyncio_action_sink(loop, actions),
            state=daemon.tray_state(),
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


async def _refresh(daemon: ClientDaemon, trays: list[Any]) -> None:
    while True:
        for tray in trays:
            try:
                tray.update(daemon.tray_state())
            except Exception:
                _log.exception("tray_update_failed")
        await asyncio.sleep(TRAY_REFRESH_S)


# --- the menu's actions, as the client's commands --------------------------------------------

Run = Callable[[type[Command[Any]], Mapping[str, object]], Awaitable[object]]


class CommandTrayActions:
    """The tray's actions (:class:`client.tray.menu.TrayActions`) as the client's commands.

    ``run`` carries a command out: in this process (the daemon's ``execute``) or in a
    running client (:func:`client.api.ask`); ``meeting`` is the current meeting, for audio;
    ``on_quit`` closes the tray once the client has been told to stop.
    """

    def __init__(
        self, run: Run, meeting: Callable[[], str | None], on_quit: Callable[[], None]
    ) -> None:
        self._run = run
        self._meeting = meeting
        self._on_quit = on_quit

    async def _call(self, kind: type[Command[Any]], **args: object) -> None:
        await self._run(kind, {k: v for k, v in args.items() if v is not None})

    async def join_room(self, room_id: str) -> None:
        await self._call(Join, room=room_id, wait=0)

    async def connect_phone(self, phone_id: str) -> None:
        await self._call(Connect, phone=phone_id)

    async def confirm_pairing(self, phone_id: str) -> None:
        await self._call(Confirm, accept=True)

    async def decline_pairing(self, phone_id: str) -> None:
        await self._call(Confirm, accept=False)

    async def audio_on(self, phone_id: str) -> None:
        meeting = self._meeting() or DEFAULT_AD_HOC_MEETING
        await self._call(AudioOn, phone=phone_id, meeting=meeting, wait=0)

    async def audio_off(self, phone_id: str) -> None:
        await self._call(AudioOff, phone=phone_id, wait=0)

    async def lock_sync(self, enabled: bool) -> None:
        await self._call(SetLockSync, enabled=enabled)

    async def unpair(self, phone_id: str) -> None:
        await self._call(Unpair, phone=phone_id)

    async def set_meeting(self, meeting_id: str | None) -> None:
        await self._call(SetMeeting, meeting=meeting_id)

    async def quit(self) -> None:
        """Stop the client, then close the tray."""
        try:
            await self._call(Stop)
        except (DaemonNotRunning, ControlError) as exc:
            _log.warning("tray_client_not_stopped", error=str(exc))
        self._on_quit()


def remote_actions(
    socket_path: Path, meeting: Callable[[], str | None], on_quit: Callable[[], None]
) -> CommandTrayActions:
    """The tray's actions carried out by a running client over its control socket."""

    async def remote(kind: type[Command[Any]], args: Mapping[str, object]) -> object:
        return await ask(socket_path, kind, args)

    return CommandTrayActions(remote, meeting, on_quit)


# --- attached to a running client ----------------------------------------------------------


async def fetch_tray_state(socket_path: Path) -> TrayState:
    """The running client's tray state; an unreachable client shows as offline."""
    try:
        return await ask(socket_path, GetTrayState, within=5.0)
    except (DaemonNotRunning, ControlError):
        return TrayState(relay_connected=False)


def _run_attached(socket_path: Path, backend: str | None) -> int:
    from client.tray.icon import Tray, asyncio_action_sink

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
    actions = remote_actions(socket_path, lambda: shown[0].meeting_id, quit_tray)
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
