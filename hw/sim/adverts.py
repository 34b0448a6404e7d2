"""What bluetoothd does with advertising data, as pure functions.

Parsing a client's ``org.bluez.LEAdvertisement1`` properties, laying them out as AD
structures (to enforce the 31-byte legacy limit and to match advertisement-monitor
or-patterns), and parsing and merging ``Adapter1.SetDiscoveryFilter`` filters the way
bluetoothd merges the filters of all discovery clients of one adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Variant

LEGACY_ADV_MAX = 31
AD_FLAGS = 0x01
AD_UUID16_ALL = 0x03
AD_UUID128_ALL = 0x07
AD_COMPLETE_NAME = 0x09
AD_TX_POWER = 0x0A
AD_SERVICE_DATA16 = 0x16
AD_SERVICE_DATA128 = 0x21
AD_MANUFACTURER = 0xFF
ADVERTISEMENT_TYPES = ("broadcast", "peripheral")
BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class InvalidAdvertisement(ValueError):
    """The client's advertisement object is unusable; the message says why."""


class InvalidFilter(ValueError):
    """A discovery filter bluetoothd would reject."""


@dataclass(frozen=True, slots=True)
class Advertisement:
    """An advertisement as bluetoothd reads it from its client."""

    type: str
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    local_name: str | None = None
    includes: tuple[str, ...] = ()
    tx_power: int | None = None
    min_interval_ms: int | None = None
    discoverable: bool = False


def _unwrap(value: Any, signature: str, name: str) -> Any:
    if not isinstance(value, Variant) or value.signature != signature:
        got = value.signature if isinstance(value, Variant) else type(value).__name__
        raise InvalidAdvertisement(f"{name} must be of type {signature}, got {got}")
    return value.value


def parse_advertisement(props: Mapping[str, Any]) -> Advertisement:
    """Validate the properties a client returned from ``GetAll``; raise InvalidAdvertisement."""
    if "Type" not in props:
        raise InvalidAdvertisement("Type is missing")
    adv_type = _unwrap(props["Type"], "s", "Type")
    if adv_type not in ADVERTISEMENT_TYPES:
        raise InvalidAdvertisement(f"Type must be 'broadcast' or 'peripheral', got {adv_type!r}")
    manufacturer: dict[int, bytes] = {}
    if "ManufacturerData" in props:
        raw = _unwrap(props["ManufacturerData"], "a{qv}", "ManufacturerData")
        for company, value in raw.items():
            manufacturer[int(company)] = bytes(_unwrap(value, "ay", "ManufacturerData value"))
    service_data: dict[str, bytes] = {}
    if "ServiceData" in props:
        raw = _unwrap(props["ServiceData"], "a{sv}", "ServiceData")
        for uuid, value in raw.items():
            service_data[str(uuid).lower()] = bytes(_unwrap(value, "ay", "ServiceData value"))
    uuids: tuple[str, ...] = ()
    if "ServiceUUIDs" in props:
        uuids = tuple(str(u).lower() for u in _unwrap(props["ServiceUUIDs"], "as", "ServiceUUIDs"))
    name = _unwrap(props["LocalName"], "s", "LocalName") if "LocalName" in props else None
    includes: tuple[str, ...] = ()
    if "Includes" in props:
        includes = tuple(_unwrap(props["Includes"], "as", "Includes"))
    tx_power = int(_unwrap(props["TxPower"], "n", "TxPower")) if "TxPower" in props else None
    min_interval = (
        int(_unwrap(props["MinInterval"], "u", "MinInterval")) if "MinInterval" in props else None
    )
    discoverable = (
        bool(_unwrap(props["Discoverable"], "b", "Discoverable"))
        if "Discoverable" in props
        else False
    )
    return Advertisement(
        type=adv_type,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        local_name=name or None,
        includes=includes,
        tx_power=tx_power,
        min_interval_ms=min_interval,
        discoverable=discoverable,
    )


def _uuid_bytes(uuid: str) -> bytes:
    """16-bit form when the UUID is on the Bluetooth base, else 128-bit, little-endian."""
    text = uuid.lower()
    if len(text) <= 8:
        return int(text, 16).to_bytes(2, "little")
    if text.startswith("0000") and text.endswith(BASE_UUID_SUFFIX):
        return int(text[4:8], 16).to_bytes(2, "little")
    return bytes.fromhex(text.replace("-", ""))[::-1]


def ad_structures(
    ad: Advertisement, adapter_alias: str, default_tx_power: int = 0
) -> list[tuple[int, bytes]]:
    """The AD structures (type, data) bluetoothd would put in the advertising PDU."""
    out: list[tuple[int, bytes]] = []
    if ad.type == "peripheral" or ad.discoverable:
        # LE General Discoverable (when asked) and BR/EDR not supported.
        out.append((AD_FLAGS, bytes([0x06 if ad.discoverable else 0x04])))
    short = [u for u in ad.service_uuids if len(_uuid_bytes(u)) == 2]
    long = [u for u in ad.service_uuids if len(_uuid_bytes(u)) == 16]
    if short:
        out.append((AD_UUID16_ALL, b"".join(_uuid_bytes(u) for u in short)))
    if long:
        out.append((AD_UUID128_ALL, b"".join(_uuid_bytes(u) for u in long)))
    for company, value in ad.manufacturer_data.items():
        out.append((AD_MANUFACTURER, company.to_bytes(2, "little") + value))
    for uuid, value in ad.service_data.items():
        raw = _uuid_bytes(uuid)
        kind = AD_SERVICE_DATA16 if len(raw) == 2 else AD_SERVICE_DATA128
        out.append((kind, raw + value))
    if "tx-power" in ad.includes:
        power = ad.tx_power if ad.tx_power is not None else default_tx_power
        out.append((AD_TX_POWER, power.to_bytes(1, "little", signed=True)))
    name = ad.local_name or (adapter_alias if "local-name" in ad.includes else None)
    if name:
        out.append((AD_COMPLETE_NAME, name.encode()))
    return out


def ad_length(structures: Iterable[tuple[int, bytes]]) -> int:
    """Bytes on the air: each structure is a length byte, a type byte and its data."""
    return sum(2 + len(data) for _, data in structures)


def advertised_name(ad: Advertisement, adapter_alias: str) -> str | None:
    if ad.local_name:
        return ad.local_name
    return adapter_alias if "local-name" in ad.includes else None


@dataclass(frozen=True, slots=True)
class OrPattern:
    """One advertisement-monitor pattern: AD type, offset in its data, bytes to match."""

    start: int
    ad_type: int
    content: bytes


def parse_or_patterns(raw: Sequence[Any]) -> list[OrPattern]:
    """``a(yyay)`` as dbus-fast unpacks it; raise InvalidFilter on anything else."""
    out: list[OrPattern] = []
    for item in raw:
        try:
            start, ad_type, content = item
            pattern = OrPattern(int(start), int(ad_type), bytes(content))
        except (TypeError, ValueError) as exc:
            raise InvalidFilter(f"bad or-pattern {item!r}") from exc
        if not 0 <= pattern.start < LEGACY_ADV_MAX or not pattern.content:
            raise InvalidFilter(f"bad or-pattern {item!r}")
        out.append(pattern)
    return out


def matches_or_patterns(
    structures: Iterable[tuple[int, bytes]], patterns: Sequence[OrPattern]
) -> bool:
    """Whether any pattern matches any AD structure (bluetoothd's or_patterns semantics)."""
    structs = list(structures)
    for pattern in patterns:
        end = pattern.start + len(pattern.content)
        for ad_type, data in structs:
            if ad_type == pattern.ad_type and data[pattern.start : end] == pattern.content:
                return True
    return False


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """One client's (or an adapter's merged) discovery filter."""

    rssi: int | None = None
    pathloss: int | None = None
    transport: str = "auto"
    duplicate_data: bool = True
    uuids: tuple[str, ...] = ()
    pattern: str = ""


_TRANSPORTS = ("auto", "bredr", "le")


def parse_discovery_filter(raw: Mapping[str, Any]) -> DiscoveryFilter:
    """``SetDiscoveryFilter``'s a{sv}, unpacked; raise InvalidFilter like bluetoothd."""
    values: dict[str, Any] = {}
    expected = {
        "RSSI": "n",
        "Pathloss": "q",
        "Transport": "s",
        "DuplicateData": "b",
        "UUIDs": "as",
        "Pattern": "s",
        "Discoverable": "b",
    }
    for key, variant in raw.items():
        if key not in expected:
            raise InvalidFilter(f"unknown filter key {key}")
        if not isinstance(variant, Variant):
            raise InvalidFilter(f"{key} must be a variant")
        # bleak sends Pathloss as 'n'; bluetoothd reads the integer either way.
        pathloss_as_int16 = key == "Pathloss" and variant.signature == "n"
        if variant.signature != expected[key] and not pathloss_as_int16:
            raise InvalidFilter(f"{key} must be of type {expected[key]}")
        values[key] = variant.value
    if "RSSI" in values and "Pathloss" in values:
        raise InvalidFilter("RSSI and Pathloss cannot be set together")
    transport = values.get("Transport", "auto")
    if transport not in _TRANSPORTS:
        raise InvalidFilter(f"Transport must be one of {', '.join(_TRANSPORTS)}")
    rssi = values.get("RSSI")
    if rssi is not None and not -127 <= int(rssi) <= 20:
        raise InvalidFilter("RSSI must be between -127 and 20")
    return DiscoveryFilter(
        rssi=int(rssi) if rssi is not None else None,
        pathloss=int(values["Pathloss"]) if "Pathloss" in values else None,
        transport=transport,
        duplicate_data=bool(values.get("DuplicateData", True)),
        uuids=tuple(str(u).lower() for u in values.get("UUIDs", ())),
        pattern=str(values.get("Pattern", "")),
    )


def merge_filters(filters: Iterable[DiscoveryFilter]) -> DiscoveryFilter:
    """One adapter serves all its discovery clients, so it uses the loosest filter."""
    items = list(filters)
    if not items:
        return DiscoveryFilter()
    rssis = [f.rssi for f in items]
    pathlosses = [f.pathloss for f in items]
    transports = {f.transport for f in items}
    uuid_sets = [f.uuids for f in items]
    patterns = [f.pattern for f in items]
    return DiscoveryFilter(
        rssi=min(r for r in rssis if r is not None) if None not in rssis else None,
        pathloss=max(p for p in pathlosses if p is not None) if None not in pathlosses else None,
        transport="le" if transports == {"le"} else "bredr" if transports == {"bredr"} else "auto",
        duplicate_data=any(f.duplicate_data for f in items),
        uuids=()
        if any(not u for u in uuid_sets)
        else tuple(sorted({x for u in uuid_sets for x in u})),
        pattern="" if any(not p for p in patterns) else patterns[0],
    )


def filter_accepts(
    flt: DiscoveryFilter,
    *,
    rssi: int,
    tx_power: int | None,
    address: str,
    name: str | None,
    uuids: Iterable[str],
) -> bool:
    """Whether an advert heard at ``rssi`` gets reported under this filter."""
    if flt.transport == "bredr":
        return False
    if flt.rssi is not None and rssi < flt.rssi:
        return False
    if flt.pathloss is not None and tx_power is not None and tx_power - rssi > flt.pathloss:
        return False
    if flt.uuids and not set(flt.uuids) & {u.lower() for u in uuids}:
        return False
    return (
        not flt.pattern
        or address.startswith(flt.pattern)
        or bool(name and name.startswith(flt.pattern))
    )
