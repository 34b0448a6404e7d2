"""A headless PulseAudio with null sinks and sources, for tests and the demo.

It runs as the current user (root included, with ``--system=false``), keeps everything —
socket, cookie, state — in its own directory, listens on one Unix socket with anonymous
auth, and has no real devices: null sinks play into nothing and null sources record
silence. ``play``/``record`` start ``pacat`` streams so a test can watch streams move.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from hw.process import stop_process
from hw.unix_socket import socket_answers


class PulseAudioUnavailable(RuntimeError):
    """PulseAudio is not installed or did not start; the message says why."""


@dataclass
class HeadlessPulseAudio:
    """A running headless PulseAudio; ``server`` is its server string for PULSE_SERVER."""

    server: str
    process: subprocess.Popen[bytes]
    directory: Path
    streams: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _owns_directory: bool = field(default=True, repr=False)

    def play(self, sink: str) -> subprocess.Popen[bytes]:
        """Play silence into ``sink`` until stopped (a running sink-input)."""
        return self._pacat(["--playback", f"--device={sink}"], stdin=True)

    def record(self, source: str) -> subprocess.Popen[bytes]:
        """Record from ``source`` until stopped (a running source-output)."""
        return self._pacat(["--record", f"--device={source}"], stdin=False)

    def _pacat(self, args: list[str], *, stdin: bool) -> subprocess.Popen[bytes]:
        pacat = shutil.which("pacat")
        if pacat is None:
            raise PulseAudioUnavailable(
                "pacat is missing (on Debian: apt-get install pulseaudio-utils)"
            )
        zero = open("/dev/zero", "rb") if stdin else None  # noqa: SIM115 - closed below
        try:
            process = subprocess.Popen(
                [pacat, f"--server={self.server}", "--client-name=btogether-standin", *args],
                stdin=zero if zero is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_environment(self.directory),
            )
        finally:
            if zero is not None:
                zero.close()
        self.streams.append(process)
        return process

    def stop(self) -> None:
        for process in [*self.streams, self.process]:
            stop_process(process, timeout=5)
        self.streams.clear()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> HeadlessPulseAudio:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _environment(directory: Path) -> dict[str, str]:
    # Keep PulseAudio away from the user's real runtime dir, cookie and session bus.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULSE_", "DBUS_", "XDG_RUNTIME_DIR"))
    }
    env.update(
        HOME=str(directory), XDG_RUNTIME_DIR=str(directory), PULSE_RUNTIME_PATH=str(directory)
    )
    env["XDG_CONFIG_HOME"] = str(directory / "config")
    return env


def start_headless_pulseaudio(
    sinks: Sequence[str] = ("laptop_speaker",),
    sources: Sequence[str] = ("laptop_mic",),
    *,
    directory: Path | None = None,
    timeout: float = 10.0,
) -> HeadlessPulseAudio:
    """Start PulseAudio with these null sinks and sources; the first of each is the default."""
    executable = shutil.which("pulseaudio")
    if executable is None:
        raise PulseAudioUnavailable(
            "pulseaudio is not installed (on Debian: apt-get install pulseaudio)"
        )
    owns = directory is None
    # Unix socket paths are limited to ~108 bytes, so keep the directory short.
    base = Path(tempfile.mkdtemp(prefix="bt-pa-", dir="/tmp")) if directory is None else directory
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "pulse.sock"
    modules = [f"module-native-protocol-unix socket={sock} auth-anonymous=1"]
    modules += [
        f"module-null-sink sink_name={name} sink_properties=device.description={name}"
        for name in sinks
    ]
    modules += [f"module-null-source source_name={name} description={name}" for name in sources]
    command = [
        executable,
        "--daemonize=no",
        "--system=false",
        "-n",  # no default.pa: only our modules, no hardware probing
        "--exit-idle-time=-1",
        "--disable-shm=yes",
        "--use-pid-file=no",
        "--log-target=stderr",
        *(f"--load={module}" for module in modules),
    ]
    log = (base / "pulseaudio.log").open("wb")
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_environment(base)
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if socket_answers(sock):
            return HeadlessPulseAudio(
                server=f"unix:{sock}", process=process, directory=base, _owns_directory=owns
            )
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=5)
    detail = (base / "pulseaudio.log").read_text(errors="replace").strip().splitlines()[-3:]
    if owns:
        shutil.rmtree(base, ignore_errors=True)
    raise PulseAudioUnavailable(
        f"pulseaudio did not start (exit code {process.returncode}): {' | '.join(detail)}"
    )


