"""Private ``dbus-daemon`` instances: one bus per simulated host, for the air, tests and demo.

The bus is permissive on purpose (any name may be owned, any destination reached),
because it stands in for a host's system bus where bluetoothd, logind and our daemons
would each be allowed their own names by the distribution's policy files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from hw.process import stop_process

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{bus_type}</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow receive_sender="*"/>
  </policy>
  <limit name="max_replies_per_connection">10000</limit>
  <limit name="reply_timeout">60000</limit>
</busconfig>
"""


class DbusDaemonError(RuntimeError):
    """dbus-daemon is missing or did not start."""


@dataclass
class PrivateBus:
    """A running private dbus-daemon; stop it with :meth:`stop` or use it as a context."""

    address: str
    process: subprocess.Popen[bytes]
    directory: Path
    _owns_directory: bool = field(default=True, repr=False)

    def stop(self) -> None:
        stop_process(self.process, timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_private_bus(
    directory: Path | None = None, name: str = "bus", bus_type: str = "system"
) -> PrivateBus:
    """Start a dbus-daemon listening on a socket in ``directory`` (a new temp dir if None)."""
    executable = shutil.which("dbus-daemon")
    if executable is None:
        raise DbusDaemonError(
            "dbus-daemon is not installed (on Debian: apt-get install dbus); "
            "the simulated air needs it"
        )
    owns = directory is None
    # Unix socket paths are limited to ~108 bytes, so keep the directory short.
    base = Path(tempfile.mkdtemp(prefix="bt-", dir="/tmp")) if directory is None else directory
    base.mkdir(parents=True, exist_ok=True)
    socket = base / f"{name}.sock"
    config = base / f"{name}.conf"
    config.write_text(_CONFIG.format(socket=socket, bus_type=bus_type))
    log_path = base / f"{name}.log"
    # dbus-daemon's complaints (e.g. it may not raise its fd limit when unprivileged)
    # go to a log beside the socket instead of the terminal of whoever started us.
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [executable, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("DBUS_")},
        )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line:
        process.wait(timeout=5)
        detail = log_path.read_text(errors="replace").strip()[-500:]
        raise DbusDaemonError(
            f"dbus-daemon exited with code {process.returncode} before ready: {detail}"
        )
    return PrivateBus(address=line, process=process, directory=base, _owns_directory=owns)
