"""The laptop tray icon: draws :func:`client.tray.menu.build_menu` with pystray.

The tray knows nothing about the relay: the client hands it a :class:`TrayState` whenever
something changes (:meth:`Tray.update`, safe from any thread) and receives each chosen
:class:`Action` through a callback; :func:`asyncio_action_sink` runs that callback's actions
on the client's event loop through :class:`TrayActions`. pystray must own the main thread
(:meth:`Tray.run` blocks; on macOS this is mandatory), so the client's asyncio loop runs in
another thread.

Backends: pystray's ``xorg`` backend has no menu, so it is refused; on Linux ``appindicator``
is used when its typelib is installed and a session bus is there, else ``gtk`` (an XEmbed
tray icon). Both need PyGObject: when the virtualenv lacks it, Debian's ``python3-gi`` is
used if it matches this Python.

Notifications (a pairing code to compare, a room's answer to a join: :func:`notices`) go to
the desktop's notification service. With the GTK backends they go through
:class:`SessionNotifier`, which replaces pystray's own: pystray's needs a session bus at
start-up (without one GLib tries to launch one and fails with a traceback) and blocks or
fails when no notification daemon answers. Ours says once, in one line, that
notifications are off and why, and the tray carries on: the menu shows the same.

"Set meeting…" asks for the meeting in a small GTK dialog (:func:`ask_text_gtk`), shown by
the GTK main loop whichever thread chose the row.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import structlog

from client.tray.menu import (
    Action,
    MenuEntry,
    Notice,
    TrayActions,
    build_menu,
    dispatch_action,
    notices,
)
from client.views import TrayState

_log = structlog.get_logger(__name__)

_MENU_BACKENDS = ("appindicator", "gtk", "darwin", "win32")
_GTK_BACKENDS = ("appindicator", "gtk")
_DEBIAN_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
NOTIFY_TIMEOUT_MS = 2000
MEETING_DIALOG_TITLE = "btogether: set the meeting"

# Report a problem to the user (one line); ask for a text and hand the answer (None:
# cancelled) to a callback.
Report = Callable[[str], None]
AskText = Callable[[str, str, str, Callable[[str | None], None]], None]


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


def session_bus_problem(environ: Mapping[str, str]) -> str | None:
    """Why there is no D-Bus session bus to talk to, or None if there seems to be one.

    GLib would otherwise try to start one (dbus-launch) and fail with a traceback.
    """
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "bus").exists():
        return None
    return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"


def choose_backend(
    platform: str = sys.platform,
    requested: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The pystray backend to use: ``requested`` (or PYSTRAY_BACKEND) if it has a menu.

    Without a session bus the AppIndicator backend cannot register its icon, so the
    XEmbed (``gtk``) one is used.
    """
    environ = os.environ if environ is None else environ
    chosen = requested or environ.get("PYSTRAY_BACKEND") or None
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
        usable = _has_appindicator() and session_bus_problem(environ) is None
        return "appindicator" if usable else "gtk"
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


def backend_of(pystray: Any) -> str:
    """The backend pystray was imported with (its Icon class's module)."""
    return str(pystray.Icon.__module__).rsplit("._", 1)[-1]


class SessionNotifier:
    """pystray's GTK ``Notifier`` (``notify``, ``hide``) over the freedesktop notification
    service, that never blocks and never raises: a missing session bus or notification
    daemon is reported once through ``report`` and notifications are then skipped.

    Calls never start a service (D-Bus activation would block for its timeout) and wait at
    most NOTIFY_TIMEOUT_MS.
    """

    def __init__(self, report: Report, environ: Mapping[str, str] | None = None) -> None:
        self._report = report
        self._reported = False
        self._proxy: Any = None
        self._nid = 0
        problem = session_bus_problem(os.environ if environ is None else environ)
        if problem is not None:
            self._off(problem)
            return
        gio = importlib.import_module("gi.repository.Gio")
        glib = importlib.import_module("gi.repository.GLib")
        try:
            connection = gio.bus_get_sync(gio.BusType.SESSION, None)
            self._proxy = gio.DBusProxy.new_sync(
                connection,
                gio.DBusProxyFlags.DO_NOT_AUTO_START | gio.DBusProxyFlags.DO_NOT_LOAD_PROPERTIES,
                None,
                NOTIFICATIONS_NAME,
                NOTIFICATIONS_PATH,
                NOTIFICATIONS_NAME,
                None,
            )
        except glib.Error as exc:
            self._off(f"the D-Bus session bus cannot be reached ({exc.message})")

    def _off(self, why: str) -> None:
        self._proxy = None
        if not self._reported:
            self._reported = True
            self._report(
                f"notifications are off: {why}; pairing codes and join results show in the "
                "menu only"
            )

    def _call(self, method: str, signature: str, args: tuple[Any, ...]) -> Any:
        gio = importlib.import_module("gi.repository.Gio")
        glib = importlib.import_module("gi.repository.GLib")
        if self._proxy.get_name_owner() is None:
            self._off(f"no notification service ({NOTIFICATIONS_NAME}) on the session bus")
            return None
        try:
            return self._proxy.call_sync(
                method,
                glib.Variant(signature, args),
                gio.DBusCallFlags.NO_AUTO_START,
                NOTIFY_TIMEOUT_MS,
                None,
            )
        except glib.Error as exc:
            self._off(f"the notification service did not answer ({exc.message})")
            return None

    def notify(self, title: str, message: str, icon: str | None) -> None:
        if self._proxy is None:
            return
        reply = self._call(
            "Notify",
            "(susssasa{sv}i)",
            ("btogether", self._nid, icon or "", title, message, [], {}, -1),
        )
        if reply is not None:
            self._nid = int(reply.unpack()[0])
            _log.info("tray_notified", title=title)

    def hide(self) -> None:
        if self._proxy is not None and self._nid:
            self._call("CloseNotification", "(u)", (self._nid,))
        self._nid = 0


def ask_text_gtk(title: str, prompt: str, initial: str, done: Callable[[str | None], None]) -> None:
    """Ask for a line of text in a GTK dialog on the GTK main loop, without blocking it
    (no nested loop: the tray can still quit while the dialog is open); ``done`` gets the
    text (stripped; None if cancelled or left empty)."""
    glib = importlib.import_module("gi.repository.GLib")

    def show() -> bool:
        gtk = importlib.import_module("gi.repository.Gtk")
        dialog = gtk.Dialog(title=title)
        dialog.add_buttons("Cancel", gtk.ResponseType.CANCEL, "Set", gtk.ResponseType.OK)
        dialog.set_default_response(gtk.ResponseType.OK)
        entry = gtk.Entry()
        entry.set_text(initial)
        entry.set_activates_default(True)
        entry.set_width_chars(48)
        box = dialog.get_content_area()
        box.add(gtk.Label(label=prompt))
        box.add(entry)

        def answered(widget: Any, response: int) -> None:
            text = entry.get_text().strip()
            widget.destroy()
            done(text if response == gtk.ResponseType.OK and text else None)

        dialog.connect("response", answered)
        dialog.show_all()
        dialog.present()
        return False  # once

    glib.idle_add(show)


def _print_problem(message: str) -> None:
    print(f"btogether client tray: {message}", file=sys.stderr, flush=True)


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
    """The tray icon and its menu; ``run()`` in the main thread, ``update()`` from anywhere.

    ``report`` is told, once each, what does not work here (no notifications); ``ask_text``
    asks for the meeting (default: a GTK dialog with the GTK backends, else none, and the
    menu row then says which command sets it).
    """

    def __init__(
        self,
        on_action: Callable[[Action], None],
        *,
        state: TrayState | None = None,
        title: str = "btogether",
        backend: str | None = None,
        report: Report = _print_problem,
        ask_text: AskText | None = None,
    ) -> None:
        self._pystray = load_pystray(backend)
        self._report = report
        gtk = backend_of(self._pystray) in _GTK_BACKENDS
        if gtk:
            # pystray's GTK icons make their Notifier when they start: make it ours.
            notify_dbus: Any = importlib.import_module("pystray._util.notify_dbus")
            notify_dbus.Notifier = lambda: SessionNotifier(report)
        self._ask_text = ask_text if ask_text is not None else (ask_text_gtk if gtk else None)
        self._on_action = on_action
        self._lock = threading.Lock()
        self._state = state or TrayState()
        self._entries = build_menu(self._state)
        self._icon = self._pystray.Icon(
            "btogether",
            icon_image(self._state.relay_connected),
            title,
            menu=to_pystray_menu(self._pystray, self._entries, self._chosen),
        )

    @property
    def entries(self) -> list[MenuEntry]:
        with self._lock:
            return list(self._entries)

    @property
    def icon(self) -> Any:
        """The pystray Icon (for backends' own features; prefer :meth:`update`)."""
        return self._icon

    def _chosen(self, action: Action) -> None:
        """A row was chosen: the meeting is asked for first, everything else goes on."""
        if action.command != "set_meeting" or action.args:
            self._on_action(action)
            return
        if self._ask_text is None:
            self.notify(Notice("Set the meeting", "Use: btogether client meeting ID"))
            return

        def answered(text: str | None) -> None:
            if text is not None:
                self._on_action(Action("set_meeting", (text,)))

        with self._lock:
            current = self._state.meeting_id or ""
        self._ask_text(
            MEETING_DIALOG_TITLE,
            "The meeting to add rooms to and to use the phone's audio for (an id or a link):",
            current,
            answered,
        )

    def update(self, state: TrayState) -> None:
        """Show ``state``; rebuilds the menu only when its rows changed, and notifies what
        deserves it (:func:`client.tray.menu.notices`)."""
        with self._lock:
            previous, self._state = self._state, state
            entries = build_menu(state)
            changed = entries != self._entries or previous.relay_connected != state.relay_connected
            self._entries = entries
        for notice in notices(previous, state):
            self.notify(notice)
        if not changed:
            return
        if previous.relay_connected != state.relay_connected:
            self._icon.icon = icon_image(state.relay_connected)
        self._icon.menu = to_pystray_menu(self._pystray, entries, self._chosen)
        _log.debug("tray_menu_updated", rows=len(entries))

    def notify(self, notice: Notice) -> None:
        """Show a desktop notification, if this desktop can (see :class:`SessionNotifier`)."""
        try:
            self._icon.notify(notice.message, notice.title)
        except Exception as exc:  # a backend without notifications: say so once, go on
            _log.warning("tray_notify_failed", error=repr(exc))

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
