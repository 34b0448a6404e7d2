"""Introspection data for every interface the simulated bluetoothd exports (pure).

The method, signal and property tables are BlueZ 5.66's (``src/adapter.c``,
``src/device.c``, ``src/advertising.c``, ``src/adv_monitor.c``, ``src/agent.c``,
``src/profile.c``, ``src/gatt-database.c``), and the XML is laid out as gdbus's
generate_introspection_xml does (``gdbus/object.c``): members flagged experimental
are left out unless the air runs with ``--experimental`` (bluetoothd's ``-E``), and
an interface with nothing left is not exported at all (add_interface).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Args = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    in_args: Args = ()
    out_args: Args = ()
    experimental: bool = False
    noreply: bool = False


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    args: Args = ()


@dataclass(frozen=True, slots=True)
class Property:
    name: str
    type: str
    writable: bool = False
    experimental: bool = False


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    methods: tuple[Method, ...] = ()
    signals: tuple[Signal, ...] = ()
    properties: tuple[Property, ...] = ()

    def visible(self, experimental: bool) -> Interface | None:
        """The interface as exported: experimental members only with ``-E``; None if empty."""
        methods = tuple(m for m in self.methods if experimental or not m.experimental)
        props = tuple(p for p in self.properties if experimental or not p.experimental)
        if not (methods or self.signals or props):
            return None
        return Interface(self.name, methods, self.signals, props)


INTROSPECTABLE = Interface(
    "org.freedesktop.DBus.Introspectable", (Method("Introspect", (), (("xml", "s"),)),)
)
PROPERTIES = Interface(
    "org.freedesktop.DBus.Properties",
    (
        Method("Get", (("interface", "s"), ("name", "s")), (("value", "v"),)),
        Method("Set", (("interface", "s"), ("name", "s"), ("value", "v"))),
        Method("GetAll", (("interface", "s"),), (("properties", "a{sv}"),)),
    ),
    (
        Signal(
            "PropertiesChanged",
            (("interface", "s"), ("changed_properties", "a{sv}"), ("invalidated_properties", "as")),
        ),
    ),
)
OBJECT_MANAGER = Interface(
    "org.freedesktop.DBus.ObjectManager",
    (Method("GetManagedObjects", (), (("objects", "a{oa{sa{sv}}}"),)),),
    (
        Signal("InterfacesAdded", (("object", "o"), ("interfaces", "a{sa{sv}}"))),
        Signal("InterfacesRemoved", (("object", "o"), ("interfaces", "as"))),
    ),
)
ADAPTER = Interface(
    "org.bluez.Adapter1",
    (
        Method("StartDiscovery"),
        Method("SetDiscoveryFilter", (("properties", "a{sv}"),)),
        Method("StopDiscovery"),
        Method("RemoveDevice", (("device", "o"),)),
        Method("GetDiscoveryFilters", (), (("filters", "as"),)),
        Method("ConnectDevice", (("properties", "a{sv}"),), experimental=True),
    ),
    (),
    (
        Property("Address", "s"),
        Property("AddressType", "s"),
        Property("Name", "s"),
        Property("Alias", "s", writable=True),
        Property("Class", "u"),
        Property("Powered", "b", writable=True),
        Property("PowerState", "s", experimental=True),
        Property("Discoverable", "b", writable=True),
        Property("DiscoverableTimeout", "u", writable=True),
        Property("Pairable", "b", writable=True),
        Property("PairableTimeout", "u", writable=True),
        Property("Discovering", "b"),
        Property("UUIDs", "as"),
        Property("Modalias", "s"),
        Property("Roles", "as"),
        Property("ExperimentalFeatures", "as"),
    ),
)
ADV_MANAGER = Interface(
    "org.bluez.LEAdvertisingManager1",
    (
        Method("RegisterAdvertisement", (("advertisement", "o"), ("options", "a{sv}"))),
        Method("UnregisterAdvertisement", (("service", "o"),)),
    ),
    (),
    (
        Property("ActiveInstances", "y"),
        Property("SupportedInstances", "y"),
        Property("SupportedIncludes", "as"),
        Property("SupportedSecondaryChannels", "as"),
        Property("SupportedFeatures", "as", experimental=True),
        Property("SupportedCapabilities", "a{sv}", experimental=True),
    ),
)
MONITOR_MANAGER = Interface(
    "org.bluez.AdvertisementMonitorManager1",
    (
        Method("RegisterMonitor", (("application", "o"),), experimental=True),
        Method("UnregisterMonitor", (("application", "o"),), experimental=True),
    ),
    (),
    (
        Property("SupportedMonitorTypes", "as", experimental=True),
        Property("SupportedFeatures", "as", experimental=True),
    ),
)
GATT_MANAGER = Interface(
    "org.bluez.GattManager1",
    (
        Method("RegisterApplication", (("application", "o"), ("options", "a{sv}"))),
        Method("UnregisterApplication", (("application", "o"),)),
    ),
)
AGENT_MANAGER = Interface(
    "org.bluez.AgentManager1",
    (
        Method("RegisterAgent", (("agent", "o"), ("capability", "s"))),
        Method("UnregisterAgent", (("agent", "o"),)),
        Method("RequestDefaultAgent", (("agent", "o"),)),
    ),
)
PROFILE_MANAGER = Interface(
    "org.bluez.ProfileManager1",
    (
        Method("RegisterProfile", (("profile", "o"), ("UUID", "s"), ("options", "a{sv}"))),
        Method("UnregisterProfile", (("profile", "o"),)),
    ),
)
DEVICE = Interface(
    "org.bluez.Device1",
    (
        Method("Disconnect"),
        Method("Connect"),
        Method("ConnectProfile", (("UUID", "s"),)),
        Method("DisconnectProfile", (("UUID", "s"),)),
        Method("Pair"),
        Method("CancelPairing"),
    ),
    (),
    (
        Property("Address", "s"),
        Property("AddressType", "s"),
        Property("Name", "s"),
        Property("Alias", "s", writable=True),
        Property("Class", "u"),
        Property("Appearance", "q"),
        Property("Icon", "s"),
        Property("Paired", "b"),
        Property("Bonded", "b"),
        Property("Trusted", "b", writable=True),
        Property("Blocked", "b", writable=True),
        Property("LegacyPairing", "b"),
        Property("RSSI", "n"),
        Property("Connected", "b"),
        Property("UUIDs", "as"),
        Property("Modalias", "s"),
        Property("Adapter", "o"),
        Property("ManufacturerData", "a{qv}"),
        Property("ServiceData", "a{sv}"),
        Property("TxPower", "n"),
        Property("ServicesResolved", "b"),
        Property("AdvertisingFlags", "ay", experimental=True),
        Property("AdvertisingData", "a{yv}", experimental=True),
        Property("WakeAllowed", "b", writable=True),
    ),
)
BY_NAME = {
    i.name: i
    for i in (
        INTROSPECTABLE,
        PROPERTIES,
        OBJECT_MANAGER,
        ADAPTER,
        ADV_MANAGER,
        MONITOR_MANAGER,
        GATT_MANAGER,
        AGENT_MANAGER,
        PROFILE_MANAGER,
        DEVICE,
    )
}
DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)


def _args(args: Args, direction: str | None) -> str:
    out = ""
    for name, signature in args:
        where = f' direction="{direction}"' if direction else ""
        out += f'<arg name="{name}" type="{signature}"{where}/>'
    return out


def interface_xml(interface: Interface) -> str:
    """generate_interface_xml for one (already filtered) interface."""
    out = f'<interface name="{interface.name}">'
    for m in interface.methods:
        out += f'<method name="{m.name}">{_args(m.in_args, "in")}{_args(m.out_args, "out")}'
        if m.noreply:
            out += '<annotation name="org.freedesktop.DBus.Method.NoReply" value="true"/>'
        out += "</method>"
    for s in interface.signals:
        out += f'<signal name="{s.name}">{_args(s.args, None)}</signal>\n'
    for p in interface.properties:
        access = "read" + ("write" if p.writable else "")
        out += f'<property name="{p.name}" type="{p.type}" access="{access}"></property>'
    return out + "</interface>"


def node_xml(interfaces: Iterable[Interface], children: Sequence[str]) -> str:
    """generate_introspection_xml: the node's interfaces, then its child nodes."""
    body = "".join(interface_xml(i) for i in interfaces)
    body += "".join(f'<node name="{c}"/>' for c in children)
    return f"{DOCTYPE}<node>{body}</node>"


def exported(names: Iterable[str], experimental: bool) -> list[Interface]:
    """The interfaces of ``names`` that exist with or without ``-E`` (unknown names skipped)."""
    out = []
    for name in names:
        interface = BY_NAME.get(name)
        visible = interface.visible(experimental) if interface is not None else None
        if visible is not None:
            out.append(visible)
    return out
