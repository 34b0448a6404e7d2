"""The simulated bluetoothd as the real bluetoothctl 5.66 and busctl see it.

Each test pins one of bluetoothd's rules (BlueZ 5.66: src/adapter.c, src/device.c,
src/advertising.c, src/adv_monitor.c) with software we did not write: bluetoothctl is
a plain D-Bus client, pointed at a host's bus of the air.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable

from beacon.advertising import BeaconConfig, payload_at
from hw.advertiser import AdvertPayload
from hw.advertiser.bluez import BlueZAdvertiser
from hw.sim.bluez import host_address
from hw.sim.launch import AirProcess
from relay.protocol.eid import eid_at
from relay.protocol.frame import DEFAULT_COMPANY_ID
from tests.radio.bluetoothctl import (
    Bluetoothctl,
    bluetoothctl,
    busctl,
    needs_bluetoothctl,
    needs_busctl,
    run_bluetoothctl,
)
from tests.radio.conftest import KEY_A, host_env
from tests.radio.test_commands import Procs, read_json_until, spawn

pytestmark = needs_bluetoothctl

ADDRESS = "[0-9A-F]{2}(?::[0-9A-F]{2}){5}"


@contextlib.asynccontextmanager
async def advertising(
    air: AirProcess, host: str, payload: AdvertPayload
) -> AsyncIterator[BlueZAdvertiser]:
    advertiser = BlueZAdvertiser(bus_address=air.bus_address(host))
    await advertiser.start(payload)
    try:
        yield advertiser
    finally:
        await advertiser.stop()


def beacon_payload(name: str = "room-a") -> AdvertPayload:
    return payload_at(BeaconConfig(KEY_A, local_name=name), time.time())


async def scan_with_a_filter(ctl: Bluetoothctl, *settings: str) -> int:
    """`scan on` after `menu scan` settings (bluetoothctl sends the filter with it); the line."""
    await ctl.run("menu scan", "Menu scan")
    for setting in settings:
        await ctl.send(setting)  # sent with the next scan on
    await ctl.run("back", "Menu main")
    start = len(ctl.lines)
    await ctl.send("scan on")
    await ctl.expect("SetDiscoveryFilter success", start=start)
    return start


def hidden_payload() -> AdvertPayload:
    """An advert without the discoverable flag (a broadcast; the name in its scan response)."""
    return AdvertPayload({DEFAULT_COMPANY_ID: bytes(11)}, local_name="hidden")


async def test_bluetoothctl_starts_without_an_error_and_lists_the_controller(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("phone", 0, 0))
    async with bluetoothctl(air.bus_address("phone")) as ctl:
        await ctl.expect("Agent registered")  # AgentManager1.RegisterAgent
        await ctl.run("list", rf"Controller {host_address('phone')} phone \[default\]")
        await ctl.run("agent off", "Agent unregistered")
        assert not [
            line
            for line in ctl.lines
            if re.search(r"Failed|Error|not available|No default", line, re.IGNORECASE)
        ], ctl.lines


def test_show_lists_a_stock_adapter_and_with_experimental_its_monitor_manager(
    make_air: Callable[..., AirProcess],
) -> None:
    stock = make_air(("phone", 0, 0))
    lines = run_bluetoothctl(stock.bus_address("phone"), "show")
    for expected in (
        f"Controller {host_address('phone')} (public)",
        "Powered: yes",
        "Discoverable: no",
        "Pairable: yes",
        "Discovering: no",
        "Roles: central",
        "SupportedInstances: 0x05 (5)",
        "SupportedIncludes: local-name",
    ):
        assert expected in lines, (expected, lines)
    assert not any("PowerState" in line or "SupportedMonitorTypes" in line for line in lines)
    experimental = make_air(("phone", 0, 0), experimental=True)
    lines = run_bluetoothctl(experimental.bus_address("phone"), "show")
    assert "PowerState: on" in lines and "SupportedMonitorTypes: or_patterns" in lines, lines


async def test_power_discoverable_and_pairable_writes_stick(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("phone", 0, 0))
    address = host_address("phone")
    async with bluetoothctl(air.bus_address("phone")) as ctl:
        await ctl.expect("Agent registered")
        await ctl.run("power off", "Changing power off succeeded")
        await ctl.run("show", "Powered: no")
        await ctl.run("power on", "Changing power on succeeded")
        await ctl.run("discoverable on", "Changing discoverable on succeeded")
        await ctl.run("pairable off", "Changing pairable off succeeded")
        start = len(ctl.lines)
        await ctl.send("show")
        await ctl.expect("Discoverable: yes", start=start)
        await ctl.expect("Pairable: no", start=start)
        # DiscoverableTimeout: the adapter stops being discoverable on its own.
        await ctl.run("discoverable off", "Changing discoverable off succeeded")
        await ctl.run("discoverable-timeout 1", "Changing discoverable-timeout 1 succeeded")
        await ctl.run("discoverable on", f"Controller {address} Discoverable: yes")
        await ctl.expect(f"Controller {address} Discoverable: no", timeout=5)


async def test_scan_on_lists_our_beacon_but_not_an_advert_without_the_discoverable_flag(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0), ("room-b", 0, 2), ("phone", 2, 0))
    async with (
        advertising(air, "room-a", beacon_payload()),
        advertising(air, "room-b", hidden_payload()),
        bluetoothctl(air.bus_address("phone")) as ctl,
    ):
        await ctl.expect("Agent registered")
        await ctl.run("scan on", rf"\[NEW\] Device {ADDRESS} room-a")
        await asyncio.sleep(1.0)  # ten more advertising intervals of both
        assert not any("hidden" in line for line in ctl.lines), ctl.lines
        # `scan le` in bluetoothctl 5.66 sends no filter either (its filter is "set").
        await ctl.run("scan off", "Discovery stopped")
        await ctl.run("scan le", "Discovery started")
        await asyncio.sleep(1.0)
        assert not any("hidden" in line for line in ctl.lines), ctl.lines
        await ctl.run("scan off", "Discovery stopped")
        # A filter (any: here the transport) makes it a filtered discovery: all adverts.
        start = await scan_with_a_filter(ctl, "transport le")
        await ctl.expect(rf"\[NEW\] Device {ADDRESS} hidden", start=start)


async def test_unfiltered_scan_signals_rssi_only_after_an_8_db_move(
    make_air: Callable[..., AirProcess],
) -> None:
    # No noise: -59 dBm at 1 m, 20·log10(d) path loss.  2 m: -65; 2.5 m: -67; 8 m: -77.
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    async with (
        advertising(air, "room-a", beacon_payload()),
        bluetoothctl(air.bus_address("phone")) as ctl,
    ):
        await ctl.expect("Agent registered")
        await ctl.run("scan on", rf"\[NEW\] Device {ADDRESS} room-a")
        start = len(ctl.lines)
        await air.amove("phone", 2.5, 0)
        await asyncio.sleep(1.5)
        assert not any("RSSI" in line for line in ctl.lines[start:]), ctl.lines[start:]
        await air.amove("phone", 8, 0)
        await ctl.expect(rf"\[CHG\] Device {ADDRESS} RSSI: -77", timeout=20, start=start)


async def test_filtered_scan_signals_every_rssi_and_duplicate_data_every_data(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    async with (
        advertising(air, "room-a", beacon_payload()),
        bluetoothctl(air.bus_address("phone")) as ctl,
    ):
        await ctl.expect("Agent registered")
        await scan_with_a_filter(ctl, "transport le")
        await ctl.expect(rf"\[NEW\] Device {ADDRESS} room-a")
        start = len(ctl.lines)
        await asyncio.sleep(1.5)
        window = ctl.lines[start:]
        assert sum("RSSI: -65" in line for line in window) >= 5, window  # unchanged, yet sent
        assert not any("ManufacturerData" in line for line in window), window
        await ctl.run("scan off", "Discovery stopped")
        start = await scan_with_a_filter(ctl, "duplicate-data on")
        await asyncio.sleep(1.5)
        window = ctl.lines[start:]
        assert sum("ManufacturerData Key: 0xffff" in line for line in window) >= 5, window


async def test_a_device_is_removed_when_not_heard_for_the_temporary_timeout(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0), device_timeout_s=2.0)
    async with bluetoothctl(air.bus_address("phone")) as ctl:
        await ctl.expect("Agent registered")
        async with advertising(air, "room-a", beacon_payload()):
            await ctl.run("scan on", rf"\[NEW\] Device {ADDRESS} room-a")
            await asyncio.sleep(3.0)  # heard all along: kept
            assert not any("[DEL]" in line for line in ctl.lines), ctl.lines
            stopped = time.monotonic()
        await ctl.expect(rf"\[DEL\] Device {ADDRESS} room-a", timeout=10)
        assert time.monotonic() - stopped < 2.0 + 1.5


async def test_an_advert_made_in_bluetoothctl_is_heard_by_client_scan(
    make_air: Callable[..., AirProcess], processes: Procs
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    now = time.time()
    frame = payload_at(BeaconConfig(KEY_A), now).manufacturer_data[DEFAULT_COMPANY_ID]
    data = " ".join(f"0x{b:02x}" for b in frame)
    async with bluetoothctl(air.bus_address("room-a")) as ctl:
        await ctl.expect("Agent registered")
        await ctl.run("menu advertise", "Menu advertise")
        await ctl.send(f"manufacturer 0xffff {data}")
        await ctl.send("discoverable on")
        await ctl.run("back", "Menu main")
        await ctl.run("advertise on", "Advertising object registered")
        scan = await spawn(
            processes,
            host_env(air, "phone"),
            "client", "scan", "--json", "--timeout", "20", "--key", f"room-a={KEY_A.hex()}",
        )  # fmt: skip
        seen = await read_json_until(scan, lambda o: o["event"] == "new", timeout=20)
        assert seen[-1]["name"] == "room-a"
        assert seen[-1]["eid"] == eid_at(KEY_A, now, 10).hex()
        assert seen[-1]["address"] == host_address("room-a")
        await ctl.run("advertise off", "Advertising object unregistered")
        scan.kill()


async def test_an_advert_timeout_releases_it(make_air: Callable[..., AirProcess]) -> None:
    air = make_air(("room-a", 0, 0))
    async with bluetoothctl(air.bus_address("room-a")) as ctl:
        await ctl.expect("Agent registered")
        await ctl.run("menu advertise", "Menu advertise")
        await ctl.send("timeout 1")
        await ctl.run("timeout", "Timeout: 1 sec")
        await ctl.run("back", "Menu main")
        await ctl.run("advertise on", "Advertising object registered")
        await ctl.expect("Advertising released", timeout=5)
        await ctl.run("show", r"ActiveInstances: 0x00 \(0\)")


async def test_monitor_menu_adds_a_monitor_that_finds_the_beacon_and_removes_it(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0), experimental=True)
    async with bluetoothctl(air.bus_address("phone")) as ctl:
        # bluetoothctl registers "/" as its monitor app root when the manager appears;
        # bluetoothd then follows its InterfacesAdded/InterfacesRemoved.
        await ctl.expect("AdvertisementMonitor path registered")
        await asyncio.sleep(3.5)  # a monitor exported well after RegisterMonitor still counts
        async with advertising(air, "room-a", beacon_payload()):
            await ctl.run("menu monitor", "Menu monitor")
            await ctl.run("add-or-pattern 0 255 ffff", "Advertisement Monitor 0 added")
            await ctl.expect("Advertisement monitor 0 activated")
            # Passive scanning sends no scan requests: the device has no name.
            await ctl.expect(rf"\[NEW\] Device {ADDRESS} [0-9A-F]{{2}}(-[0-9A-F]{{2}}){{5}}$")
            await ctl.expect("Advertisement monitor 0 found device /org/bluez/hci0/dev_")
            await ctl.run("remove-pattern 0", "Monitor 0 deleted")
            await asyncio.sleep(0.5)
            found = sum("found device" in line for line in ctl.lines)
            await asyncio.sleep(1.0)  # ten adverts later: no monitor, no calls
            assert sum("found device" in line for line in ctl.lines) == found
            # With RSSI thresholds: found once, and lost when the beacon stops.
            await ctl.send("set-rssi-threshold -90 -80")
            await ctl.send("set-rssi-timeout 1 1")
            start = len(ctl.lines)
            await ctl.run("add-or-pattern 0 255 ffff", "Advertisement Monitor 0 added")
            await ctl.expect("Advertisement monitor 0 found device", timeout=5, start=start)
            await asyncio.sleep(1.5)
            assert sum("found device" in line for line in ctl.lines[start:]) == 1
        await ctl.expect("Advertisement monitor 0 lost device", timeout=5, start=start)


async def test_monitor_menu_is_absent_from_a_stock_bluetoothd(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("phone", 0, 0))
    async with bluetoothctl(air.bus_address("phone")) as ctl:
        await ctl.expect("Agent registered")
        await ctl.run("menu monitor", "Menu monitor")
        await ctl.run("add-or-pattern 0 255 ffff", "Advertisement Monitor 0 added")
        await asyncio.sleep(1.0)
        assert not any("activated" in line for line in ctl.lines), ctl.lines


@needs_busctl
async def test_busctl_introspects_every_object(make_air: Callable[..., AirProcess]) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    bus = air.bus_address("phone")
    async with advertising(air, "room-a", beacon_payload()):
        async with bluetoothctl(bus) as ctl:
            await ctl.expect("Agent registered")
            await ctl.run("scan on", rf"\[NEW\] Device {ADDRESS} room-a")
            tree = busctl(bus, "tree", "org.bluez")
        assert tree.returncode == 0, tree.stderr
        device = "/org/bluez/hci0/dev_" + host_address("room-a").replace(":", "_")
        assert "/org/bluez/hci0" in tree.stdout and device in tree.stdout, tree.stdout
        assert "/org/btogether" not in tree.stdout  # the air's own object is not bluetoothd's
        adapter = busctl(bus, "introspect", "org.bluez", "/org/bluez/hci0")
        assert adapter.returncode == 0, adapter.stderr
        for member in (
            ".StartDiscovery",
            ".SetDiscoveryFilter",
            "org.bluez.LEAdvertisingManager1",
            ".RegisterAdvertisement",
            "org.bluez.GattManager1",
        ):
            assert member in adapter.stdout, (member, adapter.stdout)
        assert "AdvertisementMonitorManager1" not in adapter.stdout
        assert re.search(r"\.Powered\s+property\s+b\s+true", adapter.stdout), adapter.stdout
        dev = busctl(bus, "introspect", "org.bluez", device)
        assert "org.bluez.Device1" in dev.stdout and ".Pair " in dev.stdout, dev.stdout
        assert re.search(r"\.Name\s+property\s+s\s+\"room-a\"", dev.stdout), dev.stdout
        root = busctl(bus, "introspect", "org.bluez", "/org/bluez")
        assert "org.bluez.AgentManager1" in root.stdout and ".RegisterAgent" in root.stdout
    experimental = make_air(("phone", 0, 0), experimental=True)
    adapter = busctl(experimental.bus_address("phone"), "introspect", "org.bluez", "/org/bluez/hci0")
    assert ".RegisterMonitor" in adapter.stdout and ".PowerState" in adapter.stdout


async def test_pairing_and_connecting_fail_as_bluetoothd_fails_without_a_link(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 2, 0))
    async with (
        advertising(air, "room-a", beacon_payload()),
        bluetoothctl(air.bus_address("phone")) as ctl,
    ):
        await ctl.expect("Agent registered")
        new = await ctl.run("scan on", rf"\[NEW\] Device ({ADDRESS}) room-a")
        address = new.group(1)
        await ctl.run(f"pair {address}", "Failed to pair: org.bluez.Error.ConnectionAttemptFailed")
        await ctl.run(f"connect {address}", "Failed to connect: org.bluez.Error.Failed")
        await ctl.run(f"trust {address}", f"Changing {address} trust succeeded")
        await ctl.run(f"info {address}", "Trusted: yes")
