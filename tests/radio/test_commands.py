"""The air, beacon and client commands, run as the user runs them."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from hw.dbus_daemon import start_private_bus
from hw.sim.launch import AirProcess
from relay.protocol.eid import eid_at
from tests.btogether_cli import btogether_argv
from tests.radio.conftest import KEY_A, host_env

Procs = list[asyncio.subprocess.Process]


async def spawn(processes: Procs, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *btogether_argv(*args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    processes.append(proc)
    return proc


async def read_json_until(
    proc: asyncio.subprocess.Process, predicate: Callable[[dict[str, object]], bool], timeout: float
) -> list[dict[str, object]]:
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching line within {timeout} s; saw {seen}"
        line = await asyncio.wait_for(proc.stdout.readline(), remaining)
        assert line, f"scan ended early; saw {seen}"
        seen.append(json.loads(line))
        if predicate(seen[-1]):
            return seen


def run(env: dict[str, str], *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        btogether_argv(*args), env=env, capture_output=True, text=True, timeout=timeout
    )


async def test_scan_names_a_known_beacon_and_reports_it_lost_when_its_process_is_killed(
    make_air: Callable[..., AirProcess], processes: Procs
) -> None:
    # The air forgets devices after 1 s; the scan's own staleness limit is far longer,
    # so "lost" can only come from BlueZ removing the device.
    air = make_air(("room-a", 0, 0), ("phone", 2, 0), device_timeout_s=1.0)
    scan = await spawn(
        processes,
        host_env(air, "phone"),
        "client", "scan", "--json", "--timeout", "60", "--lost-after", "120",
        "--key", f"room-a={KEY_A.hex()}",
    )  # fmt: skip
    beacon = await spawn(
        processes, host_env(air, "room-a"), "beacon", "advertise", "--key", KEY_A.hex()
    )
    assert beacon.stdout is not None
    first_line = (await asyncio.wait_for(beacon.stdout.readline(), 20)).decode()
    assert first_line.startswith("EID ")
    seen = await read_json_until(scan, lambda o: o["event"] == "new", timeout=20)
    new = seen[-1]
    assert new["name"] == "room-a"
    assert new["eid"] == first_line.split()[1] == eid_at(KEY_A, time.time(), 10).hex()
    assert new["rssi"] == -65 and new["tx_power"] == -59
    assert abs(float(new["distance_m"]) - 2.0) < 0.1  # type: ignore[arg-type]
    assert {"address", "t"} <= new.keys()

    beacon.kill()
    await beacon.wait()
    seen = await read_json_until(scan, lambda o: o["event"] == "lost", timeout=20)
    assert seen[-1]["address"] == new["address"]
    # bluetoothd's view too: the advertisement went away with its owner.
    bus = await MessageBus(bus_address=air.bus_address("room-a"), bus_type=BusType.SYSTEM).connect()
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path="/org/bluez/hci0",
            interface="org.freedesktop.DBus.Properties",
            member="Get",
            signature="ss",
            body=["org.bluez.LEAdvertisingManager1", "ActiveInstances"],
        )
    )
    bus.disconnect()
    assert reply is not None and reply.body[0].value == 0
    scan.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(scan.wait(), 10) == 0


async def test_scan_exits_0_at_its_timeout_with_text_lines(
    make_air: Callable[..., AirProcess], processes: Procs
) -> None:
    air = make_air(("room-a", 0, 0), ("phone", 3, 4))
    beacon = await spawn(
        processes, host_env(air, "room-a"), "beacon", "advertise", "--key", KEY_A.hex(),
        "--rotation-exponent", "12", "--tx-power", "-60", "--name", "ra",
    )  # fmt: skip
    assert beacon.stdout is not None
    await asyncio.wait_for(beacon.stdout.readline(), 20)
    started = time.monotonic()
    result = await asyncio.to_thread(
        run, host_env(air, "phone"), "client", "scan", "--timeout", "2"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 30  # 2 s of scanning plus start-up on a loaded machine
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[NEW] ")
    assert f"eid={eid_at(KEY_A, time.time(), 12).hex()}" in lines[0]
    # The air radiates -59 dBm at 1 m (-73 at 5 m); the beacon claims -60, so ~4.5 m.
    assert "rssi=-73 dBm" in lines[0] and "tx=-60 dBm" in lines[0] and "~4.5 m" in lines[0]
    beacon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(beacon.wait(), 10) == 0


async def test_air_prints_one_ready_line_per_host_and_cleans_up_on_sigterm(
    processes: Procs,
) -> None:
    import os

    air = await spawn(processes, dict(os.environ), "air", "--host", "a@0,0", "--host", "b@1,1")
    assert air.stdout is not None
    lines = [(await asyncio.wait_for(air.stdout.readline(), 15)).decode() for _ in range(2)]
    names = [line.split()[0] for line in lines]
    assert names == ["a", "b"]
    sockets = []
    for line in lines:
        key, _, address = line.split()[1].partition("=")
        assert key == "DBUS_SYSTEM_BUS_ADDRESS" and address.startswith("unix:path=")
        sockets.append(address.removeprefix("unix:path=").split(",")[0])
    moved = await asyncio.to_thread(
        run, host_env(None, None, lines[0].split("=", 1)[1].strip()), "air", "move", "b", "-3", "4"
    )
    assert moved.returncode == 0, moved.stderr
    listed = await asyncio.to_thread(
        run, host_env(None, None, lines[1].split("=", 1)[1].strip()), "air", "hosts"
    )
    assert listed.stdout.split("\n")[:2] == ["a 0,0", "b -3,4"]
    air.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(air.wait(), 10) == 0
    assert not any(os.path.exists(s) for s in sockets)


def test_air_help_explains_how_to_move_hosts_and_whose_rules_it_follows() -> None:
    result = run({}, "air", "--help")
    assert result.returncode == 0
    assert "btogether air move NAME X Y" in result.stdout
    assert "org.btogether.Air1.MoveHost" in result.stdout
    assert "bluetoothd 5.66" in result.stdout and "--experimental" in result.stdout


def test_air_rejects_a_malformed_host_clearly() -> None:
    result = run({}, "air", "--host", "room-a@zero,0")
    assert result.returncode == 2
    assert "X and Y must be numbers" in result.stderr and "Traceback" not in result.stderr


def test_moving_an_unknown_host_says_so(make_air: Callable[..., AirProcess]) -> None:
    air = make_air(("room-a", 0, 0))
    result = run(host_env(air, "room-a"), "air", "move", "nobody", "1", "1")
    assert result.returncode == 1
    assert "no host named 'nobody'" in result.stderr and "Traceback" not in result.stderr


def test_bad_keys_are_refused_with_a_clear_message() -> None:
    result = run({}, "beacon", "advertise", "--key", "not-hex")
    assert result.returncode == 2
    assert "identity key must be 32 hexadecimal digits" in result.stderr
    result = run({}, "client", "scan", "--key", "room-a=0102")
    assert result.returncode == 2
    assert "--key room-a: identity key must be 32 hexadecimal digits" in result.stderr
    for r in (result,):
        assert "Traceback" not in r.stderr


def test_commands_say_bluez_is_not_running_on_a_bus_without_it() -> None:
    with start_private_bus() as bus:
        env = host_env(None, None, bus.address)
        beacon = run(env, "beacon", "advertise", "--key", KEY_A.hex())
        scan = run(env, "client", "scan", "--timeout", "1")
    for result in (beacon, scan):
        assert result.returncode == 1
        assert "BlueZ is not running" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_commands_say_there_is_no_system_bus() -> None:
    env = host_env(None, None, "unix:path=/nonexistent/bus.sock")
    beacon = run(env, "beacon", "advertise", "--key", KEY_A.hex())
    scan = run(env, "client", "scan", "--timeout", "1")
    for result in (beacon, scan):
        assert result.returncode == 1
        assert "cannot reach the D-Bus system bus" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


async def test_commands_say_the_adapter_is_powered_off(
    make_air: Callable[..., AirProcess],
) -> None:
    air = make_air(("room-a", 0, 0))
    bus = await MessageBus(bus_address=air.bus_address("room-a"), bus_type=BusType.SYSTEM).connect()
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path="/org/bluez/hci0",
            interface="org.freedesktop.DBus.Properties",
            member="Set",
            signature="ssv",
            body=["org.bluez.Adapter1", "Powered", Variant("b", False)],
        )
    )
    bus.disconnect()
    assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
    env = host_env(air, "room-a")
    beacon = await asyncio.to_thread(run, env, "beacon", "advertise", "--key", KEY_A.hex())
    scan = await asyncio.to_thread(run, env, "client", "scan", "--timeout", "1")
    assert beacon.returncode == 1 and scan.returncode == 1
    assert "adapter hci0 is powered off" in beacon.stderr, beacon.stderr
    assert "powered" in scan.stderr.lower(), scan.stderr
    assert "Traceback" not in beacon.stderr + scan.stderr
