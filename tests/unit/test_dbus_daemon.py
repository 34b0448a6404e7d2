"""A private bus starts, answers, and goes away cleanly."""

from __future__ import annotations

from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from hw.dbus_daemon import start_private_bus


async def test_private_bus_lets_any_name_be_owned_and_called() -> None:
    with start_private_bus() as bus:
        assert bus.address.startswith("unix:path=")
        conn = await MessageBus(bus_address=bus.address, bus_type=BusType.SYSTEM).connect()
        try:
            reply = await conn.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="RequestName",
                    signature="su",
                    body=["org.bluez", 0],
                )
            )
            assert reply is not None and reply.body == [1]  # primary owner
        finally:
            conn.disconnect()
        directory = bus.directory
    assert bus.process.poll() is not None
    assert not directory.exists()
