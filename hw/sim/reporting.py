"""What bluetoothd 5.66 keeps and signals about a remote device it hears (pure).

An advert's AD structures are parsed the way ``src/eir.c`` does (:func:`parse_eir`);
:func:`apply_advert` then updates a :class:`RemoteDevice` the way
``btd_adapter_update_found_device`` (``src/adapter.c``) and the setters of
``src/device.c`` do, and returns the names of the ``Device1`` properties that
bluetoothd would signal as changed.  The rules that make a still beacon go quiet:

* RSSI is signalled only when it moved by ``RSSI_THRESHOLD`` (8 dB) or more from the
  last value signalled, unless the discovery is filtered, when every report is
  signalled (device_set_rssi_with_delta with a delta of 0);
* ManufacturerData and ServiceData are signalled only when their bytes change
  (bt_ad_add_manufacturer_data returns false for the same bytes), unless a discovery
  client asked for ``DuplicateData`` (device_set_manufacturer_data clears the old data
  first, so every report is a change).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from dbus_fast import Variant

from hw.sim.discovery import uuid128

RSSI_THRESHOLD = 8  # src/device.c
TX_POWER_INVALID = 127  # src/eir.h: no TX power in the advert
AD_FLAGS = 0x01
AD_UUID16_SOME, AD_UUID16_ALL = 0x02, 0x03
AD_UUID32_SOME, AD_UUID32_ALL = 0x04, 0x05
AD_UUID128_SOME, AD_UUID128_ALL = 0x06, 0x07
AD_NAME_SHORT, AD_NAME_COMPLETE = 0x08, 0x09
AD_TX_POWER = 0x0A
AD_SERVICE_DATA16, AD_SERVICE_DATA32, AD_SERVICE_DATA128 = 0x16, 0x20, 0x21
AD_APPEARANCE = 0x19
AD_MANUFACTURER = 0xFF
_K = TypeVar("_K", int, str)


@dataclass(frozen=True, slots=True)
class HeardAdvert:
    """One advertising report as eir_parse sees it (advert and scan response merged)."""

    flags: int = 0
    name: str | None = None
    name_complete: bool = False
    tx_power: int | None = None
    appearance: int = 0
    services: tuple[str, ...] = ()
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    service_data: tuple[tuple[str, bytes], ...] = ()


def _uuids(data: bytes, size: int) -> list[str]:
    out = []
    for i in range(0, len(data) - size + 1, size):
        chunk = data[i : i + size][::-1].hex()
        if size == 16:
            chunk = f"{chunk[:8]}-{chunk[8:12]}-{chunk[12:16]}-{chunk[16:20]}-{chunk[20:]}"
        out.append(uuid128(chunk))
    return out


def parse_eir(structures: Iterable[tuple[int, bytes]]) -> HeardAdvert:
    """eir_parse over (AD type, data) pairs; malformed entries are skipped, never raised."""
    flags = 0
    name: str | None = None
    complete = False
    tx_power: int | None = None
    appearance = 0
    services: list[str] = []
    manufacturer: list[tuple[int, bytes]] = []
    service_data: list[tuple[str, bytes]] = []
    for ad_type, data in structures:
        if ad_type == AD_FLAGS and data:
            flags = data[0]
        elif ad_type in (AD_UUID16_SOME, AD_UUID16_ALL):
            services += _uuids(data, 2)
        elif ad_type in (AD_UUID32_SOME, AD_UUID32_ALL):
            services += _uuids(data, 4)
        elif ad_type in (AD_UUID128_SOME, AD_UUID128_ALL):
            services += _uuids(data, 16)
        elif ad_type in (AD_NAME_SHORT, AD_NAME_COMPLETE) and data:
            name = data.decode("utf-8", errors="replace")
            complete = ad_type == AD_NAME_COMPLETE
        elif ad_type == AD_TX_POWER and len(data) == 1:
            tx_power = int.from_bytes(data, "little", signed=True)
        elif ad_type == AD_APPEARANCE and len(data) == 2:
            appearance = int.from_bytes(data, "little")
        elif ad_type in (AD_SERVICE_DATA16, AD_SERVICE_DATA32, AD_SERVICE_DATA128):
            size = {AD_SERVICE_DATA16: 2, AD_SERVICE_DATA32: 4, AD_SERVICE_DATA128: 16}[ad_type]
            if len(data) >= size:
                service_data.append((_uuids(data[:size], size)[0], bytes(data[size:])))
        elif ad_type == AD_MANUFACTURER and len(data) >= 2:
            manufacturer.append((int.from_bytes(data[:2], "little"), bytes(data[2:])))
    return HeardAdvert(
        flags=flags,
        name=name,
        name_complete=complete,
        tx_power=tx_power,
        appearance=appearance,
        services=tuple(services),
        manufacturer_data=tuple(manufacturer),
        service_data=tuple(service_data),
    )


@dataclass
class RemoteDevice:
    """struct btd_device, the parts an advert touches (temporary: never paired)."""

    address: str
    address_type: str
    rssi: int = 0  # 0: no valid RSSI (the property then does not exist)
    tx_power: int = TX_POWER_INVALID
    name: str | None = None
    alias: str | None = None
    appearance: int = 0
    uuids: list[str] = field(default_factory=list)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    flags: int | None = None  # INVALID_FLAGS until the first report
    trusted: bool = False
    blocked: bool = False
    last_seen: float = 0.0
    connectable: bool = False

    def alias_value(self) -> str:
        """dev_property_get_alias: the alias, else the name, else the address with dashes."""
        return self.alias or self.name or self.address.replace(":", "-")


def device_properties(
    device: RemoteDevice, adapter_path: str, experimental: bool = False
) -> dict[str, Variant]:
    """Device1's properties as GetAll returns them (only those whose *_exists holds)."""
    props: dict[str, Variant] = {
        "Address": Variant("s", device.address),
        "AddressType": Variant("s", device.address_type),
    }
    if device.name:
        props["Name"] = Variant("s", device.name)
    props["Alias"] = Variant("s", device.alias_value())
    if device.appearance:
        props["Appearance"] = Variant("q", device.appearance)
    props.update(
        {
            "Paired": Variant("b", False),
            "Bonded": Variant("b", False),
            "Trusted": Variant("b", device.trusted),
            "Blocked": Variant("b", device.blocked),
            "LegacyPairing": Variant("b", False),
        }
    )
    if device.rssi:
        props["RSSI"] = Variant("n", device.rssi)
    props["Connected"] = Variant("b", False)
    props["UUIDs"] = Variant("as", list(device.uuids))
    props["Adapter"] = Variant("o", adapter_path)
    if device.manufacturer_data:
        props["ManufacturerData"] = Variant(
            "a{qv}", {k: Variant("ay", v) for k, v in device.manufacturer_data.items()}
        )
    if device.service_data:
        props["ServiceData"] = Variant(
            "a{sv}", {k: Variant("ay", v) for k, v in device.service_data.items()}
        )
    if device.tx_power != TX_POWER_INVALID:
        props["TxPower"] = Variant("n", device.tx_power)
    props["ServicesResolved"] = Variant("b", False)
    if experimental and device.flags is not None:
        props["AdvertisingFlags"] = Variant("ay", bytes([device.flags]))
    return props


def changed_properties(
    device: RemoteDevice, names: Iterable[str], adapter_path: str
) -> tuple[dict[str, Variant], list[str]]:
    """process_properties_from_interface: (changed values, invalidated names) for a signal.

    A property whose *_exists no longer holds is invalidated.  Experimental properties
    are signalled even without ``-E``: gdbus checks that flag for GetAll, not here.
    """
    current = device_properties(device, adapter_path, experimental=True)
    changed: dict[str, Variant] = {}
    invalidated: list[str] = []
    for name in dict.fromkeys(names):
        if name in current:
            changed[name] = current[name]
        else:
            invalidated.append(name)
    return changed, invalidated


def apply_advert(
    device: RemoteDevice, ad: HeardAdvert, rssi: int, *, filtered: bool, duplicate: bool
) -> list[str]:
    """One report reaching bluetoothd; the Device1 properties it signals, in order."""
    changed: list[str] = []
    # device_set_rssi_with_delta: delta 0 for a filtered discovery, else RSSI_THRESHOLD.
    threshold = 0 if filtered else RSSI_THRESHOLD
    if rssi == 0 or device.rssi == 0:
        if device.rssi != rssi:
            device.rssi = rssi
            changed.append("RSSI")
    elif abs(device.rssi - rssi) >= threshold:
        device.rssi = rssi
        changed.append("RSSI")
    if ad.tx_power is not None and device.tx_power != ad.tx_power:  # device_set_tx_power
        device.tx_power = ad.tx_power
        changed.append("TxPower")
    if ad.appearance and device.appearance != ad.appearance:
        device.appearance = ad.appearance
        changed.append("Appearance")
    # btd_device_device_set_name: a complete name, or a short one while none is known.
    if ad.name and (ad.name_complete or not device.name) and device.name != ad.name:
        device.name = ad.name
        changed.append("Name")
        if device.alias is None:
            changed.append("Alias")
    new_uuids = [u for u in dict.fromkeys(ad.services) if u not in device.uuids]
    if new_uuids:  # device_add_eir_uuids only ever adds
        device.uuids.extend(new_uuids)
        changed.append("UUIDs")
    if ad.manufacturer_data and _set_data(
        device.manufacturer_data, ad.manufacturer_data, duplicate
    ):
        changed.append("ManufacturerData")
    if ad.service_data and _set_data(device.service_data, ad.service_data, duplicate):
        changed.append("ServiceData")
    if device.flags != ad.flags:  # device_set_flags (LE reports only)
        device.flags = ad.flags
        changed.append("AdvertisingFlags")
    return changed


def _set_data(store: dict[_K, bytes], entries: Iterable[tuple[_K, bytes]], duplicate: bool) -> bool:
    """device_set_manufacturer_data / device_set_service_data with bt_ad_add_*'s rule."""
    if duplicate:
        store.clear()  # bt_ad_clear_manufacturer_data: every entry is new again
    signalled = duplicate
    for key, value in entries:
        if store.get(key) != value:
            store[key] = value
            signalled = True
    return signalled


def invalidate_rssi_and_tx_power(device: RemoteDevice) -> list[str]:
    """invalidate_rssi_and_tx_power (discovery_cleanup): both properties cease to exist."""
    changed = []
    if device.rssi != 0:
        device.rssi = 0
        changed.append("RSSI")
    if device.tx_power != TX_POWER_INVALID:
        device.tx_power = TX_POWER_INVALID
        changed.append("TxPower")
    return changed
