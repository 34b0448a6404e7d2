"""Start the simulated air as a subprocess and talk to it (for the demo and tests).

air = start_air([("room-a", 0, 0), ("phone", 3, 4)], noise_db=2, seed=1)
env = {**os.environ, **air.env("phone")}      # run a program "on" the phone
air.move("phone", 10, 0)
air.stop()
"""

from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from hw.process import stop_process
from hw.sim.air import DEFAULT_DEVICE_TIMEOUT_S, DEFAULT_INTERVAL_S, HostSpec
from hw.sim.control import list_hosts, move_host

T = TypeVar("T")


class AirStartError(RuntimeError):
    """The air process did not come up."""


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="air-control")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@dataclass
class AirProcess:
    """A running ``btogether air`` and the bus address of each of its hosts."""

    process: subprocess.Popen[bytes]
    addresses: dict[str, str] = field(default_factory=dict)

    def bus_address(self, name: str) -> str:
        return self.addresses[name]

    def env(self, name: str) -> dict[str, str]:
        """Environment variables that put a program on host ``name``."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.addresses[name]}

    def move(self, name: str, x: float, y: float) -> None:
        _run_sync(move_host(self.addresses[name], name, x, y))

    async def amove(self, name: str, x: float, y: float) -> None:
        await move_host(self.addresses[name], name, x, y)

    def positions(self) -> list[tuple[str, float, float]]:
        first = next(iter(self.addresses.values()))
        return _run_sync(list_hosts(first))

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (the air removes its buses), then SIGKILL the whole process group."""
        stop_process(self.process, timeout, kill_group=True)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> AirProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_air(
    hosts: Iterable[HostSpec | tuple[str, float, float]],
    noise_db: float = 0.0,
    seed: int = 0,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    device_timeout_s: float = DEFAULT_DEVICE_TIMEOUT_S,
    experimental: bool = False,
    extra_args: Sequence[str] = (),
    ready_timeout_s: float = 60.0,
    log_level: str = "warning",
) -> AirProcess:
    """Start ``btogether air`` for ``hosts`` and wait until every host's bus is ready."""
    specs = [h if isinstance(h, HostSpec) else HostSpec(*h) for h in hosts]
    argv = [sys.executable, "-m", "btogether.cli", "--log-level", log_level, "air"]
    for spec in specs:
        argv += ["--host", f"{spec.name}@{spec.x:g},{spec.y:g}"]
    argv += [
        "--noise-db",
        f"{noise_db:g}",
        "--seed",
        str(seed),
        "--interval-ms",
        f"{interval_s * 1000:g}",
        "--device-timeout",
        f"{device_timeout_s:g}",
        *(("--experimental",) if experimental else ()),
        "--exit-with-pid",
        str(os.getpid()),
        *extra_args,
    ]
    # Unbuffered: the ready lines are read from the descriptor the selector watches, so
    # two lines arriving together cannot leave one in a buffer the selector cannot see.
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, bufsize=0, start_new_session=True
    )
    air = AirProcess(process)
    assert process.stdout is not None
    fd = process.stdout.fileno()
    pending = b""
    deadline = time.monotonic() + ready_timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while len(air.addresses) < len(specs):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                air.stop()
                raise AirStartError(f"the air did not report every host within {ready_timeout_s} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                code = process.wait()
                raise AirStartError(f"the air exited with code {code} before it was ready")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                name, _, rest = line.decode(errors="replace").strip().partition(" ")
                key, _, address = rest.partition("=")
                if key == "DBUS_SYSTEM_BUS_ADDRESS" and address:
                    air.addresses[name] = address
    return air
