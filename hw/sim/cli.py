"""``btogether air``: run the simulated air, and move or list its hosts while it runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from hw.dbus_daemon import DbusDaemonError
from hw.radio_model import DEFAULT_TX_POWER
from hw.sim.air import (
    DEFAULT_DEVICE_TIMEOUT_S,
    DEFAULT_INTERVAL_S,
    AirConfig,
    HostSpec,
    parse_host_spec,
    run_air,
)
from hw.sim.bus import BLUEZ_VERSION
from hw.sim.control import AirControlError, list_hosts, move_host
from hw.stdout import quiet_stdout

EPILOG = """\
Reports like bluetoothd {version} (BlueZ's src/adapter.c, src/device.c, src/advertising.c,
src/adv_monitor.c): RSSI is signalled again only when it moved by 8 dB or more, and
manufacturer/service data only when the bytes change, unless a discovery filter is set
(then every report's RSSI; the data too with DuplicateData=true); discovery without a
filter (plain `bluetoothctl scan on`) reports only adverts with the LE General or Limited
Discoverable flag, 10.24 s of every 15.24 s; a device is removed --device-timeout
seconds (TemporaryTimeout) after it was last heard.  Passive scanning
(AdvertisementMonitorManager1) only with --experimental, as with `bluetoothd -E`.

Each host gets its own private D-Bus system bus with a simulated BlueZ (hci0) on it;
for each host, as soon as it is ready, one line is printed:

  NAME DBUS_SYSTEM_BUS_ADDRESS=<address>

Run any BlueZ program "on" that host by exporting that variable, e.g.
  DBUS_SYSTEM_BUS_ADDRESS=<address of room-a> btogether beacon advertise --key ...

Moving hosts while the air runs:
  btogether air move NAME X Y      (DBUS_SYSTEM_BUS_ADDRESS = any host's bus, or --bus)
  btogether air hosts              list hosts and positions
or over D-Bus on any host's bus: destination org.btogether.Air, object /org/btogether/Air,
method org.btogether.Air1.MoveHost(s name, d x, d y), ListHosts() -> a(sdd), e.g.
  busctl --address=<address> call org.btogether.Air /org/btogether/Air \\
      org.btogether.Air1 MoveHost sdd phone 3 4
Power a host's adapter off/on with BlueZ's own Adapter1.Powered property
(e.g. busctl --address=<address> set-property org.bluez /org/bluez/hci0
org.bluez.Adapter1 Powered b false).

Stops on SIGINT/SIGTERM and removes its buses."""


def _host(text: str) -> HostSpec:
    try:
        return parse_host_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(version=BLUEZ_VERSION)
    parser.description = (
        f"Simulate BlueZ (bluetoothd {BLUEZ_VERSION}'s D-Bus API and reporting rules) for "
        "several hosts sharing one radio space."
    )
    parser.add_argument(
        "--host",
        action="append",
        type=_host,
        metavar="NAME@X,Y",
        help="a simulated host and its position in metres (repeat for each host)",
    )
    parser.add_argument(
        "--noise-db",
        type=float,
        default=0.0,
        help="standard deviation of the RSSI shadowing noise, dB (default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=DEFAULT_INTERVAL_S * 1000,
        help=f"advertising interval, ms (default {DEFAULT_INTERVAL_S * 1000:g})",
    )
    parser.add_argument(
        "--device-timeout",
        type=float,
        default=DEFAULT_DEVICE_TIMEOUT_S,
        metavar="S",
        help="remove a device not heard for S seconds, like bluetoothd's TemporaryTimeout "
        f"(default {DEFAULT_DEVICE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--tx-power",
        type=int,
        default=DEFAULT_TX_POWER,
        metavar="DBM",
        help=f"every host's signal strength at 1 m, dBm (default {DEFAULT_TX_POWER})",
    )
    parser.add_argument(
        "--path-loss-exponent",
        type=float,
        default=2.0,
        help="n in the path-loss model rssi = tx_power - 10·n·log10(d) (default 2)",
    )
    parser.add_argument(
        "-E",
        "--experimental",
        action="store_true",
        help="like bluetoothd -E: offer AdvertisementMonitorManager1 (passive scanning) and "
        "the other experimental interfaces and properties (default: a stock bluetoothd)",
    )
    parser.add_argument(
        "--exit-with-pid",
        type=int,
        metavar="PID",
        help="stop (and remove the buses) when process PID is gone; start_air() passes its own",
    )
    parser.set_defaults(func=_run)
    sub = parser.add_subparsers(
        dest="air_command", metavar="ACTION", title="actions on a running air (optional)"
    )
    move = sub.add_parser(
        "move",
        help="move a host of a running air",
        description="Move a host of a running air to X,Y (metres); RSSI follows at once.",
    )
    move.add_argument("name", help="the host's name")
    move.add_argument("x", type=float, help="new position east, metres")
    move.add_argument("y", type=float, help="new position north, metres")
    move.add_argument("--bus", help="any host's bus address (default $DBUS_SYSTEM_BUS_ADDRESS)")
    move.add_argument("--json", action="store_true", help="print the new position as JSON")
    move.set_defaults(func=_move)
    hosts = sub.add_parser(
        "hosts",
        help="list the hosts of a running air",
        description="List the hosts of a running air and their positions (metres).",
    )
    hosts.add_argument("--bus", help="any host's bus address (default $DBUS_SYSTEM_BUS_ADDRESS)")
    hosts.add_argument("--json", action="store_true", help="print a JSON list of hosts")
    hosts.set_defaults(func=_hosts)


def _run(args: argparse.Namespace) -> int:
    hosts: list[HostSpec] = args.host or []
    if not hosts:
        print("btogether air: give at least one --host NAME@X,Y", file=sys.stderr)
        return 2
    if len({h.name for h in hosts}) != len(hosts):
        print("btogether air: host names must be unique", file=sys.stderr)
        return 2
    if args.interval_ms < 20 or args.device_timeout <= 0 or args.noise_db < 0:
        print(
            "btogether air: --interval-ms must be >= 20 (the BLE minimum), "
            "--device-timeout > 0 and --noise-db >= 0",
            file=sys.stderr,
        )
        return 2
    config = AirConfig(
        noise_db=args.noise_db,
        seed=args.seed,
        interval_s=args.interval_ms / 1000.0,
        device_timeout_s=args.device_timeout,
        tx_power_1m=args.tx_power,
        path_loss_exponent=args.path_loss_exponent,
        experimental=args.experimental,
    )

    def ready(name: str, address: str) -> None:
        print(f"{name} DBUS_SYSTEM_BUS_ADDRESS={address}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watchdog = None
        if args.exit_with_pid:
            watchdog = asyncio.ensure_future(_stop_when_gone(args.exit_with_pid, stop))
        try:
            await run_air(hosts, config, stop, ready)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    try:
        asyncio.run(main())
    except DbusDaemonError as exc:
        print(f"btogether air: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        quiet_stdout()  # whoever read the addresses is gone; the buses were removed on the way out
    return 0


async def _stop_when_gone(pid: int, stop: asyncio.Event) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            return
        except PermissionError:
            pass  # alive, just not ours to signal
        await asyncio.sleep(1.0)


def _bus(args: argparse.Namespace) -> str | None:
    address: str | None = args.bus or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    return address


def _move(args: argparse.Namespace) -> int:
    try:
        asyncio.run(move_host(_bus(args), args.name, args.x, args.y))
    except AirControlError as exc:
        print(f"btogether air move: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"name": args.name, "x": args.x, "y": args.y}))
    else:
        print(f"{args.name} {args.x:g},{args.y:g}")
    return 0


def _hosts(args: argparse.Namespace) -> int:
    try:
        positions = asyncio.run(list_hosts(_bus(args)))
    except AirControlError as exc:
        print(f"btogether air hosts: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"name": name, "x": x, "y": y} for name, x, y in positions]))
        return 0
    for name, x, y in positions:
        print(f"{name} {x:g},{y:g}")
    return 0
