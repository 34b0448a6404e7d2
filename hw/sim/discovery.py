"""Discovery sessions and filters on one adapter, as bluetoothd 5.66 keeps them (pure).

Who is discovering and with which filter (``Adapter1.SetDiscoveryFilter``/
``StartDiscovery``/``StopDiscovery``), what that asks of the kernel, and which adverts
reach bluetoothd's reporting (:mod:`hw.sim.reporting`).  Every rule names the function
of BlueZ 5.66 (``src/adapter.c`` unless said otherwise) or of the Linux kernel
(``net/bluetooth``) it comes from; the doc is ``doc/adapter-api.txt`` (5.66),
``doc/org.bluez.Adapter.rst`` in later releases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant

# adapter.c: scan types are bit masks of BDADDR types (BR/EDR, LE public, LE random).
SCAN_TYPE_BREDR = 0x01
SCAN_TYPE_LE = 0x06
SCAN_TYPE_DUAL = SCAN_TYPE_BREDR | SCAN_TYPE_LE
PATHLOSS_MAX = 137  # adapter.c
# The kernel ends an LE discovery after DISCOV_LE_TIMEOUT (10.24 s, hci_core.h);
# bluetoothd then restarts it: a regular discovery after IDLE_DISCOV_TIMEOUT (5 s),
# a filtered one at once (discovering_callback, start_discovery_timeout).
DISCOV_LE_TIMEOUT_S = 10.24
IDLE_DISCOV_TIMEOUT_S = 5.0
BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class InvalidFilter(ValueError):
    """``SetDiscoveryFilter`` arguments bluetoothd answers with InvalidArguments."""


class DiscoveryError(Exception):
    """A discovery call bluetoothd refuses: the D-Bus error name and its text."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def uuid128(text: str) -> str:
    """A UUID as BlueZ writes it: 128-bit, lower case (bt_string_to_uuid + bt_uuid_to_uuid128).

    Raises ValueError for anything bt_string_to_uuid rejects.
    """
    value = text.strip().lower()
    short = value.removeprefix("0x")
    if len(short) in (4, 8) and all(c in "0123456789abcdef" for c in short):
        return f"{int(short, 16):08x}{BASE_UUID_SUFFIX}"
    parts = value.split("-")
    if [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for c in value.replace("-", "")
    ):
        return value
    raise ValueError(f"{text!r} is not a UUID")


@dataclass(frozen=True, slots=True)
class DiscoveryFilter:
    """One client's filter (struct discovery_filter); the defaults are bluetoothd's."""

    uuids: tuple[str, ...] = ()
    rssi: int | None = None
    pathloss: int | None = None
    scan_type: int = SCAN_TYPE_DUAL
    duplicate_data: bool = False
    discoverable: bool = False
    pattern: str | None = None


_KEY_TYPES = {
    "UUIDs": "as",
    "RSSI": "n",
    "Pathloss": "q",
    "Transport": "s",
    "DuplicateData": "b",
    "Discoverable": "b",
    "Pattern": "s",
}


def parse_discovery_filter(
    raw: Mapping[str, Any], adapter_scan_type: int = SCAN_TYPE_DUAL
) -> DiscoveryFilter | None:
    """``SetDiscoveryFilter``'s ``a{sv}``: None for an empty dict (no filter), else the filter.

    parse_discovery_filter_dict: unknown keys and wrong types are invalid; RSSI must be
    -127..20 (parse_rssi), Pathloss at most 137 (parse_pathloss), and the two cannot be
    set together; Transport defaults to the adapter's scan type (get_scan_type).
    """
    if not raw:
        return None
    values: dict[str, Any] = {}
    for key, variant in raw.items():
        expected = _KEY_TYPES.get(key)
        if expected is None:
            raise InvalidFilter(f"unknown filter key {key}")
        if not isinstance(variant, Variant) or variant.signature != expected:
            raise InvalidFilter(f"{key} must be of type {expected}")
        values[key] = variant.value
    rssi = values.get("RSSI")
    if rssi is not None and not -127 <= int(rssi) <= 20:
        raise InvalidFilter("RSSI must be between -127 and 20")
    pathloss = values.get("Pathloss")
    if pathloss is not None and int(pathloss) > PATHLOSS_MAX:
        raise InvalidFilter(f"Pathloss must be at most {PATHLOSS_MAX}")
    if rssi is not None and pathloss is not None:
        raise InvalidFilter("RSSI and Pathloss cannot be set together")
    transport = values.get("Transport")
    scan_type = adapter_scan_type
    if transport == "bredr":
        scan_type = SCAN_TYPE_BREDR
    elif transport == "le":
        scan_type = SCAN_TYPE_LE
    elif transport not in (None, "auto"):
        raise InvalidFilter("Transport must be auto, bredr or le")
    try:
        uuids = tuple(uuid128(u) for u in values.get("UUIDs", ()))
    except ValueError as exc:
        raise InvalidFilter(str(exc)) from None
    return DiscoveryFilter(
        uuids=uuids,
        rssi=int(rssi) if rssi is not None else None,
        pathloss=int(pathloss) if pathloss is not None else None,
        scan_type=scan_type,
        duplicate_data=bool(values.get("DuplicateData", False)),
        discoverable=bool(values.get("Discoverable", False)),
        pattern=str(values["Pattern"]) if "Pattern" in values else None,
    )


@dataclass(frozen=True, slots=True)
class KernelDiscovery:
    """What bluetoothd asks of the kernel: MGMT_OP_START_DISCOVERY or START_SERVICE_DISCOVERY.

    ``service`` is a filtered (service) discovery: the kernel then drops reports quieter
    than ``rssi`` or without one of ``uuids`` (net/bluetooth/mgmt.c is_filter_match)
    before bluetoothd sees them.
    """

    scan_type: int
    service: bool
    rssi: int | None = None
    uuids: tuple[str, ...] = ()


def merge_discovery_filters(
    filters: Iterable[DiscoveryFilter | None], adapter_scan_type: int = SCAN_TYPE_DUAL
) -> KernelDiscovery:
    """merge_discovery_filters + discovery_filter_to_mgmt_cp over the discovering clients.

    Only regular clients: a regular discovery.  Any filtered client: a service discovery
    whose transport is the union of the filters', whose RSSI is the lowest when every
    filter has one (none as soon as one has no RSSI or uses Pathloss, which the kernel
    cannot compute), whose UUIDs are the union unless one filter has none; with regular
    and filtered clients together, a service discovery that filters nothing.
    """
    items = list(filters)
    filtered = [f for f in items if f is not None]
    if not filtered:
        return KernelDiscovery(scan_type=adapter_scan_type, service=False)
    if len(filtered) < len(items):
        return KernelDiscovery(scan_type=adapter_scan_type, service=True)
    scan_type = 0
    rssi: int | None = None
    no_rssi = False
    for item in filtered:
        scan_type |= item.scan_type
        if item.rssi is None:
            no_rssi = True
        elif rssi is None or rssi >= item.rssi:
            rssi = item.rssi
    uuids: tuple[str, ...] = ()
    if all(f.uuids for f in filtered):
        uuids = tuple(sorted({u for f in filtered for u in f.uuids}))
    return KernelDiscovery(
        scan_type=scan_type, service=True, rssi=None if no_rssi else rssi, uuids=uuids
    )


@dataclass
class _Client:
    filter: DiscoveryFilter | None
    discovering: bool
    started: float = 0.0


class DiscoverySessions:
    """adapter.c's discovery_list and set_filter_list for one adapter.

    A filter set before StartDiscovery is kept for it, and kept after StopDiscovery
    (discovery_remove moves a client with a filter back to set_filter_list) until the
    client sets an empty filter or leaves the bus.
    """

    def __init__(self, adapter_scan_type: int = SCAN_TYPE_DUAL) -> None:
        self._scan_type = adapter_scan_type
        self._clients: dict[str, _Client] = {}
        self._kernel: KernelDiscovery | None = None
        self._cycle_start = 0.0

    @property
    def discovering(self) -> bool:
        """adapter->discovering: some client has a discovery session."""
        return any(c.discovering for c in self._clients.values())

    @property
    def kernel(self) -> KernelDiscovery | None:
        """The discovery the kernel runs now (None: none)."""
        return self._kernel

    def filters(self) -> list[DiscoveryFilter | None]:
        """The filters of the discovering clients (None for a regular one)."""
        return [c.filter for c in self._clients.values() if c.discovering]

    def filter_of(self, owner: str) -> DiscoveryFilter | None:
        client = self._clients.get(owner)
        return client.filter if client is not None else None

    def set_filter(self, owner: str, flt: DiscoveryFilter | None, now: float) -> None:
        """set_discovery_filter: replace the client's filter, or pre-set one."""
        client = self._clients.get(owner)
        if client is not None:
            client.filter = flt
            if not client.discovering and flt is None:
                del self._clients[owner]  # removing a pre-set filter
        elif flt is not None:
            self._clients[owner] = _Client(flt, discovering=False)
        self._update(now)

    def start(self, owner: str, now: float) -> None:
        """start_discovery: one session per client (InProgress otherwise)."""
        client = self._clients.get(owner)
        if client is not None and client.discovering:
            raise DiscoveryError("org.bluez.Error.InProgress", "Operation already in progress")
        if client is None:
            self._clients[owner] = _Client(None, discovering=True, started=now)
        else:
            client.discovering, client.started = True, now
        self._update(now)

    def stop(self, owner: str, now: float) -> bool:
        """stop_discovery; True when that was the last session (discovery_cleanup follows)."""
        client = self._clients.get(owner)
        if client is None or not client.discovering:
            raise DiscoveryError("org.bluez.Error.Failed", "No discovery started")
        return self._end(owner, client, now)

    def owner_left(self, owner: str, now: float) -> bool:
        """discovery_disconnect: the client left the bus; True if it was the last session."""
        client = self._clients.get(owner)
        if client is None:
            return False
        if client.discovering:
            last = self._end(owner, client, now)
            self._clients.pop(owner, None)
            return last
        del self._clients[owner]
        return False

    def clear(self) -> None:
        """adapter_stop (powered off): remove_discovery_list forgets sessions and filters."""
        self._clients.clear()
        self._kernel = None

    def _end(self, owner: str, client: _Client, now: float) -> bool:
        client.discovering = False
        if client.filter is None:
            del self._clients[owner]
        self._update(now)
        return not self.discovering

    def _update(self, now: float) -> None:
        """update_discovery_filter: restart the kernel's discovery when the merge changed."""
        if not self.discovering:
            self._kernel = None
            return
        merged = merge_discovery_filters(self.filters(), self._scan_type)
        if merged != self._kernel:
            self._kernel = merged
            self._cycle_start = now

    def listening_le(self, now: float) -> bool:
        """Whether the kernel is scanning LE right now for a discovery.

        A regular discovery scans for DISCOV_LE_TIMEOUT, then bluetoothd waits
        IDLE_DISCOV_TIMEOUT before restarting it; a filtered one restarts at once
        (no_scan_restart_delay), so it listens all the time.
        """
        kernel = self._kernel
        if kernel is None or not kernel.scan_type & SCAN_TYPE_LE:
            return False
        if kernel.service:
            return True
        phase = (now - self._cycle_start) % (DISCOV_LE_TIMEOUT_S + IDLE_DISCOV_TIMEOUT_S)
        return phase < DISCOV_LE_TIMEOUT_S

    def wants_discoverable(self) -> bool:
        """update_discovery_filter: a discovering client asked for Discoverable."""
        return any(f is not None and f.discoverable for f in self.filters())

    def duplicate_data(self) -> bool:
        """filter_duplicate_data: some discovering client's filter asks for DuplicateData."""
        return any(f is not None and f.duplicate_data for f in self.filters())


def kernel_accepts(kernel: KernelDiscovery, rssi: int, services: Iterable[str]) -> bool:
    """net/bluetooth/mgmt.c is_filter_match, for a service discovery's results."""
    if not kernel.service:
        return True
    if kernel.rssi is not None and rssi < kernel.rssi:
        return False
    return not kernel.uuids or bool(set(kernel.uuids) & set(services))


def device_is_discoverable(
    filters: Iterable[DiscoveryFilter | None],
    *,
    filtered: bool,
    flags: int,
    address: str,
    name: str | None,
) -> bool:
    """device_is_discoverable, for an LE advert.

    Unfiltered discovery reports only adverts with the LE Limited (0x01) or General
    (0x02) Discoverable flag; a filtered one reports any.  A client's Pattern then
    decides alone: an empty pattern matches everything, otherwise the address or name
    must start with it.
    """
    items = list(filters)
    discoverable = filtered or bool(flags & 0x03)
    if not items and not discoverable:
        return False
    for flt in items:
        if flt is None or flt.pattern is None:
            continue
        discoverable = False
        if not flt.pattern:
            return True
        if address.startswith(flt.pattern) or (name is not None and name.startswith(flt.pattern)):
            return True
    return discoverable


def is_filter_match(
    filters: Iterable[DiscoveryFilter | None],
    *,
    services: Iterable[str],
    rssi: int,
    tx_power: int | None,
) -> bool:
    """is_filter_match, literally.

    A regular client matches everything; a filtered one matches when it has no UUIDs or
    shares one with the advert, and then passes its proximity test.  That test is an OR
    whose first term (no RSSI in the filter) holds whenever Pathloss is set and whose
    third (no Pathloss) holds whenever RSSI is set, so in 5.66 (and 5.87) it never
    rejects: RSSI is enforced by the kernel (:func:`kernel_accepts`), Pathloss by no one.
    """
    service_set = set(services)
    for flt in filters:
        if flt is None:
            return True
        if flt.uuids and not set(flt.uuids) & service_set:
            continue
        if (
            flt.rssi is None
            or flt.rssi <= rssi
            or flt.pathloss is None
            or (tx_power is not None and tx_power - rssi <= flt.pathloss)
        ):
            return True
    return False
