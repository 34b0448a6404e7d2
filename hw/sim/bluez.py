"""One simulated host's ``org.bluez``: hci0, its managers and the devices it has heard.

This is the part of bluetoothd that bleak and our advertiser talk to, answered over a
real (private) D-Bus connection with low-level message handlers, so we can see each
caller's unique name the way bluetoothd does: advertisements are read from the
caller with ``GetAll``, discovery sessions and filters are per caller, and everything
a caller owns goes away when it leaves the bus.  What is heard comes in through
:meth:`HostBluez.receive`, from the air (:mod:`hw.sim.air`).
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
from dbus_fast.errors import DBusError

from hw.sim.adverts import (
    LEGACY_ADV_MAX,
    Advertisement,
    DiscoveryFilter,
    InvalidAdvertisement,
    InvalidFilter,
    OrPattern,
    ad_length,
    ad_structures,
    advertised_name,
    filter_accepts,
    matches_or_patterns,
    merge_filters,
    parse_advertisement,
    parse_discovery_filter,
    parse_or_patterns,
)

BLUEZ_NAME = "org.bluez"
ADAPTER_PATH = "/org/bluez/hci0"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADV = "org.bluez.LEAdvertisement1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"
GATT_MANAGER = "org.bluez.GattManager1"
PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
AIR_NAME = "org.btogether.Air"
AIR_PATH = "/org/btogether/Air"
AIR_INTERFACE = "org.btogether.Air1"
MAX_ADVERTISEMENTS = 5
# The kernel's passive (background) LE scan: a 30 ms window every 60 ms.  Active
# discovery scans continuously (11.25 ms window every 11.25 ms).
PASSIVE_SCAN_INTERVAL_S = 0.060
PASSIVE_SCAN_WINDOW_S = 0.030
DEVICE_INTERFACES = (PROPERTIES, "org.freedesktop.DBus.Introspectable", DEVICE)

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
    """One registered advertisement as it goes out on the air."""

    address: str
    address_type: str
    advertisement: Advertisement
    structures: tuple[tuple[int, bytes], ...]
    name: str | None
    tx_power_ad: int | None
    interval_s: float


class AirLink(Protocol):
    """What a host asks of the air it is part of."""

    def start_airing(self, host: str, key: tuple[str, str], transmission: Transmission) -> None: ...

    def stop_airing(self, host: str, key: tuple[str, str]) -> None: ...

    def move_host(self, name: str, x: float, y: float) -> None: ...

    def host_positions(self) -> list[tuple[str, float, float]]: ...


@dataclass
class _Device:
    path: str
    address: str
    props: dict[str, Variant]
    last_seen: float
    found_by: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _MonitorApp:
    owner: str
    root: str
    monitors: dict[str, list[OrPattern]] = field(default_factory=dict)


def _err(name: str, text: str) -> DBusError:
    return DBusError(name, text)


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
        advertisement_monitor: bool = True,
        scan_phase_s: float = 0.0,
    ) -> None:
        self.host = host
        self.address = host_address(host)
        self._bus = bus
        self._air = air
        self._now = monotonic
        self._device_timeout_s = device_timeout_s
        self._interval_s = interval_s
        self._with_monitor = advertisement_monitor
        self._scan_phase_s = scan_phase_s
        self.powered = True
        self._alias = host
        self._filters: dict[str, DiscoveryFilter] = {}
        self._sessions: set[str] = set()
        self._adverts: dict[tuple[str, str], int] = {}  # (owner, path) -> instance slot
        self._pending_adverts: set[tuple[str, str]] = set()
        self._monitor_apps: dict[tuple[str, str], _MonitorApp] = {}
        self._devices: dict[str, _Device] = {}
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
        self._spawn(self._sweep_devices())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for key in list(self._adverts):
            self._air.stop_airing(self.host, key)
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

    def _adapter_props(self) -> dict[str, Variant]:
        return {
            "Address": Variant("s", self.address),
            "AddressType": Variant("s", "public"),
            "Name": Variant("s", self.host),
            "Alias": Variant("s", self._alias),
            "Class": Variant("u", 0),
            "Powered": Variant("b", self.powered),
            "PowerState": Variant("s", "on" if self.powered else "off"),
            "Discoverable": Variant("b", False),
            "DiscoverableTimeout": Variant("u", 180),
            "Pairable": Variant("b", False),
            "PairableTimeout": Variant("u", 0),
            "Discovering": Variant("b", bool(self._sessions) and self.powered),
            "UUIDs": Variant("as", []),
            "Modalias": Variant("s", "usb:v1D6Bp0246d0548"),
            "Roles": Variant("as", ["central", "peripheral"]),
            "ExperimentalFeatures": Variant("as", []),
        }

    def _adv_manager_props(self) -> dict[str, Variant]:
        active = len(self._adverts)
        return {
            "ActiveInstances": Variant("y", active),
            "SupportedInstances": Variant("y", MAX_ADVERTISEMENTS - active),
            "SupportedIncludes": Variant("as", ["tx-power", "appearance", "local-name"]),
            "SupportedSecondaryChannels": Variant("as", ["1M", "2M", "Coded"]),
            "SupportedFeatures": Variant("as", []),
            "SupportedCapabilities": Variant("a{sv}", {"MaxAdvLen": Variant("y", LEGACY_ADV_MAX)}),
        }

    def _objects(self) -> dict[str, dict[str, dict[str, Variant]]]:
        adapter: dict[str, dict[str, Variant]] = {
            ADAPTER: self._adapter_props(),
            ADV_MANAGER: self._adv_manager_props(),
            GATT_MANAGER: {},
        }
        if self._with_monitor:
            adapter[MONITOR_MANAGER] = {
                "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
                "SupportedFeatures": Variant("as", []),
            }
        objects: dict[str, dict[str, dict[str, Variant]]] = {
            "/org/bluez": {"org.bluez.AgentManager1": {}, "org.bluez.ProfileManager1": {}},
            ADAPTER_PATH: adapter,
        }
        for device in self._devices.values():
            objects[device.path] = {DEVICE: dict(device.props)}
        return objects

    def _emit(
        self, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> None:
        self._bus.send(Message.new_signal(path, interface, member, signature, body))

    def _emit_changed(self, path: str, interface: str, changed: Mapping[str, Variant]) -> None:
        self._emit(
            path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [interface, dict(changed), []]
        )

    def _set_discovering(self, before: bool) -> None:
        after = bool(self._sessions) and self.powered
        if after != before:
            self._emit_changed(ADAPTER_PATH, ADAPTER, {"Discovering": Variant("b", after)})

    # ---- message dispatch ------------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus":
                name, _old, new = msg.body
                if not new and name.startswith(":"):
                    self._owner_left(name)
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        path, interface, member = msg.path, msg.interface, msg.member
        if interface == OBJECT_MANAGER and member == "GetManagedObjects" and path == "/":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._objects()])
        if interface == PROPERTIES and path in self._objects():
            return self._properties(msg)
        if path == ADAPTER_PATH:
            return self._adapter_call(msg)
        if path == AIR_PATH and interface in (AIR_INTERFACE, None):
            return self._air_call(msg)
        return False

    def _properties(self, msg: Message) -> Message:
        objects = self._objects()
        assert msg.path is not None
        node = objects[msg.path]
        if msg.member == "GetAll" and msg.signature == "s":
            props = node.get(msg.body[0])
            if props is None:
                raise _err("org.freedesktop.DBus.Error.InvalidArgs", f"no interface {msg.body[0]}")
            return Message.new_method_return(msg, "a{sv}", [props])
        if msg.member == "Get" and msg.signature == "ss":
            value = node.get(msg.body[0], {}).get(msg.body[1])
            if value is None:
                raise _err("org.freedesktop.DBus.Error.InvalidArgs", "No such property")
            return Message.new_method_return(msg, "v", [value])
        if msg.member == "Set" and msg.signature == "ssv" and msg.path == ADAPTER_PATH:
            self._set_adapter_property(msg.body[0], msg.body[1], msg.body[2])
            return Message.new_method_return(msg)
        raise _err("org.freedesktop.DBus.Error.NotSupported", "not supported")

    def _set_adapter_property(self, interface: str, name: str, value: Variant) -> None:
        if interface != ADAPTER:
            raise _err("org.freedesktop.DBus.Error.InvalidArgs", "No such property")
        if name == "Powered" and value.signature == "b":
            self._set_powered(bool(value.value))
        elif name == "Alias" and value.signature == "s":
            self._alias = value.value or self.host
            self._emit_changed(ADAPTER_PATH, ADAPTER, {"Alias": Variant("s", self._alias)})
        elif name in ("Discoverable", "Pairable") and value.signature == "b":
            pass  # accepted and ignored: discovery is all this air simulates
        else:
            raise _err("org.freedesktop.DBus.Error.PropertyReadOnly", f"{name} cannot be set")

    def _set_powered(self, powered: bool) -> None:
        if powered == self.powered:
            return
        was_discovering = bool(self._sessions) and self.powered
        self.powered = powered
        self._log.info("adapter_powered", powered=powered)
        if not powered:
            # Powering off ends every discovery session and forgets temporary devices.
            self._sessions.clear()
            for address in list(self._devices):
                self._remove_device(address)
        self._emit_changed(
            ADAPTER_PATH,
            ADAPTER,
            {
                "Powered": Variant("b", powered),
                "PowerState": Variant("s", "on" if powered else "off"),
            },
        )
        self._set_discovering(was_discovering)

    def _adapter_call(self, msg: Message) -> Message | bool:
        interface, member, sender = msg.interface, msg.member, msg.sender
        assert sender is not None
        if interface in (ADAPTER, None):
            if member == "SetDiscoveryFilter" and msg.signature == "a{sv}":
                return self._set_discovery_filter(msg, sender)
            if member == "StartDiscovery":
                return self._start_discovery(msg, sender)
            if member == "StopDiscovery":
                return self._stop_discovery(msg, sender)
            if member == "RemoveDevice" and msg.signature == "o":
                address = next(
                    (d.address for d in self._devices.values() if d.path == msg.body[0]), None
                )
                if address is None:
                    raise _err("org.bluez.Error.DoesNotExist", "Does Not Exist")
                self._remove_device(address)
                return Message.new_method_return(msg)
            if member == "GetDiscoveryFilters":
                keys = ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Pattern"]
                return Message.new_method_return(msg, "as", [keys])
        if interface in (ADV_MANAGER, None):
            if member == "RegisterAdvertisement" and msg.signature == "oa{sv}":
                self._spawn(self._register_advertisement(msg, sender, msg.body[0]))
                return True
            if member == "UnregisterAdvertisement" and msg.signature == "o":
                return self._unregister_advertisement(msg, sender, msg.body[0])
        if interface in (MONITOR_MANAGER, None) and self._with_monitor:
            if member == "RegisterMonitor" and msg.signature == "o":
                return self._register_monitor(msg, sender, msg.body[0])
            if member == "UnregisterMonitor" and msg.signature == "o":
                app = self._monitor_apps.pop((sender, msg.body[0]), None)
                if app is None:
                    raise _err("org.bluez.Error.DoesNotExist", "Does Not Exist")
                return Message.new_method_return(msg)
        if interface in (GATT_MANAGER, None) and member in (
            "RegisterApplication",
            "UnregisterApplication",
        ):
            return Message.new_method_return(msg)
        return False

    # ---- discovery -------------------------------------------------------------

    def _set_discovery_filter(self, msg: Message, sender: str) -> Message:
        if not msg.body[0]:
            self._filters.pop(sender, None)
            return Message.new_method_return(msg)
        try:
            self._filters[sender] = parse_discovery_filter(msg.body[0])
        except InvalidFilter as exc:
            raise _err("org.bluez.Error.InvalidArguments", str(exc)) from None
        return Message.new_method_return(msg)

    def _start_discovery(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise _err("org.bluez.Error.NotReady", "Resource Not Ready")
        if sender in self._sessions:
            raise _err("org.bluez.Error.InProgress", "Operation already in progress")
        before = bool(self._sessions)
        self._sessions.add(sender)
        self._log.info("discovery_started", client=sender)
        self._set_discovering(before)
        return Message.new_method_return(msg)

    def _stop_discovery(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise _err("org.bluez.Error.NotReady", "Resource Not Ready")
        if sender not in self._sessions:
            raise _err("org.bluez.Error.Failed", "No discovery started")
        self._sessions.discard(sender)
        self._filters.pop(sender, None)
        self._log.info("discovery_stopped", client=sender)
        self._set_discovering(True)
        return Message.new_method_return(msg)

    # ---- advertising -----------------------------------------------------------

    async def _register_advertisement(self, msg: Message, sender: str, path: str) -> None:
        key = (sender, path)
        try:
            if not self.powered:
                raise _err("org.bluez.Error.NotReady", "Resource Not Ready")
            if key in self._adverts or key in self._pending_adverts:
                raise _err("org.bluez.Error.AlreadyExists", "Already Exists")
            if len(self._adverts) + len(self._pending_adverts) >= MAX_ADVERTISEMENTS:
                raise _err("org.bluez.Error.NotPermitted", "Maximum advertisements reached")
            self._pending_adverts.add(key)
            try:
                advertisement = await self._read_advertisement(sender, path)
            finally:
                self._pending_adverts.discard(key)
            structures = ad_structures(advertisement, self._alias)
            if ad_length(structures) > LEGACY_ADV_MAX:
                raise _err(
                    "org.bluez.Error.InvalidLength",
                    f"Advertising data too long ({ad_length(structures)} > {LEGACY_ADV_MAX} bytes)",
                )
            if not self.powered:
                raise _err("org.bluez.Error.NotReady", "Resource Not Ready")
        except DBusError as exc:
            self._bus.send(Message.new_error(msg, exc.type, exc.text))
            return
        slot = min(set(range(1, MAX_ADVERTISEMENTS + 1)) - set(self._adverts.values()))
        self._adverts[key] = slot
        address, address_type = instance_address(self.address, slot)
        interval = (
            advertisement.min_interval_ms / 1000.0
            if advertisement.min_interval_ms
            else self._interval_s
        )
        tx_ad = None
        if "tx-power" in advertisement.includes:
            tx_ad = advertisement.tx_power if advertisement.tx_power is not None else 0
        self._air.start_airing(
            self.host,
            key,
            Transmission(
                address=address,
                address_type=address_type,
                advertisement=advertisement,
                structures=tuple(structures),
                name=advertised_name(advertisement, self._alias),
                tx_power_ad=tx_ad,
                interval_s=interval,
            ),
        )
        self._log.info("advertisement_registered", client=sender, path=path, address=address)
        self._emit_changed(ADAPTER_PATH, ADV_MANAGER, self._adv_manager_props())
        self._bus.send(Message.new_method_return(msg))

    async def _read_advertisement(self, sender: str, path: str) -> Advertisement:
        try:
            reply = await asyncio.wait_for(
                self._bus.call(
                    Message(
                        destination=sender,
                        path=path,
                        interface=PROPERTIES,
                        member="GetAll",
                        signature="s",
                        body=[ADV],
                    )
                ),
                timeout=5.0,
            )
        except TimeoutError:
            raise _err("org.bluez.Error.Failed", "Failed to parse advertisement") from None
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            raise _err("org.bluez.Error.Failed", "Failed to parse advertisement")
        try:
            return parse_advertisement(reply.body[0])
        except InvalidAdvertisement as exc:
            raise _err("org.bluez.Error.InvalidArguments", str(exc)) from None

    def _unregister_advertisement(self, msg: Message, sender: str, path: str) -> Message:
        if (sender, path) not in self._adverts:
            raise _err("org.bluez.Error.DoesNotExist", "Does Not Exist")
        self._drop_advert((sender, path))
        return Message.new_method_return(msg)

    def _drop_advert(self, key: tuple[str, str]) -> None:
        self._adverts.pop(key, None)
        self._air.stop_airing(self.host, key)
        self._log.info("advertisement_unregistered", client=key[0], path=key[1])
        self._emit_changed(ADAPTER_PATH, ADV_MANAGER, self._adv_manager_props())

    # ---- advertisement monitors --------------------------------------------------

    def _register_monitor(self, msg: Message, sender: str, root: str) -> Message:
        key = (sender, root)
        if key in self._monitor_apps:
            raise _err("org.bluez.Error.AlreadyExists", "Already Exists")
        app = _MonitorApp(owner=sender, root=root)
        self._monitor_apps[key] = app
        # bleak exports its monitor only after this call returns, so read it afterwards.
        self._spawn(self._discover_monitors(app))
        return Message.new_method_return(msg)

    async def _discover_monitors(self, app: _MonitorApp) -> None:
        for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
            await asyncio.sleep(delay)
            if self._monitor_apps.get((app.owner, app.root)) is not app:
                return
            found = await self._read_monitor_objects(app)
            if found:
                for monitor_path, patterns in found.items():
                    app.monitors[monitor_path] = patterns
                    self._call_monitor(app.owner, monitor_path, "Activate", "", [])
                self._log.info("monitor_registered", client=app.owner, monitors=len(found))
                return
        self._log.warning("monitor_without_patterns", client=app.owner, root=app.root)

    async def _read_monitor_objects(self, app: _MonitorApp) -> dict[str, list[OrPattern]]:
        candidates: dict[str, Mapping[str, Any]] = {}
        reply = await self._bus.call(
            Message(
                destination=app.owner,
                path=app.root,
                interface=OBJECT_MANAGER,
                member="GetManagedObjects",
            )
        )
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
            for path, interfaces in reply.body[0].items():
                if MONITOR in interfaces:
                    candidates[path] = interfaces[MONITOR]
        reply = await self._bus.call(
            Message(
                destination=app.owner,
                path=app.root,
                interface=PROPERTIES,
                member="GetAll",
                signature="s",
                body=[MONITOR],
            )
        )
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN and reply.body[0]:
            candidates[app.root] = reply.body[0]
        out: dict[str, list[OrPattern]] = {}
        for path, props in candidates.items():
            kind = props.get("Type")
            patterns = props.get("Patterns")
            if not isinstance(kind, Variant) or kind.value != "or_patterns":
                continue
            if not isinstance(patterns, Variant) or patterns.signature != "a(yyay)":
                continue
            try:
                out[path] = parse_or_patterns(patterns.value)
            except InvalidFilter:
                self._log.warning("monitor_rejected", client=app.owner, path=path)
        return out

    def _call_monitor(
        self, owner: str, path: str, member: str, signature: str, body: list[Any]
    ) -> None:
        self._bus.send(
            Message(
                destination=owner,
                path=path,
                interface=MONITOR,
                member=member,
                signature=signature,
                body=body,
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )

    # ---- clients leaving ---------------------------------------------------------

    def _owner_left(self, owner: str) -> None:
        for key in [k for k in self._adverts if k[0] == owner]:
            self._drop_advert(key)
        for key in [k for k in self._monitor_apps if k[0] == owner]:
            del self._monitor_apps[key]
        self._filters.pop(owner, None)
        if owner in self._sessions:
            self._sessions.discard(owner)
            self._set_discovering(True)

    # ---- hearing adverts ---------------------------------------------------------

    def receive(self, transmission: Transmission, rssi: int) -> None:
        """An advert reached this host's antenna at ``rssi``; report it like bluetoothd."""
        if not self.powered:
            return
        ad = transmission.advertisement
        uuids = list(ad.service_uuids) + list(ad.service_data)
        by_discovery = False
        duplicates = False
        if self._sessions:
            merged = merge_filters(self._filters.get(s, DiscoveryFilter()) for s in self._sessions)
            by_discovery = filter_accepts(
                merged,
                rssi=rssi,
                tx_power=transmission.tx_power_ad,
                address=transmission.address,
                name=transmission.name,
                uuids=uuids,
            )
            duplicates = merged.duplicate_data
        matched: list[tuple[str, str]] = []
        for app in self._monitor_apps.values():
            for monitor_path, patterns in app.monitors.items():
                if matches_or_patterns(transmission.structures, patterns):
                    matched.append((app.owner, monitor_path))
        if not by_discovery and not matched:
            return
        if not self._sessions and not self._passive_window_open():
            return  # only monitors listen, and the passive scan window is closed
        if matched:
            duplicates = True
        device = self._update_device(transmission, rssi, duplicates)
        for monitor in matched:
            if monitor not in device.found_by:
                device.found_by.add(monitor)
                self._call_monitor(monitor[0], monitor[1], "DeviceFound", "o", [device.path])

    def _passive_window_open(self) -> bool:
        phase = (self._now() + self._scan_phase_s) % PASSIVE_SCAN_INTERVAL_S
        return phase < PASSIVE_SCAN_WINDOW_S

    def _device_props(self, transmission: Transmission, rssi: int) -> dict[str, Variant]:
        ad = transmission.advertisement
        props: dict[str, Variant] = {
            "Address": Variant("s", transmission.address),
            "AddressType": Variant("s", transmission.address_type),
            "Alias": Variant("s", transmission.name or transmission.address.replace(":", "-")),
            "Paired": Variant("b", False),
            "Bonded": Variant("b", False),
            "Trusted": Variant("b", False),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", False),
            "ServicesResolved": Variant("b", False),
            "UUIDs": Variant("as", sorted(set(ad.service_uuids) | set(ad.service_data))),
            "Adapter": Variant("o", ADAPTER_PATH),
            "RSSI": Variant("n", rssi),
            "ManufacturerData": Variant(
                "a{qv}", {k: Variant("ay", v) for k, v in ad.manufacturer_data.items()}
            ),
            "ServiceData": Variant(
                "a{sv}", {k: Variant("ay", v) for k, v in ad.service_data.items()}
            ),
        }
        if transmission.name:
            props["Name"] = Variant("s", transmission.name)
        if transmission.tx_power_ad is not None:
            props["TxPower"] = Variant("n", transmission.tx_power_ad)
        return props

    def _update_device(self, transmission: Transmission, rssi: int, duplicates: bool) -> _Device:
        address = transmission.address
        fresh = self._device_props(transmission, rssi)
        device = self._devices.get(address)
        now = self._now()
        if device is None:
            path = device_path(address)
            device = _Device(path=path, address=address, props=fresh, last_seen=now)
            self._devices[address] = device
            self._emit(
                "/",
                OBJECT_MANAGER,
                "InterfacesAdded",
                "oa{sa{sv}}",
                [path, {DEVICE: fresh, PROPERTIES: {}, "org.freedesktop.DBus.Introspectable": {}}],
            )
            return device
        device.last_seen = now
        changed: dict[str, Variant] = {"RSSI": fresh["RSSI"]}
        # bluetoothd keeps data of every company/service ever heard and only adds to it.
        for name in ("ManufacturerData", "ServiceData"):
            merged = {**device.props[name].value, **fresh[name].value}
            old = {k: bytes(v.value) for k, v in device.props[name].value.items()}
            new = {k: bytes(v.value) for k, v in merged.items()}
            if duplicates or old != new:
                changed[name] = Variant(fresh[name].signature, merged)
        for name in ("Name", "Alias", "TxPower", "UUIDs"):
            if name in fresh and (name not in device.props or device.props[name] != fresh[name]):
                changed[name] = fresh[name]
        device.props.update(changed)
        self._emit_changed(device.path, DEVICE, changed)
        return device

    def _remove_device(self, address: str) -> None:
        device = self._devices.pop(address, None)
        if device is None:
            return
        for owner, monitor_path in device.found_by:
            if any(a.owner == owner for a in self._monitor_apps.values()):
                self._call_monitor(owner, monitor_path, "DeviceLost", "o", [device.path])
        self._emit(
            "/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [device.path, list(DEVICE_INTERFACES)]
        )
        self._log.info("device_removed", address=address)

    async def _sweep_devices(self) -> None:
        period = max(0.05, min(1.0, self._device_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = self._now() - self._device_timeout_s
            for address in [a for a, d in self._devices.items() if d.last_seen < cutoff]:
                self._remove_device(address)

    # ---- the air's control interface ----------------------------------------------

    def _air_call(self, msg: Message) -> Message:
        if msg.member == "MoveHost" and msg.signature == "sdd":
            name, x, y = msg.body
            try:
                self._air.move_host(name, float(x), float(y))
            except KeyError:
                raise _err("org.btogether.Error.UnknownHost", f"no host named {name!r}") from None
            return Message.new_method_return(msg)
        if msg.member == "ListHosts" and msg.signature == "":
            return Message.new_method_return(msg, "a(sdd)", [self._air.host_positions()])
        raise _err(
            "org.freedesktop.DBus.Error.UnknownMethod",
            f"{msg.member} is not a method of {AIR_INTERFACE}",
        )
