"""``btogether client tray``: the client core and its control socket, with the tray icon.

pystray must own the main thread (:mod:`client.tray`), so the client (the same
:func:`client.commands.serve` as ``client run``, control socket included, so the commands
work alongside the tray) runs on an asyncio loop in a second thread. The tray's menu is
rebuilt from :meth:`client.daemon.ClientCore.tray_state` twice a second (the menu only
redraws when its rows change), and every menu action runs on the client's loop through
:class:`client.daemon.CoreTrayActions`. Quitting from the menu, SIGTERM or SIGINT stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from client.config import ClientConfig, ClientFiles
from client.daemon import ClientCore, CoreTrayActions

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

    started = threading.Event()
    trays: list[Any] = []
    found: dict[str, Any] = {}
    failure: list[BaseException] = []

    def on_core(core: ClientCore) -> None:
        found["core"] = core
        found["loop"] = asyncio.get_running_loop()
        found["refresher"] = asyncio.ensure_future(_refresh(core, trays))
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
    if not thread.is_alive():
        tray.stop()

    def on_signal(signum: int, frame: object) -> None:
        stop_client()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        if thread.is_alive():
            tray.run()
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
