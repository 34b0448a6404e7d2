"""One simulated host's ``org.bluez``: bluetoothd 5.66 as its D-Bus clients see it.

The I/O shell around the pure rules in :mod:`hw.sim.discovery` (sessions and filters),
:mod:`hw.sim.reporting` (what a device signals), :mod:`hw.sim.adverts` (a client's
advertisement) and :mod:`hw.sim.monitors` (advertisement monitors), answered over a
real (private) D-Bus connection with low-level handlers, so each caller's unique name
is known the way bluetoothd knows it: discovery sessions, filters, adverts, monitor
apps and agents are per caller and go away when the caller leaves the bus.  What is
heard comes in through :meth:`HostBluez.receive`, from the air (:mod:`hw.sim.air`).

Out of scope, answered the way bluetoothd answers when it cannot do it: connecting
and pairing (``Device1.Connect`` fails with "le-connection-abort-by-local", ``Pair``
with ConnectionAttemptFailed "Page Timeout"), profiles and GATT applications (accepted
and kept, never used).  Every object answers ``Introspect`` (:mod:`hw.sim.introspection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from hw.sim import introspection
from hw.sim.adverts import (
    LEGACY_ADV_MAX,
    Advertisement,
    InvalidAdvertisement,
    Layout,
    ad_flags,
    layout_advertisement,
    parse_advertisement,
)
from hw.sim.discovery import (
    SCAN_TYPE_DUAL,
    DiscoveryError,
    DiscoverySessions,
    InvalidFilter,
    device_is_discoverable,
    is_filter_match,
    kernel_accepts,
    parse_discovery_filter,
)
from hw.sim.monitors import (
    InvalidMonitor,
    MonitoredDevice,
    MonitorSpec,
    content_matches,
    parse_monitor,
)
from hw.sim.reporting import (
    RemoteDevice,
    apply_advert,
    changed_properties,
    device_properties,
    invalidate_rssi_and_tx_power,
    parse_eir,
)

BLUEZ_VERSION = "5.66"
BLUEZ_NAME = "org.bluez"
ROOT_PATH = "/org/bluez"
ADAPTER_PATH = "/org/bluez/hci0"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADV = "org.bluez.LEAdvertisement1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"
GATT_MANAGER = "org.bluez.GattManager1"
AGENT_MANAGER = "org.bluez.AgentManager1"
PROFILE_MANAGER = "org.bluez.ProfileManager1"
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
AIR_NAME = "org.btogether.Air"
AIR_PATH = "/org/btogether/Air"
AIR_INTERFACE = "org.btogether.Air1"
MAX_ADVERTISEMENTS = 5
DEFAULT_DISCOVERABLE_TIMEOUT_S = 180  # main.conf DiscoverableTimeout
# The kernel's passive (background) LE scan while only monitors listen: a 30 ms window
# every 60 ms (le_scan_window / le_scan_interval).  Discovery scans continuously.
PASSIVE_SCAN_INTERVAL_S = 0.060
PASSIVE_SCAN_WINDOW_S = 0.030
SWEEP_PERIOD_S = 0.25
DBUS_REPLY_TIMEOUT_S = 25.0  # libdbus's default, which gdbus uses (-1)
AGENT_CAPABILITIES = (
    "",
    "DisplayOnly",
    "DisplayYesNo",
    "KeyboardOnly",
    "NoInputNoOutput",
    "KeyboardDisplay",
)

_log = structlog.get_logger(__name__)


def host_address(host: str) -> str:
    """A stable public-looking adapter address for a host name."""
    digest = hashlib.sha256(host.encode()).digest()
    return ":".join(f"{b:02X}" for b in (0xC0, *digest[:5]))


def instance_address(adapter_address: str, slot: int) -> tuple[str, str]:
    """(address, type) of advertising instance ``slot``: the first uses the adapter's."""
    if slot == 1:
        return adapter_address, "public"
    digest = hashlib.sha256(f"{adapter_address}/{slot}".encode()).digest()
    first = digest[0] | 0xC0  # random static address: two top bits set
    return ":".join(f"{b:02X}" for b in (first, *digest[1:6])), "random"


def device_path(address: str) -> str:
    return f"{ADAPTER_PATH}/dev_{address.replace(':', '_')}"


@dataclass(frozen=True, slots=True)
class Transmission:
    """One advertising instance as it goes out on the air."""

    address: str
    address_type: str
    layout: Layout
    interval_s: float


class AirLink(Protocol):
    """What a host asks of the air it is part of."""

    def start_airing(self, host: str, key: tuple[str, str], transmission: Transmission) -> None: ...

    def stop_airing(self, host: str, key: tuple[str, str]) -> None: ...

    def move_host(self, name: str, x: float, y: float) -> None: ...

    def host_positions(self) -> list[tuple[str, float, float]]: ...


@dataclass
class _Advert:
    owner: str
    path: str
    slot: int
    advertisement: Advertisement
    flags: int
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


@dataclass
class _Monitor:
    path: str
    spec: MonitorSpec
    devices: dict[str, MonitoredDevice] = field(default_factory=dict)


@dataclass
class _MonitorApp:
    owner: str
    root: str
    rule: str
    monitors: dict[str, _Monitor] = field(default_factory=dict)


@dataclass
class _Device:
    path: str
    record: RemoteDevice


class _Refusal(Exception):
    """Answer the method call with this D-Bus error."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


class HostBluez:
    """bluetoothd for one host, on that host's bus."""

    def __init__(
        self,
        *,
        host: str,
        bus: MessageBus,
        air: AirLink,
        monotonic: Callable[[], float],
        device_timeout_s: float,
        interval_s: float,
        experimental: bool = False,
        scan_phase_s: float = 0.0,
    ) -> None:
        self.host = host
        self.address = host_address(host)
        self._bus = bus
        self._air = air
        self._now = monotonic
        self._device_timeout_s = device_timeout_s
        self._interval_s = interval_s
        self._experimental = experimental
        self._scan_phase_s = scan_phase_s
        self.powered = True
        self._alias: str | None = None
        self._discoverable = False
        self._discoverable_timeout = DEFAULT_DISCOVERABLE_TIMEOUT_S
        self._discovery_discoverable = False
        self._pairable = True  # bluetoothd sets the adapter bondable when it starts
        self._pairable_timeout = 0
        self._mode_timers: dict[str, asyncio.TimerHandle] = {}
        self._discovery = DiscoverySessions(SCAN_TYPE_DUAL)
        self._found_in_discovery: set[str] = set()
        self._adverts: dict[tuple[str, str], _Advert] = {}
        self._pending_adverts: set[tuple[str, str]] = set()
        self._monitor_apps: dict[tuple[str, str], _MonitorApp] = {}
        self._devices: dict[str, _Device] = {}
        self._agents: dict[str, tuple[str, str]] = {}  # owner -> (path, capability)
        self._default_agent: str | None = None
        self._profiles: dict[tuple[str, str], str] = {}  # (owner, path) -> UUID
        self._gatt_apps: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = _log.bind(host=host)

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._bus.add_message_handler(self._on_message)
        for name in (BLUEZ_NAME, AIR_NAME):
            await self._bus.request_name(name)
        await self._call_bus(
            "AddMatch",
            "s",
            [
                "type='signal',sender='org.freedesktop.DBus',"
                "interface='org.freedesktop.DBus',member='NameOwnerChanged'"
            ],
        )
        self._spawn(self._sweep())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for advert in list(self._adverts.values()):
            self._cancel_timers(advert)
            self._air.stop_airing(self.host, (advert.owner, advert.path))
        for handle in self._mode_timers.values():
            handle.cancel()
        self._bus.disconnect()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call_bus(self, member: str, signature: str, body: list[Any]) -> Message:
        reply = await self._bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        return reply

    # ---- object model ----------------------------------------------------------

    @property
    def discoverable(self) -> bool:
        return self._discoverable or self._discovery_discoverable

    def _adapter_props(self) -> dict[str, Variant]:
        props = {
            "Address": Variant("s", self.address),
            "AddressType": Variant("s", "public"),
            "Name": Variant("s", self.host),
            "Alias": Variant("s", self._alias or self.host),
            "Class": Variant("u", 0),
            "Powered": Variant("b", self.powered),
            "Discoverable": Variant("b", self.discoverable),
            "DiscoverableTimeout": Variant("u", self._discoverable_timeout),
            "Pairable": Variant("b", self._pairable),
            "PairableTimeout": Variant("u", self._pairable_timeout),
            "Discovering": Variant("b", self._discovery.discovering),
            "UUIDs": Variant("as", []),
            "Modalias": Variant("s", "usb:v1D6Bp0246d0542"),
            "Roles": Variant("as", ["central", "peripheral"]),
        }
        if self._experimental:
            props["PowerState"] = Variant("s", "on" if self.powered else "off")
        return props

    def _adv_manager_props(self) -> dict[str, Variant]:
        active = len(self._adverts)
        props = {
            "ActiveInstances": Variant("y", active),
            "SupportedInstances": Variant("y", MAX_ADVERTISEMENTS - active),
            "SupportedIncludes": Variant("as", ["tx-power", "appearance", "local-name"]),
        }
        if self._experimental:
            props["SupportedFeatures"] = Variant("as", [])
            props["SupportedCapabilities"] = Variant(
                "a{sv}", {"MaxAdvLen": Variant("y", LEGACY_ADV_MAX)}
            )
        return props

    def _interfaces_at(self, path: str) -> dict[str, dict[str, Variant]] | None:
        """The interfaces and properties of the object at ``path`` (None: no object)."""
        if path == "/":
            return {OBJECT_MANAGER: {}}
        if path == ROOT_PATH:
            return {AGENT_MANAGER: {}, PROFILE_MANAGER: {}}
        if path == ADAPTER_PATH:
            interfaces = {
                ADAPTER: self._adapter_props(),
                GATT_MANAGER: {},
                ADV_MANAGER: self._adv_manager_props(),
            }
            if self._experimental:
                interfaces[MONITOR_MANAGER] = {
                    "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
                    "SupportedFeatures": Variant("as", []),
                }
            return interfaces
        for device in self._devices.values():
            if device.path == path:
                return {DEVICE: device_properties(device.record, ADAPTER_PATH, self._experimental)}
        return None

    def _objects(self) -> dict[str, dict[str, dict[str, Variant]]]:
        """GetManagedObjects on ``/``: every object below the root, with all its interfaces."""
        out: dict[str, dict[str, dict[str, Variant]]] = {}
        for path in (ROOT_PATH, ADAPTER_PATH, *(d.path for d in self._devices.values())):
            interfaces = self._interfaces_at(path)
            assert interfaces is not None
            out[path] = {INTROSPECTABLE: {}, **interfaces, PROPERTIES: {}}
        return out

    def _emit(
        self, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> None:
        self._bus.send(Message.new_signal(path, interface, member, signature, body))

    def _emit_changed(
        self,
        path: str,
        interface: str,
        changed: Mapping[str, Variant],
        invalidated: list[str] | None = None,
    ) -> None:
        self._emit(
            path,
            PROPERTIES,
            "PropertiesChanged",
            "sa{sv}as",
            [interface, dict(changed), invalidated or []],
        )

    def _adapter_changed(self, *names: str) -> None:
        props = self._adapter_props()
        self._emit_changed(ADAPTER_PATH, ADAPTER, {n: props[n] for n in names if n in props})

    # ---- message dispatch ------------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        try:
            return self._dispatch(msg)
        except _Refusal as refusal:
            return Message.new_error(msg, refusal.name, refusal.text)

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus":
            name, _old, new = msg.body
            if not new and name.startswith(":"):
                self._owner_left(name)
            return
        if msg.interface == OBJECT_MANAGER and msg.member in (
            "InterfacesAdded",
            "InterfacesRemoved",
        ):
            for app in list(self._monitor_apps.values()):
                if msg.sender == app.owner and msg.path == app.root:
                    self._monitor_app_signal(app, msg)

    def _dispatch(self, msg: Message) -> Message | bool:
        path, interface, member = msg.path or "", msg.interface, msg.member
        if interface in (INTROSPECTABLE, None) and member == "Introspect":
            return self._introspect(msg)
        if path == AIR_PATH and interface in (AIR_INTERFACE, None):
            return self._air_call(msg)
        interfaces = self._interfaces_at(path)
        if interfaces is None:
            return False
        if interface == PROPERTIES:
            return self._properties(msg, interfaces)
        if interface == OBJECT_MANAGER and member == "GetManagedObjects" and path == "/":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._objects()])
        if path == ROOT_PATH:
            return self._root_call(msg)
        if path == ADAPTER_PATH:
            return self._adapter_call(msg)
        if DEVICE in interfaces and interface in (DEVICE, None):
            return self._device_call(msg)
        return False

    def _introspect(self, msg: Message) -> Message | bool:
        """gdbus's introspect, and libdbus's answer for a path that only has children."""
        path = msg.path or "/"
        if path == AIR_PATH:
            return Message.new_method_return(msg, "s", [_air_node_xml()])
        interfaces = self._interfaces_at(path)
        children = self._children(path, air=msg.destination == AIR_NAME)
        if interfaces is None and not children:
            return False
        names = [INTROSPECTABLE]
        if interfaces is not None:
            names += [*interfaces, PROPERTIES]
        xml = introspection.node_xml(introspection.exported(names, self._experimental), children)
        return Message.new_method_return(msg, "s", [xml])

    def _children(self, path: str, *, air: bool) -> list[str]:
        """Child node names below ``path`` (the air's own object only under its name)."""
        paths = [ROOT_PATH, ADAPTER_PATH, *(d.path for d in self._devices.values())]
        if air:
            paths.append(AIR_PATH)
        prefix = path.rstrip("/") + "/"
        names: list[str] = []
        for candidate in paths:
            if candidate.startswith(prefix):
                name = candidate[len(prefix) :].split("/", 1)[0]
                if name not in names:
                    names.append(name)
        return names

    # ---- properties (gdbus/object.c properties_get/_get_all/_set) -------------------

    def _properties(self, msg: Message, interfaces: dict[str, dict[str, Variant]]) -> Message:
        invalid = "org.freedesktop.DBus.Error.InvalidArgs"
        if msg.member == "GetAll" and msg.signature == "s":
            props = interfaces.get(msg.body[0])
            if props is None:
                raise _Refusal(invalid, f"No such interface '{msg.body[0]}'")
            return Message.new_method_return(msg, "a{sv}", [props])
        if msg.member == "Get" and msg.signature == "ss":
            iface, name = msg.body
            if iface not in interfaces:
                raise _Refusal(invalid, f"No such interface '{iface}'")
            value = interfaces[iface].get(name)
            if value is None:
                raise _Refusal(invalid, f"No such property '{name}'")
            return Message.new_method_return(msg, "v", [value])
        if msg.member == "Set" and msg.signature == "ssv":
            iface, name, value = msg.body
            if iface not in interfaces:
                raise _Refusal(invalid, f"No such interface '{iface}'")
            spec = introspection.BY_NAME.get(iface)
            prop = next((p for p in spec.properties if p.name == name), None) if spec else None
            if prop is None or (prop.experimental and not self._experimental):
                raise _Refusal(
                    "org.freedesktop.DBus.Error.UnknownProperty", f"No such property '{name}'"
                )
            if not prop.writable:
                raise _Refusal(
                    "org.freedesktop.DBus.Error.PropertyReadOnly",
                    f"Property '{name}' is not writable",
                )
            if value.signature != prop.type:
                raise _Refusal(invalid, f"Invalid signature for '{name}'")
            if msg.path == ADAPTER_PATH:
                self._set_adapter_property(name, value.value)
            else:
                self._set_device_property(msg.path or "", name, value.value)
            return Message.new_method_return(msg)
        raise _Refusal(
            "org.freedesktop.DBus.Error.UnknownMethod",
            f'Method "{msg.member}" with signature "{msg.signature}" on interface '
            f'"{PROPERTIES}" doesn\'t exist',
        )

    def _set_adapter_property(self, name: str, value: Any) -> None:
        if name == "Powered":
            self._set_powered(bool(value))
        elif name == "Alias":
            # property_set_alias: "" restores the system name.
            alias = str(value) or None
            if alias != self._alias:
                self._alias = alias
                self._adapter_changed("Alias")
        elif name == "Discoverable":
            self._set_discoverable(bool(value))
        elif name == "DiscoverableTimeout":
            # property_set_discoverable_timeout: restarts a running discoverable period.
            self._discoverable_timeout = int(value)
            self._adapter_changed("DiscoverableTimeout")
            if self._discoverable:
                self._arm_mode_timer("Discoverable", self._discoverable_timeout)
        elif name == "Pairable":
            if bool(value) != self._pairable:
                self._pairable = bool(value)
                self._adapter_changed("Pairable")
            if self._pairable:
                self._arm_mode_timer("Pairable", self._pairable_timeout)
        elif name == "PairableTimeout":
            self._pairable_timeout = int(value)
            self._adapter_changed("PairableTimeout")
            if self._pairable:
                self._arm_mode_timer("Pairable", self._pairable_timeout)

    def _set_discoverable(self, on: bool) -> None:
        """property_set_mode(MGMT_SETTING_DISCOVERABLE): the kernel ends it after the timeout."""
        if on and not self.powered and self._discoverable_timeout:
            raise _Refusal("org.bluez.Error.Failed", "Not Powered")
        if on == self._discoverable:
            return
        before = self.discoverable
        self._discoverable = on
        if on:
            self._arm_mode_timer("Discoverable", self._discoverable_timeout)
        else:
            self._cancel_mode_timer("Discoverable")
        if self.discoverable != before:
            self._adapter_changed("Discoverable")
            self._refresh_adverts()

    def _arm_mode_timer(self, name: str, seconds: int) -> None:
        self._cancel_mode_timer(name)
        if seconds:
            loop = asyncio.get_running_loop()
            self._mode_timers[name] = loop.call_later(seconds, self._mode_expired, name)

    def _cancel_mode_timer(self, name: str) -> None:
        handle = self._mode_timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _mode_expired(self, name: str) -> None:
        self._mode_timers.pop(name, None)
        if name == "Discoverable":
            self._set_discoverable(False)
        elif self._pairable:
            self._pairable = False
            self._adapter_changed("Pairable")

    def _set_device_property(self, path: str, name: str, value: Any) -> None:
        device = next((d for d in self._devices.values() if d.path == path), None)
        if device is None:
            return
        record = device.record
        if name == "Alias":
            record.alias = str(value) or None
        elif name == "Trusted":
            record.trusted = bool(value)
        elif name == "Blocked":
            record.blocked = bool(value)
        else:
            raise _Refusal("org.bluez.Error.NotSupported", "Operation is not supported")
        changed, _ = changed_properties(record, [name], ADAPTER_PATH)
        self._emit_changed(path, DEVICE, changed)

    def _set_powered(self, powered: bool) -> None:
        if powered == self.powered:
            return
        self._log.info("adapter_powered", powered=powered)
        if not powered:
            # property_set_mode: btd_adv_monitor_power_down, clear_discoverable and
            # remove_temporary_devices; then adapter_stop ends every discovery.
            for app in self._monitor_apps.values():
                for monitor in app.monitors.values():
                    for path, state in monitor.devices.items():
                        if state.lost_deadline() is not None:
                            state.lost_timer_fired()
                            self._call_client(app.owner, monitor.path, MONITOR, "DeviceLost", path)
            if self._discoverable:
                self._discoverable = False
                self._cancel_mode_timer("Discoverable")
                self._adapter_changed("Discoverable")
            for address in list(self._devices):
                self._remove_device(address)
            self._discovery.clear()
            self._found_in_discovery.clear()
            self._discovery_discoverable = False
            self.powered = False
        else:
            self.powered = True
        # settings_changed and adapter_stop: one PropertiesChanged (gdbus batches them).
        names = ["Powered", "Discovering"] if not powered else ["Powered"]
        self._adapter_changed(*names, *(("PowerState",) if self._experimental else ()))

    # ---- /org/bluez: agents and profiles ---------------------------------------------

    def _root_call(self, msg: Message) -> Message | bool:
        sender, member, interface = msg.sender or "", msg.member, msg.interface
        if interface in (AGENT_MANAGER, None):
            if member == "RegisterAgent" and msg.signature == "os":
                # agent.c register_agent: one agent per client, a known IO capability.
                if sender in self._agents:
                    raise _Refusal("org.bluez.Error.AlreadyExists", "Already Exists")
                path, capability = msg.body
                if capability not in AGENT_CAPABILITIES:
                    raise _Refusal(
                        "org.bluez.Error.InvalidArguments", "Invalid arguments in method call"
                    )
                self._agents[sender] = (path, capability or "KeyboardDisplay")
                return Message.new_method_return(msg)
            if member in ("UnregisterAgent", "RequestDefaultAgent") and msg.signature == "o":
                agent = self._agents.get(sender)
                if agent is None or agent[0] != msg.body[0]:
                    raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
                if member == "UnregisterAgent":
                    self._agent_gone(sender)
                else:
                    self._default_agent = sender
                return Message.new_method_return(msg)
        if interface in (PROFILE_MANAGER, None):
            if member == "RegisterProfile" and msg.signature == "osa{sv}":
                # profile.c register_profile: kept, never connected (no profiles here).
                path, uuid, _options = msg.body
                if (sender, path) in self._profiles:
                    raise _Refusal("org.bluez.Error.AlreadyExists", "Already Exists")
                if uuid in self._profiles.values():
                    raise _Refusal("org.bluez.Error.NotPermitted", "UUID already registered")
                self._profiles[(sender, path)] = uuid
                return Message.new_method_return(msg)
            if member == "UnregisterProfile" and msg.signature == "o":
                if self._profiles.pop((sender, msg.body[0]), None) is None:
                    raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
                return Message.new_method_return(msg)
        return False

    def _agent_gone(self, owner: str) -> None:
        self._agents.pop(owner, None)
        if self._default_agent == owner:
            self._default_agent = None

    # ---- hci0: discovery, advertising, monitors, GATT -----------------------------------

    def _adapter_call(self, msg: Message) -> Message | bool:
        interface, member, sender = msg.interface, msg.member, msg.sender or ""
        if interface in (ADAPTER, None):
            if member == "SetDiscoveryFilter" and msg.signature == "a{sv}":
                return self._set_discovery_filter(msg, sender)
            if member == "StartDiscovery" and msg.signature == "":
                return self._start_discovery(msg, sender)
            if member == "StopDiscovery" and msg.signature == "":
                return self._stop_discovery(msg, sender)
            if member == "RemoveDevice" and msg.signature == "o":
                address = next((a for a, d in self._devices.items() if d.path == msg.body[0]), None)
                if address is None:
                    raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
                self._remove_device(address)
                return Message.new_method_return(msg)
            if member == "GetDiscoveryFilters" and msg.signature == "":
                keys = [
                    "UUIDs",
                    "RSSI",
                    "Pathloss",
                    "Transport",
                    "DuplicateData",
                    "Discoverable",
                    "Pattern",
                ]
                return Message.new_method_return(msg, "as", [keys])
        if interface in (ADV_MANAGER, None):
            if member == "RegisterAdvertisement" and msg.signature == "oa{sv}":
                self._spawn(self._register_advertisement(msg, sender, msg.body[0]))
                return True
            if member == "UnregisterAdvertisement" and msg.signature == "o":
                advert = self._adverts.get((sender, msg.body[0]))
                if advert is None:
                    raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
                self._drop_advert(advert)
                return Message.new_method_return(msg)
        if interface in (MONITOR_MANAGER, None) and self._experimental:
            if member == "RegisterMonitor" and msg.signature == "o":
                self._register_monitor_app(msg, sender, msg.body[0])
                return True
            if member == "UnregisterMonitor" and msg.signature == "o":
                return self._unregister_monitor_app(msg, sender, msg.body[0])
        if interface in (GATT_MANAGER, None):
            if member == "RegisterApplication" and msg.signature == "oa{sv}":
                if (sender, msg.body[0]) in self._gatt_apps:
                    raise _Refusal("org.bluez.Error.AlreadyExists", "Already Exists")
                self._gatt_apps.add((sender, msg.body[0]))
                return Message.new_method_return(msg)
            if member == "UnregisterApplication" and msg.signature == "o":
                if (sender, msg.body[0]) not in self._gatt_apps:
                    raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
                self._gatt_apps.discard((sender, msg.body[0]))
                return Message.new_method_return(msg)
        return False

    def _device_call(self, msg: Message) -> Message | bool:
        member = msg.member
        if member in ("Connect", "ConnectProfile"):
            # No link layer here: what bluetoothd answers when the LE connection attempt
            # is given up (btd_error_le_errno(ECONNABORTED)).
            raise _Refusal("org.bluez.Error.Failed", "le-connection-abort-by-local")
        if member == "Pair":
            # new_authentication_return for MGMT_STATUS_CONNECT_FAILED.
            raise _Refusal("org.bluez.Error.ConnectionAttemptFailed", "Page Timeout")
        if member == "CancelPairing":
            raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
        if member in ("Disconnect", "DisconnectProfile"):
            if member == "DisconnectProfile":
                raise _Refusal("org.bluez.Error.NotConnected", "Not Connected")
            return Message.new_method_return(msg)
        return False

    def _set_discovery_filter(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise _Refusal("org.bluez.Error.NotReady", "Resource Not Ready")
        try:
            flt = parse_discovery_filter(msg.body[0], SCAN_TYPE_DUAL)
        except InvalidFilter as exc:
            self._log.info("discovery_filter_refused", client=sender, reason=str(exc))
            raise _Refusal(
                "org.bluez.Error.InvalidArguments", "Invalid arguments in method call"
            ) from None
        self._discovery.set_filter(sender, flt, self._now())
        self._discovery_changed()
        return Message.new_method_return(msg)

    def _start_discovery(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise _Refusal("org.bluez.Error.NotReady", "Resource Not Ready")
        before = self._discovery.discovering
        try:
            self._discovery.start(sender, self._now())
        except DiscoveryError as exc:
            raise _Refusal(exc.name, exc.text) from None
        self._log.info("discovery_started", client=sender)
        if not before:
            self._adapter_changed("Discovering")
        self._discovery_changed()
        return Message.new_method_return(msg)

    def _stop_discovery(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise _Refusal("org.bluez.Error.NotReady", "Resource Not Ready")
        try:
            last = self._discovery.stop(sender, self._now())
        except DiscoveryError as exc:
            raise _Refusal(exc.name, exc.text) from None
        self._log.info("discovery_stopped", client=sender)
        if last:
            self._discovery_ended()
        self._discovery_changed()
        return Message.new_method_return(msg)

    def _discovery_changed(self) -> None:
        """set_discovery_discoverable: a filter's Discoverable makes the adapter discoverable."""
        wanted = self._discovery.wants_discoverable() and not self._discoverable
        if wanted != self._discovery_discoverable:
            before = self.discoverable
            self._discovery_discoverable = wanted
            if self.discoverable != before:
                self._adapter_changed("Discoverable")
                self._refresh_adverts()

    def _discovery_ended(self) -> None:
        """discovery_cleanup after the last session: invalidate and drop what it found."""
        self._adapter_changed("Discovering")
        for address in list(self._found_in_discovery):
            device = self._devices.get(address)
            if device is None:
                continue
            _, invalidated = changed_properties(
                device.record, invalidate_rssi_and_tx_power(device.record), ADAPTER_PATH
            )
            if invalidated:
                self._emit_changed(device.path, DEVICE, {}, invalidated)
        self._found_in_discovery.clear()
        for address in [a for a, d in self._devices.items() if not d.record.connectable]:
            self._remove_device(address)

    # ---- advertising (src/advertising.c) ---------------------------------------------

    async def _register_advertisement(self, msg: Message, sender: str, path: str) -> None:
        key = (sender, path)
        try:
            if key in self._adverts or key in self._pending_adverts:
                raise _Refusal("org.bluez.Error.AlreadyExists", "Already Exists")
            used = {a.slot for a in self._adverts.values()}
            if len(used) + len(self._pending_adverts) >= MAX_ADVERTISEMENTS:
                raise _Refusal("org.bluez.Error.NotPermitted", "Maximum advertisements reached")
            self._pending_adverts.add(key)
            props = await self._read_client_properties(sender, path, ADV)
            if key not in self._pending_adverts:
                return  # the client left the bus while we read its advertisement
            self._pending_adverts.discard(key)
            try:
                advertisement = parse_advertisement(props, experimental=self._experimental)
                flags = ad_flags(
                    advertisement, adapter_bredr=True, adapter_discoverable=self.discoverable
                )
                self._layout(advertisement, flags)
            except InvalidAdvertisement as exc:
                self._log.info("advertisement_refused", client=sender, path=path, reason=str(exc))
                raise _Refusal("org.bluez.Error.Failed", "Failed to parse advertisement.") from None
            free = set(range(1, MAX_ADVERTISEMENTS + 1)) - {a.slot for a in self._adverts.values()}
            slot = min(free)
        except _Refusal as refusal:
            self._bus.send(Message.new_error(msg, refusal.name, refusal.text))
            return
        advert = _Advert(sender, path, slot, advertisement, flags)
        self._adverts[key] = advert
        loop = asyncio.get_running_loop()
        if advertisement.timeout:
            advert.timers.append(
                loop.call_later(advertisement.timeout, self._advert_timed_out, key)
            )
        if flags and advertisement.discoverable_timeout:
            advert.timers.append(
                loop.call_later(
                    advertisement.discoverable_timeout, self._advert_discoverable_ended, key
                )
            )
        self._air_advert(advert)
        self._log.info("advertisement_registered", client=sender, path=path, slot=slot)
        self._bus.send(Message.new_method_return(msg))
        # add_client_complete: only these two properties are signalled.
        props = self._adv_manager_props()
        self._emit_changed(
            ADAPTER_PATH,
            ADV_MANAGER,
            {n: props[n] for n in ("SupportedInstances", "ActiveInstances")},
        )

    async def _read_client_properties(
        self, owner: str, path: str, interface: str
    ) -> Mapping[str, Any]:
        """gdbus's proxy GetAll to the caller; an error or no answer leaves no properties."""
        try:
            reply = await asyncio.wait_for(
                self._bus.call(
                    Message(
                        destination=owner,
                        path=path,
                        interface=PROPERTIES,
                        member="GetAll",
                        signature="s",
                        body=[interface],
                    )
                ),
                timeout=DBUS_REPLY_TIMEOUT_S,
            )
        except TimeoutError:
            return {}
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            return {}
        return dict(reply.body[0])

    def _layout(self, advertisement: Advertisement, flags: int) -> Layout:
        return layout_advertisement(
            advertisement,
            flags=flags,
            adapter_name=self._alias or self.host,
            adapter_discoverable=self.discoverable,
        )

    def _air_advert(self, advert: _Advert) -> None:
        ad = advert.advertisement
        interval = self._interval_s
        if ad.min_interval_ms and ad.max_interval_ms:
            interval = ad.min_interval_ms / 1000.0
        address, address_type = instance_address(self.address, advert.slot)
        self._air.start_airing(
            self.host,
            (advert.owner, advert.path),
            Transmission(address, address_type, self._layout(ad, advert.flags), interval),
        )

    def _refresh_adverts(self) -> None:
        """btd_adv_manager_refresh: the adapter's Discoverable changed the kernel's flags."""
        for advert in self._adverts.values():
            try:
                self._air_advert(advert)
            except InvalidAdvertisement:
                self._log.warning("advertisement_refresh_failed", path=advert.path)

    def _advert_timed_out(self, key: tuple[str, str]) -> None:
        """client_timeout: Release() the client and remove its advertisement."""
        advert = self._adverts.get(key)
        if advert is not None:
            self._call_client(advert.owner, advert.path, ADV, "Release")
            self._drop_advert(advert)

    def _advert_discoverable_ended(self, key: tuple[str, str]) -> None:
        """client_discoverable_timeout: the Flags go, the advert stays."""
        advert = self._adverts.get(key)
        if advert is not None:
            advert.flags = 0
            self._air_advert(advert)

    def _drop_advert(self, advert: _Advert) -> None:
        """client_remove."""
        key = (advert.owner, advert.path)
        self._adverts.pop(key, None)
        self._cancel_timers(advert)
        self._air.stop_airing(self.host, key)
        self._log.info("advertisement_unregistered", client=advert.owner, path=advert.path)
        props = self._adv_manager_props()
        self._emit_changed(
            ADAPTER_PATH,
            ADV_MANAGER,
            {n: props[n] for n in ("SupportedInstances", "ActiveInstances")},
        )

    @staticmethod
    def _cancel_timers(advert: _Advert) -> None:
        for handle in advert.timers:
            handle.cancel()
        advert.timers.clear()

    # ---- advertisement monitors (src/adv_monitor.c) ---------------------------------

    def _register_monitor_app(self, msg: Message, sender: str, root: str) -> None:
        if (sender, root) in self._monitor_apps:
            self._bus.send(
                Message.new_error(msg, "org.bluez.Error.AlreadyExists", "Already Exists")
            )
            return
        rule = f"type='signal',sender='{sender}',path='{root}',interface='{OBJECT_MANAGER}'"
        app = _MonitorApp(sender, root, rule)
        self._monitor_apps[(sender, root)] = app
        self._spawn(self._start_monitor_app(msg, app))

    async def _start_monitor_app(self, msg: Message, app: _MonitorApp) -> None:
        """app_create: follow the app's objects, read them, then reply (app_ready_cb)."""
        await self._call_bus("AddMatch", "s", [app.rule])
        reply = await self._bus.call(
            Message(
                destination=app.owner,
                path=app.root,
                interface=OBJECT_MANAGER,
                member="GetManagedObjects",
            )
        )
        if self._monitor_apps.get((app.owner, app.root)) is not app:
            return
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
            for path, interfaces in reply.body[0].items():
                if MONITOR in interfaces:
                    self._monitor_added(app, path, interfaces[MONITOR])
        self._log.info("monitor_app_registered", client=app.owner, root=app.root)
        self._bus.send(Message.new_method_return(msg))

    def _monitor_app_signal(self, app: _MonitorApp, msg: Message) -> None:
        """gdbus client: InterfacesAdded/InterfacesRemoved from the app's root."""
        path = msg.body[0]
        if msg.member == "InterfacesAdded":
            interfaces = msg.body[1]
            if MONITOR in interfaces:
                self._monitor_added(app, path, interfaces[MONITOR])
        elif MONITOR in msg.body[1] and path in app.monitors:
            # monitor_proxy_removed_cb: released (no Release() call), then gone.
            del app.monitors[path]
            self._log.info("monitor_removed", client=app.owner, path=path)

    def _monitor_added(self, app: _MonitorApp, path: str, props: Mapping[str, Any]) -> None:
        """monitor_proxy_added_cb: an object under the root becomes a monitor, or is released."""
        if not path.startswith(app.root) or path in app.monitors:
            return
        try:
            spec = parse_monitor(props)
        except InvalidMonitor as exc:
            self._log.info("monitor_refused", client=app.owner, path=path, reason=str(exc))
            self._call_client(app.owner, path, MONITOR, "Release")
            return
        app.monitors[path] = _Monitor(path, spec)
        self._log.info("monitor_activated", client=app.owner, path=path)
        self._call_client(app.owner, path, MONITOR, "Activate")

    def _unregister_monitor_app(self, msg: Message, sender: str, root: str) -> Message:
        app = self._monitor_apps.pop((sender, root), None)
        if app is None:
            raise _Refusal("org.bluez.Error.DoesNotExist", "Does Not Exist")
        for monitor in app.monitors.values():
            self._call_client(app.owner, monitor.path, MONITOR, "Release")
        self._drop_monitor_app(app)
        return Message.new_method_return(msg)

    def _drop_monitor_app(self, app: _MonitorApp) -> None:
        app.monitors.clear()
        self._spawn(self._call_bus("RemoveMatch", "s", [app.rule]))

    def _call_client(
        self, owner: str, path: str, interface: str, member: str, *device: str
    ) -> None:
        """g_dbus_proxy_method_call without a reply callback: no reply expected."""
        self._bus.send(
            Message(
                destination=owner,
                path=path,
                interface=interface,
                member=member,
                signature="o" if device else "",
                body=list(device),
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )

    # ---- clients leaving ---------------------------------------------------------

    def _owner_left(self, owner: str) -> None:
        self._pending_adverts = {k for k in self._pending_adverts if k[0] != owner}
        for advert in [a for a in self._adverts.values() if a.owner == owner]:
            self._drop_advert(advert)
        for key in [k for k in self._monitor_apps if k[0] == owner]:
            self._drop_monitor_app(self._monitor_apps.pop(key))
        self._agent_gone(owner)
        for key in [k for k in self._profiles if k[0] == owner]:
            del self._profiles[key]
        self._gatt_apps = {k for k in self._gatt_apps if k[0] != owner}
        was = self._discovery.discovering
        if self._discovery.owner_left(owner, self._now()) and was:
            self._discovery_ended()
        self._discovery_changed()

    # ---- hearing adverts (btd_adapter_update_found_device) -----------------------------

    def receive(self, transmission: Transmission, rssi: int) -> None:
        """An advert reached this host's antenna at ``rssi``: the kernel's and bluetoothd's part."""
        if not self.powered:
            return
        now = self._now()
        monitors = [(app, m) for app in self._monitor_apps.values() for m in app.monitors.values()]
        layout = transmission.layout
        if self._discovery.listening_le(now):
            structures = layout.adv_data + (layout.scan_response if layout.scannable else ())
        elif monitors and self._passive_window_open(now):
            structures = layout.adv_data  # a passive scan sends no scan requests
        else:
            return
        ad = parse_eir(structures)
        kernel = self._discovery.kernel
        if kernel is not None and not kernel_accepts(kernel, rssi, ad.services):
            return
        matched = [(app, m) for app, m in monitors if content_matches(structures, m.spec.patterns)]
        monitoring = bool(matched)
        discovering = self._discovery.discovering
        if not discovering and not monitoring:
            return
        filters = self._discovery.filters()
        filtered = kernel is not None and kernel.service
        address = transmission.address
        discoverable = device_is_discoverable(
            filters, filtered=filtered, flags=ad.flags, address=address, name=ad.name
        )
        device = self._devices.get(address)
        created = device is None
        if device is None:
            if not discoverable and not monitoring:
                return
            record = RemoteDevice(address, transmission.address_type)
            device = _Device(device_path(address), record)
            self._devices[address] = device
        record = device.record
        record.last_seen = now  # device_update_last_seen
        record.connectable = layout.connectable
        if not monitoring and (
            not discoverable
            or (
                filtered
                and not is_filter_match(
                    filters, services=ad.services, rssi=rssi, tx_power=ad.tx_power
                )
            )
        ):
            if created:
                self._announce(device)
            return
        changed = apply_advert(
            record, ad, rssi, filtered=filtered, duplicate=self._discovery.duplicate_data()
        )
        if created:
            self._announce(device)
        elif changed:
            values, invalidated = changed_properties(record, changed, ADAPTER_PATH)
            self._emit_changed(device.path, DEVICE, values, invalidated)
        if discovering:
            self._found_in_discovery.add(address)
        for app, monitor in matched:
            self._notify_monitor(app, monitor, device.path, rssi, now)

    def _announce(self, device: _Device) -> None:
        """A new device object: InterfacesAdded with everything known (pending changes dropped)."""
        self._emit(
            "/",
            OBJECT_MANAGER,
            "InterfacesAdded",
            "oa{sa{sv}}",
            [
                device.path,
                {
                    INTROSPECTABLE: {},
                    DEVICE: device_properties(device.record, ADAPTER_PATH, self._experimental),
                    PROPERTIES: {},
                },
            ],
        )

    def _notify_monitor(
        self, app: _MonitorApp, monitor: _Monitor, path: str, rssi: int, now: float
    ) -> None:
        """adv_monitor_filter_rssi: without RSSI parameters every match is a DeviceFound."""
        if monitor.spec.rssi is None:
            self._call_client(app.owner, monitor.path, MONITOR, "DeviceFound", path)
            return
        state = monitor.devices.get(path)
        if state is None:
            state = monitor.devices[path] = MonitoredDevice(monitor.spec.rssi)
        action = state.heard(rssi, now)
        if action == "found":
            self._call_client(app.owner, monitor.path, MONITOR, "DeviceFound", path)
        elif action == "lost":
            self._call_client(app.owner, monitor.path, MONITOR, "DeviceLost", path)

    def _passive_window_open(self, now: float) -> bool:
        phase = (now + self._scan_phase_s) % PASSIVE_SCAN_INTERVAL_S
        return phase < PASSIVE_SCAN_WINDOW_S

    def _remove_device(self, address: str) -> None:
        """btd_adapter_remove_device: monitors forget it (btd_adv_monitor_device_remove)."""
        device = self._devices.pop(address, None)
        if device is None:
            return
        self._found_in_discovery.discard(address)
        for app in self._monitor_apps.values():
            for monitor in app.monitors.values():
                monitor.devices.pop(device.path, None)
        self._emit(
            "/",
            OBJECT_MANAGER,
            "InterfacesRemoved",
            "oas",
            [device.path, [INTROSPECTABLE, DEVICE, PROPERTIES]],
        )
        self._log.info("device_removed", address=address)

    async def _sweep(self) -> None:
        """The timers bluetoothd keeps per device: TemporaryTimeout and monitors' lost timers."""
        while True:
            await asyncio.sleep(SWEEP_PERIOD_S)
            now = self._now()
            cutoff = now - self._device_timeout_s
            for address in [a for a, d in self._devices.items() if d.record.last_seen < cutoff]:
                self._remove_device(address)  # device_disappeared
            for app in list(self._monitor_apps.values()):
                for monitor in app.monitors.values():
                    for path, state in monitor.devices.items():
                        deadline = state.lost_deadline()
                        if deadline is not None and deadline <= now:
                            state.lost_timer_fired()  # handle_device_lost_timeout
                            self._call_client(app.owner, monitor.path, MONITOR, "DeviceLost", path)

    # ---- the air's control interface ----------------------------------------------

    def _air_call(self, msg: Message) -> Message:
        if msg.member == "MoveHost" and msg.signature == "sdd":
            name, x, y = msg.body
            try:
                self._air.move_host(name, float(x), float(y))
            except KeyError:
                raise _Refusal(
                    "org.btogether.Error.UnknownHost", f"no host named {name!r}"
                ) from None
            return Message.new_method_return(msg)
        if msg.member == "ListHosts" and msg.signature == "":
            return Message.new_method_return(msg, "a(sdd)", [self._air.host_positions()])
        raise _Refusal(
            "org.freedesktop.DBus.Error.UnknownMethod",
            f"{msg.member} is not a method of {AIR_INTERFACE}",
        )


def _air_node_xml() -> str:
    air = (
        f'<interface name="{AIR_INTERFACE}">'
        '<method name="MoveHost"><arg name="name" type="s" direction="in"/>'
        '<arg name="x" type="d" direction="in"/><arg name="y" type="d" direction="in"/></method>'
        '<method name="ListHosts"><arg name="hosts" type="a(sdd)" direction="out"/></method>'
        "</interface>"
    )
    return introspection.node_xml([introspection.INTROSPECTABLE], []).replace(
        "</node>", air + "</node>"
    )
