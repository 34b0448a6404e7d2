"""``AdvertisementMonitorManager1`` of one simulated adapter: monitor apps and their calls.

The I/O side of ``src/adv_monitor.c`` (BlueZ 5.66, offered only with ``-E``):
``RegisterMonitor(root)`` starts following the app the way gdbus's client does
(``gdbus/client.c``: a match on its ``InterfacesAdded``/``InterfacesRemoved`` from the
root, then ``GetManagedObjects`` on the root) and is answered once that has been read
(app_ready_cb).  Each ``AdvertisementMonitor1`` object below the root is read
(:func:`hw.sim.monitors.parse_monitor`), activated, or released when unusable; one
that goes away is dropped without a ``Release`` (monitor_proxy_removed_cb).  Matching
reports become ``DeviceFound``/``DeviceLost`` calls (adv_monitor_filter_rssi).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from hw.sim.bus import (
    MONITOR,
    OBJECT_MANAGER,
    already_exists,
    call_bus,
    does_not_exist,
    notify,
)
from hw.sim.monitors import (
    InvalidMonitor,
    MonitoredDevice,
    MonitorSpec,
    content_matches,
    parse_monitor,
)

_log = structlog.get_logger(__name__)


@dataclass
class Monitor:
    path: str
    spec: MonitorSpec
    devices: dict[str, MonitoredDevice] = field(default_factory=dict)


@dataclass
class MonitorApp:
    owner: str
    root: str
    rule: str
    monitors: dict[str, Monitor] = field(default_factory=dict)


class MonitorApps:
    """The monitor apps registered on one adapter."""

    def __init__(self, bus: MessageBus, host: str) -> None:
        self._bus = bus
        self._apps: dict[tuple[str, str], MonitorApp] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = _log.bind(host=host)

    @property
    def listening(self) -> bool:
        """Some monitor is active: the kernel keeps a passive scan running for it."""
        return any(app.monitors for app in self._apps.values())

    def register(self, msg: Message, owner: str, root: str) -> None:
        """register_monitor; the reply is sent once the app's objects were read."""
        if (owner, root) in self._apps:
            error = already_exists()
            self._bus.send(Message.new_error(msg, error.name, error.text))
            return
        rule = f"type='signal',sender='{owner}',path='{root}',interface='{OBJECT_MANAGER}'"
        app = MonitorApp(owner, root, rule)
        self._apps[(owner, root)] = app
        self._spawn(self._start(msg, app))

    async def _start(self, msg: Message, app: MonitorApp) -> None:
        await call_bus(self._bus, "AddMatch", "s", [app.rule])
        reply = await self._bus.call(
            Message(
                destination=app.owner,
                path=app.root,
                interface=OBJECT_MANAGER,
                member="GetManagedObjects",
            )
        )
        if self._apps.get((app.owner, app.root)) is not app:
            return
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
            for path, interfaces in reply.body[0].items():
                if MONITOR in interfaces:
                    self._added(app, path, interfaces[MONITOR])
        self._log.info("monitor_app_registered", client=app.owner, root=app.root)
        self._bus.send(Message.new_method_return(msg))

    def unregister(self, owner: str, root: str) -> None:
        """unregister_monitor: every monitor of the app gets Release() (app_destroy)."""
        app = self._apps.pop((owner, root), None)
        if app is None:
            raise does_not_exist()
        for monitor in app.monitors.values():
            notify(self._bus, app.owner, monitor.path, MONITOR, "Release")
        self._forget(app)

    def owner_left(self, owner: str) -> None:
        """app_disconnect_cb: monitors marked released, so no Release() calls."""
        for key in [k for k in self._apps if k[0] == owner]:
            self._forget(self._apps.pop(key))

    def on_signal(self, msg: Message) -> None:
        """InterfacesAdded/InterfacesRemoved from an app's root (the gdbus client's match)."""
        for app in list(self._apps.values()):
            if msg.sender != app.owner or msg.path != app.root:
                continue
            path = msg.body[0]
            if msg.member == "InterfacesAdded" and MONITOR in msg.body[1]:
                self._added(app, path, msg.body[1][MONITOR])
            elif (
                msg.member == "InterfacesRemoved"
                and MONITOR in msg.body[1]
                and app.monitors.pop(path, None) is not None
            ):
                self._log.info("monitor_removed", client=app.owner, path=path)

    def _added(self, app: MonitorApp, path: str, props: Mapping[str, Any]) -> None:
        """monitor_proxy_added_cb: a monitor under the root is activated, or released."""
        if not path.startswith(app.root) or path in app.monitors:
            return
        try:
            spec = parse_monitor(props)
        except InvalidMonitor as exc:
            self._log.info("monitor_refused", client=app.owner, path=path, reason=str(exc))
            notify(self._bus, app.owner, path, MONITOR, "Release")
            return
        app.monitors[path] = Monitor(path, spec)
        self._log.info("monitor_activated", client=app.owner, path=path)
        notify(self._bus, app.owner, path, MONITOR, "Activate")

    def matching(self, structures: Iterable[tuple[int, bytes]]) -> list[tuple[MonitorApp, Monitor]]:
        """btd_adv_monitor_content_filter: the monitors whose patterns match a report."""
        ads = list(structures)
        return [
            (app, monitor)
            for app in self._apps.values()
            for monitor in app.monitors.values()
            if content_matches(ads, monitor.spec.patterns)
        ]

    def notify_found(
        self, matched: list[tuple[MonitorApp, Monitor]], device: str, rssi: int, now: float
    ) -> None:
        """btd_adv_monitor_notify_monitors: without RSSI parameters every match is found."""
        for app, monitor in matched:
            if monitor.spec.rssi is None:
                notify(self._bus, app.owner, monitor.path, MONITOR, "DeviceFound", device)
                continue
            state = monitor.devices.get(device)
            if state is None:
                state = monitor.devices[device] = MonitoredDevice(monitor.spec.rssi)
            action = state.heard(rssi, now)
            if action == "found":
                notify(self._bus, app.owner, monitor.path, MONITOR, "DeviceFound", device)
            elif action == "lost":
                notify(self._bus, app.owner, monitor.path, MONITOR, "DeviceLost", device)

    def forget_device(self, device: str) -> None:
        """btd_adv_monitor_device_remove: no DeviceLost, the timers just go."""
        for app in self._apps.values():
            for monitor in app.monitors.values():
                monitor.devices.pop(device, None)

    def fire_lost_timers(self, now: float, *, all_running: bool = False) -> None:
        """handle_device_lost_timeout for timers due at ``now`` (all of them on power down)."""
        for app in self._apps.values():
            for monitor in app.monitors.values():
                for device, state in monitor.devices.items():
                    deadline = state.lost_deadline()
                    if deadline is not None and (all_running or deadline <= now):
                        state.lost_timer_fired()
                        notify(self._bus, app.owner, monitor.path, MONITOR, "DeviceLost", device)

    def _forget(self, app: MonitorApp) -> None:
        app.monitors.clear()
        self._spawn(call_bus(self._bus, "RemoveMatch", "s", [app.rule]))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
