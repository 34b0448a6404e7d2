"""The part every D-Bus stand-in shares: connect, export its objects, own its name, let go."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Self

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface


class BusNameOwner:
    """Owns a well-known name on a bus with the objects ``exports()`` lists, between
    ``start()`` and ``stop()`` (or as an async context manager)."""

    def __init__(self, bus_address: str, bus_type: BusType) -> None:
        self._address = bus_address
        self._bus_type = bus_type
        self._bus: MessageBus | None = None

    @property
    def bus_name(self) -> str:
        raise NotImplementedError

    def exports(self) -> Iterable[tuple[str, ServiceInterface]]:
        """(object path, interface) pairs to export before the name is requested."""
        raise NotImplementedError

    async def start(self) -> None:
        bus = await MessageBus(bus_address=self._address, bus_type=self._bus_type).connect()
        for path, interface in self.exports():
            bus.export(path, interface)
        await bus.request_name(self.bus_name)
        self._bus = bus

    async def stop(self) -> None:
        if self._bus is not None:
            bus, self._bus = self._bus, None
            bus.disconnect()
            with contextlib.suppress(Exception):  # the bus may already be gone
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
