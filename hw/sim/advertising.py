"""``LEAdvertisingManager1`` of one simulated adapter: registered adverts and their airing.

The I/O side of ``src/advertising.c`` (BlueZ 5.66): read a client's advertisement
with ``GetAll`` (gdbus's proxy), parse and lay it out (:mod:`hw.sim.adverts`), give
it an instance, put it on the air until it is unregistered, its owner leaves the bus
or its ``Timeout`` expires (client_timeout: ``Release()`` then removal), drop its
Flags when its ``DiscoverableTimeout`` expires, and lay it out again when the
adapter's Discoverable changes (btd_adv_manager_refresh).  Only ``ActiveInstances``
and ``SupportedInstances`` are signalled on a change (add_client_complete,
client_remove).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from hw.sim.adverts import (
    LEGACY_ADV_MAX,
    Advertisement,
    InvalidAdvertisement,
    Layout,
    ad_flags,
    layout_advertisement,
    parse_advertisement,
)
from hw.sim.bus import (
    ADAPTER_PATH,
    ADV,
    ADV_MANAGER,
    DBUS_REPLY_TIMEOUT_S,
    PROPERTIES,
    BluezError,
    already_exists,
    does_not_exist,
    emit_changed,
    notify,
)

MAX_ADVERTISEMENTS = 5

_log = structlog.get_logger(__name__)


def instance_address(adapter_address: str, slot: int) -> tuple[str, str]:
    """(address, type) of advertising instance ``slot``: the first uses the adapter's."""
    if slot == 1:
        return adapter_address, "public"
    digest = hashlib.sha256(f"{adapter_address}/{slot}".encode()).digest()
    first = digest[0] | 0xC0  # random static address: two top bits set
    return ":".join(f"{b:02X}" for b in (first, *digest[1:6])), "random"


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


@dataclass(frozen=True, slots=True)
class AdapterView:
    """What an advert's layout depends on: the adapter's name and whether it is discoverable."""

    name: str
    discoverable: bool


@dataclass
class _Advert:
    owner: str
    path: str
    slot: int
    advertisement: Advertisement
    flags: int
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class AdvertisingManager:
    """The adverts registered on one adapter, aired through ``air``."""

    def __init__(
        self,
        *,
        host: str,
        adapter_address: str,
        bus: MessageBus,
        air: AirLink,
        adapter: Callable[[], AdapterView],
        interval_s: float,
        experimental: bool,
    ) -> None:
        self._host = host
        self._address = adapter_address
        self._bus = bus
        self._air = air
        self._adapter = adapter
        self._interval_s = interval_s
        self._experimental = experimental
        self._adverts: dict[tuple[str, str], _Advert] = {}
        self._pending: set[tuple[str, str]] = set()
        self._log = _log.bind(host=host)

    def properties(self) -> dict[str, Variant]:
        """LEAdvertisingManager1's properties (the experimental two only with ``-E``)."""
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

    async def register(self, msg: Message, owner: str, path: str) -> None:
        """register_advertisement, answered once the advertisement was read and placed."""
        key = (owner, path)
        try:
            advert = await self._read_and_place(owner, path)
        except BluezError as error:
            self._bus.send(Message.new_error(msg, error.name, error.text))
            return
        if advert is None:
            return  # the client left the bus meanwhile
        self._adverts[key] = advert
        loop = asyncio.get_running_loop()
        ad = advert.advertisement
        if ad.timeout:
            advert.timers.append(loop.call_later(ad.timeout, self._timed_out, key))
        if advert.flags and ad.discoverable_timeout:
            advert.timers.append(
                loop.call_later(ad.discoverable_timeout, self._discoverable_ended, key)
            )
        self._air_advert(advert)
        self._log.info("advertisement_registered", client=owner, path=path, slot=advert.slot)
        self._bus.send(Message.new_method_return(msg))
        self._instances_changed()

    async def _read_and_place(self, owner: str, path: str) -> _Advert | None:
        key = (owner, path)
        if key in self._adverts or key in self._pending:
            raise already_exists()
        if len(self._adverts) + len(self._pending) >= MAX_ADVERTISEMENTS:
            raise BluezError("org.bluez.Error.NotPermitted", "Maximum advertisements reached")
        self._pending.add(key)
        props = await self._read_client_properties(owner, path)
        if key not in self._pending:
            return None
        self._pending.discard(key)
        view = self._adapter()
        try:
            advertisement = parse_advertisement(props, experimental=self._experimental)
            flags = ad_flags(
                advertisement, adapter_bredr=True, adapter_discoverable=view.discoverable
            )
            self._layout(advertisement, flags)
        except InvalidAdvertisement as exc:
            self._log.info("advertisement_refused", client=owner, path=path, reason=str(exc))
            raise BluezError("org.bluez.Error.Failed", "Failed to parse advertisement.") from None
        free = set(range(1, MAX_ADVERTISEMENTS + 1)) - {a.slot for a in self._adverts.values()}
        return _Advert(owner, path, min(free), advertisement, flags)

    async def _read_client_properties(self, owner: str, path: str) -> Mapping[str, Any]:
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
                        body=[ADV],
                    )
                ),
                timeout=DBUS_REPLY_TIMEOUT_S,
            )
        except TimeoutError:
            return {}
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            return {}
        return dict(reply.body[0])

    def unregister(self, owner: str, path: str) -> None:
        advert = self._adverts.get((owner, path))
        if advert is None:
            raise does_not_exist()
        self._drop(advert)

    def owner_left(self, owner: str) -> None:
        self._pending = {k for k in self._pending if k[0] != owner}
        for advert in [a for a in self._adverts.values() if a.owner == owner]:
            self._drop(advert)

    def refresh(self) -> None:
        """btd_adv_manager_refresh: the adapter's Discoverable changed the kernel's flags."""
        for advert in self._adverts.values():
            try:
                self._air_advert(advert)
            except InvalidAdvertisement:
                self._log.warning("advertisement_refresh_failed", path=advert.path)

    def close(self) -> None:
        for advert in list(self._adverts.values()):
            self._cancel_timers(advert)
            self._air.stop_airing(self._host, (advert.owner, advert.path))

    def _layout(self, advertisement: Advertisement, flags: int) -> Layout:
        view = self._adapter()
        return layout_advertisement(
            advertisement,
            flags=flags,
            adapter_name=view.name,
            adapter_discoverable=view.discoverable,
        )

    def _air_advert(self, advert: _Advert) -> None:
        ad = advert.advertisement
        interval = self._interval_s
        if ad.min_interval_ms and ad.max_interval_ms:
            interval = ad.min_interval_ms / 1000.0
        address, address_type = instance_address(self._address, advert.slot)
        self._air.start_airing(
            self._host,
            (advert.owner, advert.path),
            Transmission(address, address_type, self._layout(ad, advert.flags), interval),
        )

    def _timed_out(self, key: tuple[str, str]) -> None:
        """client_timeout: Release() the client and remove its advertisement."""
        advert = self._adverts.get(key)
        if advert is not None:
            notify(self._bus, advert.owner, advert.path, ADV, "Release")
            self._drop(advert)

    def _discoverable_ended(self, key: tuple[str, str]) -> None:
        """client_discoverable_timeout: the Flags go, the advert stays."""
        advert = self._adverts.get(key)
        if advert is not None:
            advert.flags = 0
            self._air_advert(advert)

    def _drop(self, advert: _Advert) -> None:
        """client_remove."""
        key = (advert.owner, advert.path)
        self._adverts.pop(key, None)
        self._cancel_timers(advert)
        self._air.stop_airing(self._host, key)
        self._log.info("advertisement_unregistered", client=advert.owner, path=advert.path)
        self._instances_changed()

    def _instances_changed(self) -> None:
        props = self.properties()
        emit_changed(
            self._bus,
            ADAPTER_PATH,
            ADV_MANAGER,
            {n: props[n] for n in ("SupportedInstances", "ActiveInstances")},
        )

    @staticmethod
    def _cancel_timers(advert: _Advert) -> None:
        for handle in advert.timers:
            handle.cancel()
        advert.timers.clear()
