"""One simulated host's ``org.bluez``: bluetoothd 5.66 as its D-Bus clients see it.

The adapter, its discovery and its devices, around the pure rules of
:mod:`hw.sim.discovery` (sessions and filters) and :mod:`hw.sim.reporting` (what a
device signals); adverts are :mod:`hw.sim.advertising`'s, monitor apps
:mod:`hw.sim.monitor_apps`' and agents/profiles :mod:`hw.sim.registrations`'.  All is
answered over a real (private) D-Bus connection with low-level handlers, so each
caller's unique name is known the way bluetoothd knows it: discovery sessions,
filters, adverts, monitor apps and agents are per caller and go away when the caller
leaves the bus.  What is heard comes in through :meth:`HostBluez.receive`, from the
air (:mod:`hw.sim.air`).

Out of scope, answered the way bluetoothd answers when it cannot do it: connecting
and pairing (``Device1.Connect`` fails with "le-connection-abort-by-local", ``Pair``
with ConnectionAttemptFailed "Page Timeout"), profiles and GATT applications (accepted
and kept, never used).  Every object answers ``Introspect`` (:mod:`hw.sim.introspection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from hw.sim import introspection
from hw.sim.advertising import AdapterView, AdvertisingManager, AirLink, Transmission
from hw.sim.bus import (
    ADAPTER,
    ADAPTER_PATH,
    ADV_MANAGER,
    AGENT_MANAGER,
    BLUEZ_NAME,
    DEVICE,
    GATT_MANAGER,
    INTROSPECTABLE,
    MONITOR_MANAGER,
    OBJECT_MANAGER,
    PROFILE_MANAGER,
    PROPERTIES,
    ROOT_PATH,
    BluezError,
    call_bus,
    does_not_exist,
    emit_changed,
    invalid_arguments,
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
from hw.sim.monitor_apps import MonitorApps
from hw.sim.registrations import Registrations
from hw.sim.reporting import (
    RemoteDevice,
    apply_advert,
    changed_properties,
    device_properties,
    invalidate_rssi_and_tx_power,
    parse_eir,
)

AIR_NAME = "org.btogether.Air"
AIR_PATH = "/org/btogether/Air"
AIR_INTERFACE = "org.btogether.Air1"
DEFAULT_DISCOVERABLE_TIMEOUT_S = 180  # main.conf DiscoverableTimeout
# The kernel's passive (background) LE scan while only monitors listen: a 30 ms window
# every 60 ms (le_scan_window / le_scan_interval).  Discovery scans continuously.
PASSIVE_SCAN_INTERVAL_S = 0.060
PASSIVE_SCAN_WINDOW_S = 0.030
SWEEP_PERIOD_S = 0.25

_log = structlog.get_logger(__name__)


def host_address(host: str) -> str:
    """A stable public-looking adapter address for a host name."""
    digest = hashlib.sha256(host.encode()).digest()
    return ":".join(f"{b:02X}" for b in (0xC0, *digest[:5]))


def device_path(address: str) -> str:
    return f"{ADAPTER_PATH}/dev_{address.replace(':', '_')}"


@dataclass
class _Device:
    path: str
    record: RemoteDevice


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
        self._experimental = experimental
        self._scan_phase_s = scan_phase_s
        self.powered = True
        self._alias: str | None = None
        self._discoverable = False
        self._discoverable_timeout = DEFAULT_DISCOVERABLE_TIMEOUT_S
        self._discovery_discoverable = False
        self._pairable = True  # bluetoothd makes the adapter bondable when it starts
        self._pairable_timeout = 0
        self._mode_timers: dict[str, asyncio.TimerHandle] = {}
        self._discovery = DiscoverySessions(SCAN_TYPE_DUAL)
        self._found_in_discovery: set[str] = set()
        self._devices: dict[str, _Device] = {}
        self._adverts = AdvertisingManager(
            host=host,
            adapter_address=self.address,
            bus=bus,
            air=air,
            adapter=lambda: AdapterView(self._alias or self.host, self.discoverable),
            interval_s=interval_s,
            experimental=experimental,
        )
        self._monitors = MonitorApps(bus, host)
        self._registrations = Registrations()
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = _log.bind(host=host)

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._bus.add_message_handler(self._on_message)
        for name in (BLUEZ_NAME, AIR_NAME):
            await self._bus.request_name(name)
        await call_bus(
            self._bus,
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
        await self._monitors.close()
        self._adverts.close()
        for handle in self._mode_timers.values():
            handle.cancel()
        self._bus.disconnect()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                ADV_MANAGER: self._adverts.properties(),
            }
            if self._experimental:
                interfaces[MONITOR_MANAGER] = {
                    "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
                    "SupportedFeatures": Variant("as", []),
                }
            return interfaces
        device = self._device_at(path)
        if device is not None:
            return {DEVICE: device_properties(device.record, ADAPTER_PATH, self._experimental)}
        return None

    def _device_at(self, path: str) -> _Device | None:
        return next((d for d in self._devices.values() if d.path == path), None)

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

    def _adapter_changed(self, *names: str) -> None:
        props = self._adapter_props()
        emit_changed(self._bus, ADAPTER_PATH, ADAPTER, {n: props[n] for n in names if n in props})

    # ---- message dispatch ------------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        try:
            return self._dispatch(msg)
        except BluezError as error:
            return Message.new_error(msg, error.name, error.text)

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus":
            name, _old, new = msg.body
            if not new and name.startswith(":"):
                self._owner_left(name)
        elif msg.interface == OBJECT_MANAGER:
            self._monitors.on_signal(msg)

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
        sender = msg.sender or ""
        if path == ROOT_PATH:
            if interface in (AGENT_MANAGER, None) and self._registrations.agent_call(msg, sender):
                return Message.new_method_return(msg)
            if interface in (PROFILE_MANAGER, None) and self._registrations.profile_call(
                msg, sender
            ):
                return Message.new_method_return(msg)
            return False
        if path == ADAPTER_PATH:
            return self._adapter_call(msg, sender)
        if interface in (DEVICE, None):
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
                raise BluezError(invalid, f"No such interface '{msg.body[0]}'")
            return Message.new_method_return(msg, "a{sv}", [props])
        if msg.member == "Get" and msg.signature == "ss":
            iface, name = msg.body
            if iface not in interfaces:
                raise BluezError(invalid, f"No such interface '{iface}'")
            value = interfaces[iface].get(name)
            if value is None:
                raise BluezError(invalid, f"No such property '{name}'")
            return Message.new_method_return(msg, "v", [value])
        if msg.member == "Set" and msg.signature == "ssv":
            iface, name, value = msg.body
            if iface not in interfaces:
                raise BluezError(invalid, f"No such interface '{iface}'")
            spec = introspection.BY_NAME.get(iface)
            prop = next((p for p in spec.properties if p.name == name), None) if spec else None
            if prop is None or (prop.experimental and not self._experimental):
                raise BluezError(
                    "org.freedesktop.DBus.Error.UnknownProperty", f"No such property '{name}'"
                )
            if not prop.writable:
                raise BluezError(
                    "org.freedesktop.DBus.Error.PropertyReadOnly",
                    f"Property '{name}' is not writable",
                )
            if value.signature != prop.type:
                raise BluezError(invalid, f"Invalid signature for '{name}'")
            if msg.path == ADAPTER_PATH:
                self._set_adapter_property(name, value.value)
            else:
                self._set_device_property(msg.path or "", name, value.value)
            return Message.new_method_return(msg)
        raise BluezError(
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
            raise BluezError("org.bluez.Error.Failed", "Not Powered")
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
            self._adverts.refresh()

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
        device = self._device_at(path)
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
            raise BluezError("org.bluez.Error.NotSupported", "Operation is not supported")
        changed, _ = changed_properties(record, [name], ADAPTER_PATH)
        emit_changed(self._bus, path, DEVICE, changed)

    def _set_powered(self, powered: bool) -> None:
        if powered == self.powered:
            return
        self._log.info("adapter_powered", powered=powered)
        if not powered:
            # property_set_mode: btd_adv_monitor_power_down, clear_discoverable and
            # remove_temporary_devices; then adapter_stop ends every discovery.
            self._monitors.fire_lost_timers(self._now(), all_running=True)
            if self._discoverable:
                self._discoverable = False
                self._cancel_mode_timer("Discoverable")
                self._adapter_changed("Discoverable")
            for address in list(self._devices):
                self._remove_device(address)
            self._discovery.clear()
            self._found_in_discovery.clear()
            self._discovery_discoverable = False
        self.powered = powered
        # settings_changed and adapter_stop: one PropertiesChanged (gdbus batches them).
        names = ["Powered"] if powered else ["Powered", "Discovering"]
        self._adapter_changed(*names, *(("PowerState",) if self._experimental else ()))

    # ---- hci0: discovery, advertising, monitors, GATT -----------------------------------

    def _adapter_call(self, msg: Message, sender: str) -> Message | bool:
        interface, member = msg.interface, msg.member
        if interface in (ADAPTER, None):
            if member == "SetDiscoveryFilter" and msg.signature == "a{sv}":
                return self._set_discovery_filter(msg, sender)
            if member == "StartDiscovery" and msg.signature == "":
                return self._start_discovery(msg, sender)
            if member == "StopDiscovery" and msg.signature == "":
                return self._stop_discovery(msg, sender)
            if member == "RemoveDevice" and msg.signature == "o":
                device = self._device_at(msg.body[0])
                if device is None:
                    raise does_not_exist()
                self._remove_device(device.record.address)
                return Message.new_method_return(msg)
            if member == "GetDiscoveryFilters" and msg.signature == "":
                keys = ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData"]
                keys += ["Discoverable", "Pattern"]
                return Message.new_method_return(msg, "as", [keys])
        if interface in (ADV_MANAGER, None):
            if member == "RegisterAdvertisement" and msg.signature == "oa{sv}":
                self._spawn(self._adverts.register(msg, sender, msg.body[0]))
                return True
            if member == "UnregisterAdvertisement" and msg.signature == "o":
                self._adverts.unregister(sender, msg.body[0])
                return Message.new_method_return(msg)
        if interface in (MONITOR_MANAGER, None) and self._experimental:
            if member == "RegisterMonitor" and msg.signature == "o":
                self._monitors.register(msg, sender, msg.body[0])
                return True
            if member == "UnregisterMonitor" and msg.signature == "o":
                self._monitors.unregister(sender, msg.body[0])
                return Message.new_method_return(msg)
        if interface in (GATT_MANAGER, None) and self._registrations.gatt_call(msg, sender):
            return Message.new_method_return(msg)
        return False

    def _device_call(self, msg: Message) -> Message | bool:
        member = msg.member
        if member in ("Connect", "ConnectProfile"):
            # No link layer here: what bluetoothd answers when the LE connection attempt
            # is given up (btd_error_le_errno(ECONNABORTED)).
            raise BluezError("org.bluez.Error.Failed", "le-connection-abort-by-local")
        if member == "Pair":
            # new_authentication_return for MGMT_STATUS_CONNECT_FAILED.
            raise BluezError("org.bluez.Error.ConnectionAttemptFailed", "Page Timeout")
        if member == "CancelPairing":
            raise does_not_exist()
        if member == "DisconnectProfile":
            raise BluezError("org.bluez.Error.NotConnected", "Not Connected")
        if member == "Disconnect":
            return Message.new_method_return(msg)
        return False

    def _set_discovery_filter(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise BluezError("org.bluez.Error.NotReady", "Resource Not Ready")
        try:
            flt = parse_discovery_filter(msg.body[0], SCAN_TYPE_DUAL)
        except InvalidFilter as exc:
            self._log.info("discovery_filter_refused", client=sender, reason=str(exc))
            raise invalid_arguments() from None
        self._discovery.set_filter(sender, flt, self._now())
        self._discovery_changed()
        return Message.new_method_return(msg)

    def _start_discovery(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise BluezError("org.bluez.Error.NotReady", "Resource Not Ready")
        before = self._discovery.discovering
        try:
            self._discovery.start(sender, self._now())
        except DiscoveryError as exc:
            raise BluezError(exc.name, exc.text) from None
        self._log.info("discovery_started", client=sender)
        if not before:
            self._adapter_changed("Discovering")
        self._discovery_changed()
        return Message.new_method_return(msg)

    def _stop_discovery(self, msg: Message, sender: str) -> Message:
        if not self.powered:
            raise BluezError("org.bluez.Error.NotReady", "Resource Not Ready")
        try:
            last = self._discovery.stop(sender, self._now())
        except DiscoveryError as exc:
            raise BluezError(exc.name, exc.text) from None
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
                self._adverts.refresh()

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
                emit_changed(self._bus, device.path, DEVICE, {}, invalidated)
        self._found_in_discovery.clear()
        for address in [a for a, d in self._devices.items() if not d.record.connectable]:
            self._remove_device(address)

    # ---- clients leaving ---------------------------------------------------------

    def _owner_left(self, owner: str) -> None:
        self._adverts.owner_left(owner)
        self._monitors.owner_left(owner)
        self._registrations.owner_left(owner)
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
        layout = transmission.layout
        if self._discovery.listening_le(now):
            structures = layout.adv_data + (layout.scan_response if layout.scannable else ())
        elif self._monitors.listening and self._passive_window_open(now):
            structures = layout.adv_data  # a passive scan sends no scan requests
        else:
            return
        ad = parse_eir(structures)
        kernel = self._discovery.kernel
        if kernel is not None and not kernel_accepts(kernel, rssi, ad.services):
            return
        matched = self._monitors.matching(structures)
        discovering = self._discovery.discovering
        if not discovering and not matched:
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
            if not discoverable and not matched:
                return
            device = _Device(device_path(address), RemoteDevice(address, transmission.address_type))
            self._devices[address] = device
        record = device.record
        record.last_seen = now  # device_update_last_seen
        record.connectable = layout.connectable
        if not matched and (
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
            emit_changed(self._bus, device.path, DEVICE, values, invalidated)
        if discovering:
            self._found_in_discovery.add(address)
        if matched:
            self._monitors.notify_found(matched, device.path, rssi, now)

    def _announce(self, device: _Device) -> None:
        """A new device object: InterfacesAdded with all it has (no PropertiesChanged after)."""
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

    def _passive_window_open(self, now: float) -> bool:
        phase = (now + self._scan_phase_s) % PASSIVE_SCAN_INTERVAL_S
        return phase < PASSIVE_SCAN_WINDOW_S

    def _remove_device(self, address: str) -> None:
        """btd_adapter_remove_device: monitors forget it (btd_adv_monitor_device_remove)."""
        device = self._devices.pop(address, None)
        if device is None:
            return
        self._found_in_discovery.discard(address)
        self._monitors.forget_device(device.path)
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
            self._monitors.fire_lost_timers(now)

    # ---- the air's control interface ----------------------------------------------

    def _air_call(self, msg: Message) -> Message:
        if msg.member == "MoveHost" and msg.signature == "sdd":
            name, x, y = msg.body
            try:
                self._air.move_host(name, float(x), float(y))
            except KeyError:
                raise BluezError(
                    "org.btogether.Error.UnknownHost", f"no host named {name!r}"
                ) from None
            return Message.new_method_return(msg)
        if msg.member == "ListHosts" and msg.signature == "":
            return Message.new_method_return(msg, "a(sdd)", [self._air.host_positions()])
        raise BluezError(
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
