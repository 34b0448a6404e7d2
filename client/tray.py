"""The laptop tray icon: draws :func:`client.tray_menu.build_menu` with pystray.

The tray knows nothing about the relay: the client hands it a :class:`TrayState` whenever
something changes (:meth:`Tray.update`, safe from any thread) and receives each chosen
:class:`Action` through a callback; :func:`asyncio_action_sink` runs that callback's actions
on the client's event loop through :class:`TrayActions`. pystray must own the main thread
(:meth:`Tray.run` blocks; on macOS this is mandatory), so the client's asyncio loop runs in
another thread.

Backends: pystray's ``xorg`` backend has no menu, so it is refused; on Linux ``appindicator``
is used when its typelib is installed, else ``gtk`` (an XEmbed tray icon). Both need PyGObject:
when the virtualenv lacks it, Debian's ``python3-gi`` is used if it matches this Python.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import structlog

from client.tray_menu import (
    Action,
    MenuEntry,
    TrayActions,
    TrayState,
    build_menu,
    dispatch_action,
)

_log = structlog.get_logger(__name__)

_MENU_BACKENDS = ("appindicator", "gtk", "darwin", "win32")
_DEBIAN_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")


class TrayUnavailable(RuntimeError):
    """No tray can be shown here; the message says what is missing."""


def _make_gi_importable() -> None:
    """Let a virtualenv use Debian's python3-gi when it has no PyGObject of its own.

    Appended to the end of sys.path, so the virtualenv's own packages still win.
    """
    try:
        importlib.import_module("gi")
    except ImportError:
        pass
    else:
        return
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    gi_dir = _DEBIAN_DIST_PACKAGES / "gi"
    if gi_dir.is_dir() and any(gi_dir.glob(f"_gi.{tag}-*.so")):
        sys.path.append(str(_DEBIAN_DIST_PACKAGES))
        _log.info("tray_using_system_gi", path=str(_DEBIAN_DIST_PACKAGES))


def _has_appindicator() -> bool:
    try:
        gi = importlib.import_module("gi")
    except ImportError:
        return False
    for namespace in ("AyatanaAppIndicator3", "AppIndicator3"):
        try:
            gi.require_version(namespace, "0.1")
        except ValueError:
            continue
        return True
    return False


def choose_backend(platform: str = sys.platform, requested: str | None = None) -> str:
    """The pystray backend to use: ``requested`` (or PYSTRAY_BACKEND) if it has a menu."""
    chosen = requested or os.environ.get("PYSTRAY_BACKEND") or None
    if chosen is not None:
        if chosen not in _MENU_BACKENDS:
            raise TrayUnavailable(
                f"pystray backend {chosen!r} has no usable menu; use one of "
                + ", ".join(_MENU_BACKENDS)
            )
        return chosen
    if platform == "darwin":
        return "darwin"
    if platform == "win32":
        return "win32"
    if platform.startswith(("linux", "freebsd")):
        _make_gi_importable()
        return "appindicator" if _has_appindicator() else "gtk"
    raise TrayUnavailable(f"the tray is not supported on {platform}")


def load_pystray(backend: str | None = None) -> Any:
    """Import pystray with a backend that has a menu; TrayUnavailable says what is missing."""
    if importlib.util.find_spec("pystray") is None:
        raise TrayUnavailable(
            "pystray is not installed; the tray needs the desktop extra, btogether[desktop] "
            "(in the source tree: pip install '.[desktop]' or pipx install '.[desktop]')"
        )
    chosen = choose_backend(requested=backend)
    if chosen in ("gtk", "appindicator"):
        _make_gi_importable()
        try:
            glib = importlib.import_module("gi.repository.GLib")
            glib.set_prgname("btogether")  # the tray window's name and class
        except ImportError as exc:
            raise TrayUnavailable(
                "PyGObject is missing: on Debian install python3-gi and gir1.2-gtk-3.0 "
                f"(or pip install PyGObject with its build dependencies): {exc}"
            ) from exc
    # pystray picks its backend from this variable when it is first imported.
    os.environ["PYSTRAY_BACKEND"] = chosen
    try:
        import pystray
    except ImportError as exc:
        hint = " (is DISPLAY set?)" if "initialised" in str(exc) else ""
        raise TrayUnavailable(f"pystray's {chosen} backend cannot start{hint}: {exc}") from exc
    except Exception as exc:  # e.g. Xlib's display errors raise their own types
        raise TrayUnavailable(f"pystray's {chosen} backend cannot start: {exc}") from exc
    return pystray


def icon_image(connected: bool, size: int = 64) -> Any:
    """The tray picture: two linked rings, blue when the relay is reachable, grey when not."""
    from PIL import Image, ImageDraw

    colour = (32, 112, 220, 255) if connected else (130, 130, 130, 255)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    width = max(2, size // 10)
    third = size // 3
    draw.ellipse((2, third - 4, 2 * third + 4, size - third + 4), outline=colour, width=width)
    draw.ellipse((third - 4, third - 4, size - 2, size - third + 4), outline=colour, width=width)
    return image


class _Invoke:
    """A pystray item callback; an object, not a function, so pystray passes (icon, item)."""

    def __init__(self, action: Action | None, on_action: Callable[[Action], None]) -> None:
        self._action = action
        self._on_action = on_action

    def __call__(self, icon: Any, item: Any) -> None:
        if self._action is not None:
            _log.info("tray_action", command=self._action.command, args=self._action.args)
            self._on_action(self._action)


class _Checked:
    def __init__(self, checked: bool) -> None:
        self._checked = checked

    def __call__(self, item: Any) -> bool:
        return self._checked


def to_pystray_menu(
    pystray: Any, entries: list[MenuEntry], on_action: Callable[[Action], None]
) -> Any:
    """The pystray Menu for these rows."""
    items = []
    for entry in entries:
        if entry.separator:
            items.append(pystray.Menu.SEPARATOR)
            continue
        items.append(
            pystray.MenuItem(
                entry.label,
                _Invoke(entry.action, on_action),
                checked=None if entry.checked is None else _Checked(entry.checked),
                enabled=entry.enabled and entry.action is not None,
            )
        )
    return pystray.Menu(*items)


class Tray:
    """The tray icon and its menu; ``run()`` in the main thread, ``update()`` from anywhere."""

    def __init__(
        self,
        on_action: Callable[[Action], None],
        *,
        state: TrayState | None = None,
        title: str = "btogether",
        backend: str | None = None,
    ) -> None:
        self._pystray = load_pystray(backend)
        self._on_action = on_action
        self._lock = threading.Lock()
        self._state = state or TrayState()
        self._entries = build_menu(self._state)
        self._icon = self._pystray.Icon(
            "btogether",
            icon_image(self._state.relay_connected),
            title,
            menu=to_pystray_menu(self._pystray, self._entries, on_action),
        )

    @property
    def entries(self) -> list[MenuEntry]:
        with self._lock:
            return list(self._entries)

    @property
    def icon(self) -> Any:
        """The pystray Icon (for backends' own features; prefer :meth:`update`)."""
        return self._icon

    def update(self, state: TrayState) -> None:
        """Show ``state``; rebuilds the menu only when its rows changed."""
        with self._lock:
            previous, self._state = self._state, state
            entries = build_menu(state)
            if entries == self._entries and previous.relay_connected == state.relay_connected:
                return
            self._entries = entries
        if previous.relay_connected != state.relay_connected:
            self._icon.icon = icon_image(state.relay_connected)
        self._icon.menu = to_pystray_menu(self._pystray, entries, self._on_action)
        _log.debug("tray_menu_updated", rows=len(entries))

    def invoke(self, label: str) -> None:
        """Choose the enabled menu row with this label, as a click would (tests, automation)."""
        for item in self._icon.menu.items:
            if item.text == label:
                if not item.enabled:
                    raise ValueError(f"menu row {label!r} is disabled")
                item(self._icon)
                return
        raise KeyError(label)

    def run(self, setup: Callable[[Tray], None] | None = None) -> None:
        """Show the icon and handle its events until :meth:`stop`; blocks the calling thread."""

        def _setup(icon: Any) -> None:
            icon.visible = True
            _log.info("tray_shown")
            if setup is not None:
                setup(self)

        self._icon.run(_setup)

    def stop(self) -> None:
        self._icon.stop()


def asyncio_action_sink(
    loop: asyncio.AbstractEventLoop, actions: TrayActions
) -> Callable[[Action], None]:
    """A Tray callback that carries actions out on ``loop`` (from the tray's thread)."""

    def sink(action: Action) -> None:
        future = asyncio.run_coroutine_threadsafe(dispatch_action(action, actions), loop)
        future.add_done_callback(_log_failure(action))

    return sink


def _log_failure(action: Action) -> Callable[[Future[None]], None]:
    def done(future: Future[None]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            _log.error("tray_action_failed", command=action.command, error=repr(error))

    return done
