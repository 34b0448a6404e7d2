"""Linux advertising through BlueZ's ``LEAdvertisingManager1``, over dbus-fast.

We export an ``org.bluez.LEAdvertisement1`` object and register it; bluetoothd then
reads its properties from us (``GetAll``) once.  Registration is one-shot, so a new
payload means unregister, swap, register again.  Before registering we look for
what is missing — the system bus, bluetoothd, an adapter with LE advertising, power,
room in the 31-byte advert — so that each gives its own error instead of a bare D-Bus
error name (bluetoothd answers every unusable advert with "Failed to parse
advertisement.").

A discoverable payload sets ``Discoverable`` (BlueZ >= 5.46), which makes bluetoothd
put the Flags AD (LE General Discoverable, BR/EDR not supported) in the advert.  BlueZ
refuses Flags in a "broadcast" advertisement ("Broadcast cannot set flags",
``src/advertising.c`` parse_advertisement), so a discoverable advert is registered as
"peripheral" (connectable).  A ``LocalName`` goes in the scan response (legacy
advertising, generate_scan_rsp), which only active scanners ask for.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from hw.advertiser import (
    AdvertiserError,
    AdvertiserUnavailable,
    AdvertPayload,
    UnavailableReason,
)

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADV = "org.bluez.LEAdvertisement1"
PROPERTIES = "org.freedesktop.DBus.Properties"
DEFAULT_SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"

_INTROSPECTION = """<node>
 <interface name="org.bluez.LEAdvertisement1">
  <method name="Release"/>
  <property name="Type" type="s" access="read"/>
  <property name="ManufacturerData" type="a{qv}" access="read"/>
  <property name="ServiceData" type="a{sv}" access="read"/>
  <property name="LocalName" type="s" access="read"/>
  <property name="Discoverable" type="b" access="read"/>
 </interface>
</node>"""

_log = structlog.get_logger(__name__)


def advertisement_properties(payload: AdvertPayload) -> dict[str, Variant]:
    """The LEAdvertisement1 properties bluetoothd will read for ``payload``."""
    peripheral = payload.connectable or payload.discoverable
    props: dict[str, Variant] = {
        "Type": Variant("s", "peripheral" if peripheral else "broadcast"),
        "ManufacturerData": Variant(
            "a{qv}",
            {
                company: Variant("ay", bytes(data))
                for company, data in payload.manufacturer_data.items()
            },
        ),
    }
    if payload.service_data:
        props["ServiceData"] = Variant(
            "a{sv}",
            {uuid: Variant("ay", bytes(data)) for uuid, data in payload.service_data.items()},
        )
    if payload.local_name:
        props["LocalName"] = Variant("s", payload.local_name)
    if payload.discoverable:
        props["Discoverable"] = Variant("b", True)
    return props


def advert_length(payload: AdvertPayload) -> int:
    """Bytes of the advertising PDU bluetoothd builds for ``payload`` (the name is not in it).

    Each AD structure is a length byte, a type byte and its data: Flags (1 byte) when
    discoverable, manufacturer data (company ID + data), service data (a 16-bit UUID on
    the Bluetooth base, else 128-bit, + data).
    """
    length = 3 if payload.discoverable else 0
    length += sum(4 + len(data) for data in payload.manufacturer_data.values())
    for uuid, data in payload.service_data.items():
        text = uuid.lower()
        short = len(text) <= 8 or (
            text.startswith("0000") and text.endswith("-0000-1000-8000-00805f9b34fb")
        )
        length += 2 + (2 if short else 16) + len(data)
    return length


def _check_payload(payload: AdvertPayload) -> None:
    for company, data in payload.manufacturer_data.items():
        if not 0 <= company <= 0xFFFF:
            raise AdvertiserError(f"company ID {company} is not a 16-bit number")
        if len(data) > 27:
            raise AdvertiserError(f"manufacturer data of {len(data)} bytes cannot fit in an advert")
    length = advert_length(payload)
    if length > 31:
        raise AdvertiserError(
            f"the advert does not fit in 31 bytes ({length} bytes with "
            + ("the discoverable flags" if payload.discoverable else "its data")
            + "); send less data"
        )


class BlueZAdvertiser:
    """One advertisement on one BlueZ adapter."""

    def __init__(self, bus_address: str | None = None, adapter: str | None = None) -> None:
        self._bus_address = bus_address
        self._adapter_name = adapter
        self._bus: MessageBus | None = None
        self._adapter_path: str | None = None
        self._path = f"/org/btogether/advertisement{os.getpid()}_{id(self):x}"
        self._props: dict[str, Variant] = {}
        self._registered = False
        self.released = False
        self._log = _log.bind(path=self._path)

    @property
    def adapter_path(self) -> str | None:
        return self._adapter_path

    @property
    def registered(self) -> bool:
        return self._registered

    async def __aenter__(self) -> BlueZAdvertiser:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- public API --------------------------------------------------------------

    async def start(self, payload: AdvertPayload) -> None:
        """Find the adapter, export the advertisement and register it."""
        _check_payload(payload)
        if self._bus is None:
            await self._connect()
        self._props = advertisement_properties(payload)
        await self._register()

    async def replace(self, payload: AdvertPayload) -> None:
        """Put a new payload on the air (unregister, swap, re-register, as BlueZ needs)."""
        _check_payload(payload)
        if self._bus is None:
            await self.start(payload)
            return
        if self._registered:
            await self._unregister()
        self._props = advertisement_properties(payload)
        if self._bus is None:  # lost while unregistering
            await self.start(payload)
            return
        await self._register()

    async def stop(self) -> None:
        """Take the advertisement off the air and leave the bus."""
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            if self._registered and bus.connected:
                self._bus = bus
                await self._unregister()
        except AdvertiserError as exc:
            self._log.warning("advertisement_unregister_failed", error=str(exc))
        finally:
            self._bus = None
            bus.disconnect()

    # ---- steps -------------------------------------------------------------------

    def _where(self) -> str:
        return self._bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS

    async def _connect(self) -> None:
        try:
            bus = await MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM).connect()
        except Exception as exc:  # any failure to reach the bus has the same remedy
            raise AdvertiserUnavailable(
                UnavailableReason.NO_SYSTEM_BUS,
                f"cannot reach the D-Bus system bus at {self._where()} "
                f"({exc or type(exc).__name__}); "
                "is dbus running? (or point DBUS_SYSTEM_BUS_ADDRESS at a simulated host)",
            ) from None
        try:
            self._adapter_path = await self._find_adapter(bus)
        except BaseException:
            bus.disconnect()
            raise
        bus.add_message_handler(self._on_message)
        self._bus = bus
        self._log = self._log.bind(adapter=self._adapter_path)

    async def _call(self, bus: MessageBus, **kwargs: Any) -> Message:
        try:
            if not bus.connected:
                raise EOFError("disconnected")
            reply = await bus.call(Message(**kwargs))
        except (OSError, EOFError) as exc:
            # The bus went away (dbus restarted, or the simulated host stopped).  Forget
            # it, so the next start()/replace() connects afresh.
            if self._bus is bus:
                self._bus = None
            self._registered = False
            bus.disconnect()
            raise AdvertiserUnavailable(
                UnavailableReason.NO_SYSTEM_BUS,
                f"lost the connection to the D-Bus system bus at {self._where()} ({exc})",
            ) from None
        assert reply is not None
        return reply

    async def _find_adapter(self, bus: MessageBus) -> str:
        reply = await self._call(
            bus,
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="NameHasOwner",
            signature="s",
            body=[BLUEZ],
        )
        if reply.message_type != MessageType.METHOD_RETURN or not reply.body[0]:
            raise AdvertiserUnavailable(
                UnavailableReason.NO_BLUEZ,
                "BlueZ is not running: nothing owns org.bluez on the system bus at "
                f"{self._where()} "
                "(start bluetoothd, e.g. systemctl start bluetooth)",
            )
        reply = await self._call(
            bus,
            destination=BLUEZ,
            path="/",
            interface="org.freedesktop.DBus.ObjectManager",
            member="GetManagedObjects",
        )
        if reply.message_type != MessageType.METHOD_RETURN:
            raise AdvertiserUnavailable(
                UnavailableReason.NO_BLUEZ,
                f"BlueZ did not answer GetManagedObjects: {reply.error_name} {reply.body}",
            )
        objects: dict[str, dict[str, dict[str, Variant]]] = reply.body[0]
        adapters = sorted(path for path, ifaces in objects.items() if ADAPTER in ifaces)
        if self._adapter_name:
            wanted = f"/org/bluez/{self._adapter_name}"
            if wanted not in adapters:
                found = ", ".join(p.rsplit("/", 1)[-1] for p in adapters) or "none"
                raise AdvertiserUnavailable(
                    UnavailableReason.NO_ADAPTER,
                    f"no Bluetooth adapter {self._adapter_name} (adapters: {found})",
                )
            adapters = [wanted]
        if not adapters:
            raise AdvertiserUnavailable(
                UnavailableReason.NO_ADAPTER, "no Bluetooth adapter found (BlueZ lists none)"
            )
        capable = [p for p in adapters if ADV_MANAGER in objects[p]]
        if not capable:
            raise AdvertiserUnavailable(
                UnavailableReason.NO_ADAPTER,
                "no Bluetooth adapter here can advertise (no LEAdvertisingManager1 on "
                + ", ".join(p.rsplit("/", 1)[-1] for p in adapters)
                + ")",
            )
        for path in capable:
            powered = objects[path][ADAPTER].get("Powered")
            if powered is not None and powered.value:
                return path
        names = ", ".join(p.rsplit("/", 1)[-1] for p in capable)
        raise AdvertiserUnavailable(
            UnavailableReason.POWERED_OFF,
            f"Bluetooth adapter {names} is powered off (turn it on, e.g. bluetoothctl power on)",
        )

    async def _register(self) -> None:
        assert self._bus is not None and self._adapter_path is not None
        reply = await self._call(
            self._bus,
            destination=BLUEZ,
            path=self._adapter_path,
            interface=ADV_MANAGER,
            member="RegisterAdvertisement",
            signature="oa{sv}",
            body=[self._path, {}],
        )
        if reply.message_type == MessageType.ERROR:
            raise self._registration_error(reply)
        self._registered = True
        self.released = False
        self._log.info("advertisement_registered")

    async def _unregister(self) -> None:
        assert self._bus is not None and self._adapter_path is not None
        self._registered = False
        reply = await self._call(
            self._bus,
            destination=BLUEZ,
            path=self._adapter_path,
            interface=ADV_MANAGER,
            member="UnregisterAdvertisement",
            signature="o",
            body=[self._path],
        )
        if (
            reply.message_type == MessageType.ERROR
            # Not registered any more, or bluetoothd is gone: either way nothing to undo.
            and reply.error_name
            not in ("org.bluez.Error.DoesNotExist", "org.freedesktop.DBus.Error.ServiceUnknown")
        ):
            raise AdvertiserError(
                f"BlueZ could not unregister the advertisement: {reply.error_name}: "
                f"{reply.body[0] if reply.body else ''}"
            )
        self._log.info("advertisement_unregistered")

    def _registration_error(self, reply: Message) -> AdvertiserError:
        name = reply.error_name or ""
        text = str(reply.body[0]) if reply.body else ""
        adapter = (self._adapter_path or "").rsplit("/", 1)[-1]
        if name == "org.bluez.Error.NotReady":
            return AdvertiserUnavailable(
                UnavailableReason.POWERED_OFF,
                f"Bluetooth adapter {adapter} is not ready (powered off?): {text}",
            )
        if name == "org.bluez.Error.NotPermitted":
            return AdvertiserError(f"BlueZ refused another advertisement on {adapter}: {text}")
        if name == "org.freedesktop.DBus.Error.ServiceUnknown":
            return AdvertiserUnavailable(
                UnavailableReason.NO_BLUEZ, "BlueZ went away (bluetoothd stopped)"
            )
        if name in (
            "org.freedesktop.DBus.Error.UnknownMethod",
            "org.freedesktop.DBus.Error.UnknownObject",
        ):
            return AdvertiserUnavailable(
                UnavailableReason.NO_ADAPTER, f"adapter {adapter} has no LE advertising ({text})"
            )
        return AdvertiserError(f"BlueZ could not register the advertisement: {name}: {text}")

    # ---- the exported advertisement object -----------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type != MessageType.METHOD_CALL or msg.path != self._path:
            return False
        if msg.interface == PROPERTIES and msg.member == "GetAll" and msg.signature == "s":
            props = self._props if msg.body[0] == ADV else {}
            return Message.new_method_return(msg, "a{sv}", [props])
        if msg.interface == PROPERTIES and msg.member == "Get" and msg.signature == "ss":
            value = self._props.get(msg.body[1]) if msg.body[0] == ADV else None
            if value is None:
                return Message.new_error(
                    msg, "org.freedesktop.DBus.Error.InvalidArgs", "No such property"
                )
            return Message.new_method_return(msg, "v", [value])
        if msg.member == "Release" and msg.interface in (ADV, None):
            # bluetoothd dropped us (adapter removed or powered down for good).
            self._registered = False
            self.released = True
            self._log.warning("advertisement_released")
            return Message.new_method_return(msg)
        if msg.interface == "org.freedesktop.DBus.Introspectable" and msg.member == "Introspect":
            return Message.new_method_return(msg, "s", [_INTROSPECTION])
        return False
