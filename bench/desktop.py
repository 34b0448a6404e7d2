"""How quickly the desktop side reacts: screen lock watched and applied, audio handed off.

    python -P bench/desktop.py [--trials 200] [--streams 10] [--handoffs 30]

Against real components started here: a private dbus-daemon with the logind stand-in, and
a headless PulseAudio with null devices and ``pacat`` streams. Each figure is printed
with its spread next to a baseline measured in the same run on the same servers:

* **lock watched**: from the desktop locking or unlocking (logind's ``LockedHint``
  changing) until :class:`hw.lock.linux.LogindLockWatcher` reports it. Baseline: the same
  ``PropertiesChanged`` signal received by a bare dbus-fast connection (the bus's floor).
* **phone lock**: :meth:`LogindSessionLocker.lock` / ``unlock`` returning with
  ``LockedHint`` confirmed. Baseline: the same ``Lock``/``Unlock`` call made with bare
  dbus-fast, waiting for the same signal.
* **audio hand-off**: :meth:`PulseAudioRouter.activate` (the phone's sink and source made
  the defaults, every stream moved) with ``--streams`` streams playing, and
  :meth:`release`. Baseline: the same defaults set and streams moved with bare pulsectl.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from bench.common import line, machine
from btogether.logs import configure_logging
from hw.audio.pulse import PulseAudioRouter
from hw.dbus_daemon import start_private_bus
from hw.lock import LockBusConfig
from hw.lock.linux import LogindLockWatcher, LogindSessionLocker
from hw.standin.logind import LogindStandIn
from hw.standin.pulseaudio import start_headless_pulseaudio

LOGIND = "org.freedesktop.login1"
SESSION_INTERFACE = "org.freedesktop.login1.Session"


async def _bare_bus(address: str, session_path: str) -> tuple[MessageBus, asyncio.Queue[bool]]:
    """A plain dbus-fast connection told of every LockedHint change of the session."""
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    hints: asyncio.Queue[bool] = asyncio.Queue()

    def on_message(msg: Message) -> None:
        if msg.member == "PropertiesChanged" and msg.path == session_path:
            changed = msg.body[1]
            if "LockedHint" in changed:
                hints.put_nowait(bool(changed["LockedHint"].value))

    bus.add_message_handler(on_message)
    rule = (
        f"type='signal',path='{session_path}',interface='org.freedesktop.DBus.Properties',"
        "member='PropertiesChanged'"
    )
    await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )
    return bus, hints


async def lock_benchmarks(trials: int) -> None:
    with start_private_bus() as system:
        async with LogindStandIn(system.address, desktop_sets_hint=True) as logind:
            session_path = logind.session().path
            config = LockBusConfig(system_bus_address=system.address)
            watcher = LogindLockWatcher(config, request_grace=0.2)
            await watcher.start()
            events = watcher.events()
            await anext(events)  # the initial state
            bare, hints = await _bare_bus(system.address, session_path)
            watched: list[float] = []
            floor: list[float] = []
            # Alternate: the watcher's report of one change, the bare signal of the next.
            for trial in range(2 * trials):
                lock = trial % 2 == 0
                t0 = time.perf_counter()
                if lock:
                    logind.desktop_lock()
                else:
                    logind.desktop_unlock()
                if trial % 4 < 2:
                    event = await anext(events)
                    watched.append(time.perf_counter() - t0)
                    assert event.locked == lock
                    while (await hints.get()) != lock:
                        pass
                else:
                    while (await hints.get()) != lock:
                        pass
                    floor.append(time.perf_counter() - t0)
                    assert (await anext(events)).locked == lock
            await watcher.stop()
            print(line("lock watched (LockedHint)", watched, floor))

            locker = LogindSessionLocker(config)
            await locker.start()
            applied: list[float] = []
            raw: list[float] = []
            for trial in range(trials):
                lock = trial % 2 == 0
                t0 = time.perf_counter()
                outcome = await (locker.lock() if lock else locker.unlock())
                applied.append(time.perf_counter() - t0)
                assert outcome.confirmed
            while not hints.empty():
                hints.get_nowait()
            for trial in range(trials):
                lock = trial % 2 == 0
                t0 = time.perf_counter()
                await bare.call(
                    Message(
                        destination=LOGIND,
                        path=session_path,
                        interface=SESSION_INTERFACE,
                        member="Lock" if lock else "Unlock",
                    )
                )
                while await hints.get() != lock:
                    pass
                raw.append(time.perf_counter() - t0)
            await locker.stop()
            bare.disconnect()
            print(line("phone lock confirmed", applied, raw))


def _bare_move(server: str, sink: str, source: str) -> None:
    import pulsectl

    with pulsectl.Pulse("bench-baseline", server=server) as pulse:
        pulse.sink_default_set(pulse.get_sink_by_name(sink))
        pulse.source_default_set(pulse.get_source_by_name(source))
        target = pulse.get_sink_by_name(sink).index
        for stream in pulse.sink_input_list():
            pulse.sink_input_move(stream.index, target)


async def audio_benchmarks(streams: int, handoffs: int) -> None:
    pulse = start_headless_pulseaudio(
        sinks=("handset", "speakerphone"), sources=("handset_mic", "speakerphone_mic")
    )
    try:
        for _ in range(streams):
            pulse.play("handset")
        router = PulseAudioRouter(pulse.server)
        deadline = time.monotonic() + 10
        while len((await router.snapshot()).sink_inputs) < streams:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"only {len((await router.snapshot()).sink_inputs)} streams came up"
                )
            await asyncio.sleep(0.05)
        take: list[float] = []
        give: list[float] = []
        for _ in range(handoffs):
            t0 = time.perf_counter()
            result = await router.activate("speakerphone", "speakerphone_mic")
            take.append(time.perf_counter() - t0)
            assert len(result.moved_playback) == streams, result
            t0 = time.perf_counter()
            await router.release()
            give.append(time.perf_counter() - t0)
        floor_take: list[float] = []
        floor_give: list[float] = []
        for _ in range(handoffs):
            t0 = time.perf_counter()
            await asyncio.to_thread(_bare_move, pulse.server, "speakerphone", "speakerphone_mic")
            floor_take.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await asyncio.to_thread(_bare_move, pulse.server, "handset", "handset_mic")
            floor_give.append(time.perf_counter() - t0)
        print(line(f"audio to phone ({streams} streams)", take, floor_take))
        print(line("audio given back", give, floor_give))
    finally:
        pulse.stop()


async def main(trials: int, streams: int, handoffs: int) -> None:
    print(machine())
    await lock_benchmarks(trials)
    await audio_benchmarks(streams, handoffs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="lock changes per figure")
    parser.add_argument("--streams", type=int, default=10, help="streams playing")
    parser.add_argument("--handoffs", type=int, default=30, help="hand-offs per figure")
    args = parser.parse_args()
    configure_logging("error")
    asyncio.run(main(min(args.trials, 2000), min(args.streams, 50), min(args.handoffs, 500)))
