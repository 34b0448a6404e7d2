"""What bluetoothd 5.66 does with a client's advertisement (pure).

``src/advertising.c``: the ``org.bluez.LEAdvertisement1`` properties read from the
registering client are parsed (:func:`parse_advertisement`: the ``parsers`` table,
parse_advertisement) and laid out as the legacy advertising PDU and scan response
(:func:`layout_advertisement`: refresh_legacy_adv, generate_adv_data,
generate_scan_rsp, calc_max_adv_len, with the kernel's part from
``net/bluetooth/eir.c``).  Doc: ``doc/advertising-api.txt``.  Any failure is what
bluetoothd answers with ``org.bluez.Error.Failed`` "Failed to parse advertisement.";
the exception's message is what bluetoothd writes to its log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Variant

from hw.sim.discovery import uuid128
from hw.sim.reporting import (
    AD_APPEARANCE,
    AD_FLAGS,
    AD_MANUFACTURER,
    AD_NAME_COMPLETE,
    AD_NAME_SHORT,
    AD_TX_POWER,
)

LEGACY_ADV_MAX = 31  # BT_AD_MAX_DATA_LEN
FLAG_LIMITED, FLAG_GENERAL, FLAG_NO_BREDR = 0x01, 0x02, 0x04  # BT_AD_FLAG_*
SUPPORTED_INCLUDES = ("tx-power", "appearance", "local-name")  # advertising.c includes[]
AD_SOLICIT16, AD_SOLICIT128, AD_SOLICIT32 = 0x14, 0x15, 0x1F
AD_SERVICE_DATA16, AD_SERVICE_DATA32, AD_SERVICE_DATA128 = 0x16, 0x20, 0x21
BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class InvalidAdvertisement(ValueError):
    """bluetoothd refuses the advertisement; the message is what it logs."""


@dataclass(frozen=True, slots=True)
class Advertisement:
    """An advertisement as bluetoothd keeps it (struct btd_adv_client)."""

    type: str = "broadcast"  # new0 leaves AD_TYPE_BROADCAST when Type is absent
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    solicit_uuids: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    local_name: str | None = None
    appearance: int | None = None
    duration: int = 0
    timeout: int = 0
    discoverable: bool | None = None
    discoverable_timeout: int = 0
    data: Mapping[int, bytes] = field(default_factory=dict)
    min_interval_ms: int = 0
    max_interval_ms: int = 0
    tx_power: int | None = None

    @property
    def connectable(self) -> bool:
        return self.type == "peripheral"


def _unwrap(props: Mapping[str, Any], name: str, signature: str) -> Any:
    value = props[name]
    if not isinstance(value, Variant) or value.signature != signature:
        got = value.signature if isinstance(value, Variant) else type(value).__name__
        raise InvalidAdvertisement(f"Error parsing {name} property ({got}, not {signature})")
    return value.value


def _uuid_list(raw: Any, name: str) -> tuple[str, ...]:
    try:
        return tuple(uuid128(str(u)) for u in raw)
    except ValueError as exc:
        raise InvalidAdvertisement(f"Error parsing {name} property ({exc})") from None


def parse_advertisement(props: Mapping[str, Any], *, experimental: bool = False) -> Advertisement:
    """Each parser of advertising.c over the properties the client returned (GetAll).

    ``experimental`` is bluetoothd's ``-E``: without it MinInterval, MaxInterval and
    TxPower are ignored (parse_min_interval, parse_max_interval, parse_tx_power).
    """
    values: dict[str, Any] = {}
    if "Type" in props:
        kind = _unwrap(props, "Type", "s")
        if kind not in ("broadcast", "peripheral"):
            raise InvalidAdvertisement(f"Error parsing Type property ({kind!r})")
        values["type"] = kind
    if "ServiceUUIDs" in props:
        values["service_uuids"] = _uuid_list(_unwrap(props, "ServiceUUIDs", "as"), "ServiceUUIDs")
    if "SolicitUUIDs" in props:
        values["solicit_uuids"] = _uuid_list(_unwrap(props, "SolicitUUIDs", "as"), "SolicitUUIDs")
    if "ManufacturerData" in props:
        manufacturer: dict[int, bytes] = {}
        for company, value in _unwrap(props, "ManufacturerData", "a{qv}").items():
            if not isinstance(value, Variant) or value.signature != "ay":
                raise InvalidAdvertisement("Error parsing ManufacturerData property")
            if len(value.value) > LEGACY_ADV_MAX - 4:  # bt_ad_add_manufacturer_data
                raise InvalidAdvertisement("Error parsing ManufacturerData property (too long)")
            manufacturer[int(company)] = bytes(value.value)
        values["manufacturer_data"] = manufacturer
    if "ServiceData" in props:
        service_data: dict[str, bytes] = {}
        for uuid, value in _unwrap(props, "ServiceData", "a{sv}").items():
            if not isinstance(value, Variant) or value.signature != "ay":
                raise InvalidAdvertisement("Error parsing ServiceData property")
            (key,) = _uuid_list([uuid], "ServiceData")
            service_data[key] = bytes(value.value)
        values["service_data"] = service_data
    includes: tuple[str, ...] = ()
    if "Includes" in props:
        # parse_includes: unknown or unsupported names are skipped, not refused.
        raw_includes = _unwrap(props, "Includes", "as")
        includes = tuple(i for i in SUPPORTED_INCLUDES if i in raw_includes)
        values["includes"] = includes
    if "LocalName" in props:
        if "local-name" in includes:
            raise InvalidAdvertisement("Local name already included")
        values["local_name"] = _unwrap(props, "LocalName", "s") or None
    if "Appearance" in props:
        if "appearance" in includes:
            raise InvalidAdvertisement("Appearance already included")
        values["appearance"] = int(_unwrap(props, "Appearance", "q"))
    if "Duration" in props:
        values["duration"] = int(_unwrap(props, "Duration", "q"))
    if "Timeout" in props:
        values["timeout"] = int(_unwrap(props, "Timeout", "q"))
    if "Data" in props:
        data: dict[int, bytes] = {}
        for ad_type, value in _unwrap(props, "Data", "a{yv}").items():
            if not isinstance(value, Variant) or value.signature != "ay":
                raise InvalidAdvertisement("Error parsing Data property")
            data[int(ad_type)] = bytes(value.value)
        values["data"] = data
    if "Discoverable" in props:
        values["discoverable"] = bool(_unwrap(props, "Discoverable", "b"))
    if "DiscoverableTimeout" in props:
        values["discoverable_timeout"] = int(_unwrap(props, "DiscoverableTimeout", "q"))
    if "SecondaryChannel" in props:
        # parse_secondary: the air's adapters do legacy advertising only (no MGMT
        # secondary-PHY flags), so every channel is refused.
        channel = _unwrap(props, "SecondaryChannel", "s")
        raise InvalidAdvertisement(f"Error parsing SecondaryChannel property ({channel!r})")
    if experimental:
        for name, key in (("MinInterval", "min_interval_ms"), ("MaxInterval", "max_interval_ms")):
            if name in props:
                ms = int(_unwrap(props, name, "u"))
                if not 0x20 <= int(ms / 0.625) <= 0xFFFFFF:
                    raise InvalidAdvertisement(f"Error parsing {name} property ({ms} ms)")
                values[key] = ms
        if "TxPower" in props:
            power = int(_unwrap(props, "TxPower", "n"))
            if not -127 <= power <= 20:
                raise InvalidAdvertisement(f"Error parsing TxPower property ({power})")
            values["tx_power"] = power
    ad = Advertisement(**values)
    # parse_advertisement's own checks, after every property.
    if (ad.discoverable or AD_FLAGS in ad.data) and ad.type == "broadcast":
        raise InvalidAdvertisement("Broadcast cannot set flags")
    if ad.timeout and ad.timeout < ad.discoverable_timeout:
        raise InvalidAdvertisement("DiscoverableTimeout > Timeout")
    if ad.min_interval_ms > ad.max_interval_ms:
        raise InvalidAdvertisement(
            f"MinInterval must be less than MaxInterval ({ad.min_interval_ms} > "
            f"{ad.max_interval_ms})"
        )
    return ad


def ad_flags(ad: Advertisement, *, adapter_bredr: bool, adapter_discoverable: bool) -> int:
    """The Flags the client's ``Discoverable`` puts in the advert (parse_discoverable, set_flags).

    True: LE General Discoverable, plus "BR/EDR not supported" when the adapter has no
    BR/EDR or is not discoverable itself; Limited instead of General while a
    DiscoverableTimeout runs.  False or absent: no Flags from the client.
    """
    if not ad.discoverable:
        return 0
    flags = FLAG_LIMITED if ad.discoverable_timeout else FLAG_GENERAL
    if not adapter_bredr or not adapter_discoverable:
        flags |= FLAG_NO_BREDR
    return flags


@dataclass(frozen=True, slots=True)
class Layout:
    """The advertising PDU and scan response as (AD type, data) pairs."""

    adv_data: tuple[tuple[int, bytes], ...]
    scan_response: tuple[tuple[int, bytes], ...]
    connectable: bool

    @property
    def scannable(self) -> bool:
        return self.connectable or bool(self.scan_response)


def _uuid_bytes(uuid: str) -> bytes:
    """The shortest form of a 128-bit UUID, little-endian (bt_uuid_to_le)."""
    if uuid.endswith(BASE_SUFFIX):
        value = int(uuid[:8], 16)
        return value.to_bytes(2 if value <= 0xFFFF else 4, "little")
    return bytes.fromhex(uuid.replace("-", ""))[::-1]


def _uuid_structures(
    uuids: tuple[str, ...], types: tuple[int, int, int]
) -> list[tuple[int, bytes]]:
    out = []
    for size, ad_type in zip((2, 4, 16), types, strict=True):
        chunk = b"".join(b for b in map(_uuid_bytes, uuids) if len(b) == size)
        if chunk:
            out.append((ad_type, chunk))
    return out


def _name_structure(name: str, used: int) -> tuple[int, bytes]:
    """serialize_name: complete if it fits, else shortened to what is left."""
    raw = name.encode()
    room = LEGACY_ADV_MAX - (used + 2)
    if len(raw) > room:
        return (AD_NAME_SHORT, raw[: max(0, room)])
    return (AD_NAME_COMPLETE, raw)


def ad_length(structures: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]]) -> int:
    """Bytes on the air: each structure is a length byte, a type byte and its data."""
    return sum(2 + len(data) for _, data in structures)


def layout_advertisement(
    ad: Advertisement,
    *,
    flags: int,
    adapter_name: str,
    adapter_discoverable: bool,
    adapter_bredr: bool = True,
    adv_tx_power: int = 0,
) -> Layout:
    """refresh_legacy_adv: the PDU and scan response; InvalidAdvertisement if too long.

    ``flags`` are the client's (:func:`ad_flags`).  A peripheral without them gets the
    kernel's General Discoverable flag while the adapter is discoverable
    (get_adv_flags: MGMT_ADV_FLAG_DISCOV; eir_create_adv_data), which a dual-mode
    adapter otherwise leaves out.  The name (LocalName, or the adapter's with
    "local-name") goes in the scan response; TX power ("tx-power") and appearance in the
    advert, each costing space even before it is added (calc_max_adv_len).
    """
    managed = ad.connectable and adapter_discoverable and not flags
    data: list[tuple[int, bytes]] = []
    data += _uuid_structures(ad.service_uuids, (0x03, 0x05, 0x07))
    data += _uuid_structures(ad.solicit_uuids, (AD_SOLICIT16, AD_SOLICIT32, AD_SOLICIT128))
    for company, value in ad.manufacturer_data.items():
        data.append((AD_MANUFACTURER, company.to_bytes(2, "little") + value))
    for uuid, value in ad.service_data.items():
        raw = _uuid_bytes(uuid)
        kind = {2: AD_SERVICE_DATA16, 4: AD_SERVICE_DATA32}.get(len(raw), AD_SERVICE_DATA128)
        data.append((kind, raw + value))
    appearance = ad.appearance
    if "appearance" in ad.includes and appearance is None:
        appearance = 0  # generate_adv_data: "TODO: Get the appearance from the adaptor"
    if appearance is not None:
        data.append((AD_APPEARANCE, appearance.to_bytes(2, "little")))
    for ad_type, value in ad.data.items():
        data.append((ad_type, value))
    if flags:
        data.append((AD_FLAGS, bytes([flags])))
    if ad_length(data) > LEGACY_ADV_MAX:
        raise InvalidAdvertisement("Advertising data too long or couldn't be generated.")
    limit = LEGACY_ADV_MAX
    if "tx-power" in ad.includes:
        limit -= 3
    if managed:
        limit -= 3
    if "appearance" in ad.includes:
        limit -= 4
    if ad_length(data) > limit:
        raise InvalidAdvertisement("Advertising data too long or couldn't be generated.")
    pdu: list[tuple[int, bytes]] = []
    if managed:
        pdu.append((AD_FLAGS, bytes([FLAG_GENERAL | (0 if adapter_bredr else FLAG_NO_BREDR)])))
    pdu += data
    if "tx-power" in ad.includes:
        power = ad.tx_power if ad.tx_power is not None else adv_tx_power
        pdu.append((AD_TX_POWER, power.to_bytes(1, "little", signed=True)))
    scan: list[tuple[int, bytes]] = []
    if ad.local_name:
        scan.append(_name_structure(ad.local_name, 0))
    if "local-name" in ad.includes and adapter_name:
        scan.append(_name_structure(adapter_name, ad_length(scan)))
    return Layout(tuple(pdu), tuple(scan), ad.connectable)
