"""A private PostgreSQL server in a directory, from Debian's binaries (cluster demo, tests).

``LocalPostgres(directory).start()`` runs ``initdb`` once (trust authentication, which
is safe only because the server listens on 127.0.0.1 and a unix socket in its own
directory), then ``postgres`` on a free loopback port, waits until it accepts
connections and creates the relay's database. ``stop()`` (fast shutdown), ``kill()``
(SIGKILL, a crash) and ``start()`` again on the same port and data are what outage
tests and the demo's restart step need. Nothing listens anywhere but loopback.

PostgreSQL refuses to run as root; when this runs as root (CI, containers) the server
runs as the ``postgres`` account that Debian's package creates, and its data directory
is made in the system temporary directory (a root-only parent such as pytest's would
be unreadable to that account), owned by it, and removed by :meth:`cleanup`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries (Debian package ``postgresql``)."""


class PostgresFailed(RuntimeError):
    """The server did not start or stop; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> Path | None:
    """The newest installed server's binaries (``/usr/lib/postgresql/<major>/bin``)."""
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            major = bindir.parent.name
            candidates.append((int(major) if major.isdigit() else 0, bindir))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class LocalPostgres:
    """One server: data under ``directory`` (or a temporary directory when root), logs in
    ``directory/postgres.log``."""

    directory: Path
    port: int = field(default_factory=free_port)
    user: str = "btogether"
    database: str = "btogether"
    # fsync off only where losing the data on a power cut does not matter (tests).
    fsync: bool = True
    bindir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _data: Path | None = None
    _run_as: pwd.struct_passwd | None = None

    def url(self, database: str | None = None) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    @property
    def data(self) -> Path:
        assert self._data is not None, "not initialised"
        return self._data

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def _prepare(self) -> None:
        if self._data is not None:
            return
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise PostgresNotInstalled(
                "PostgreSQL is not installed (Debian: apt-get install postgresql)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresNotInstalled(
                    "running as root, and there is no 'postgres' account to run PostgreSQL as "
                    "(Debian's postgresql package creates it)"
                ) from None
            self._data = Path(tempfile.mkdtemp(prefix="btogether-pg-"))
            os.chown(self._data, self._run_as.pw_uid, self._run_as.pw_gid)
        else:
            self._data = self.directory / "data"
            self._data.mkdir(mode=0o700, exist_ok=True)

    def _as_server_user(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def _binary(self, name: str) -> str:
        assert self.bindir is not None
        return str(self.bindir / name)

    def init(self) -> None:
        """Create the cluster (once)."""
        self._prepare()
        if (self.data / "PG_VERSION").exists():
            return
        done = subprocess.run(
            [
                self._binary("initdb"), "-D", str(self.data), "-U", self.user,
                "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            cwd=self.data,
            check=False,
            **self._as_server_user(),
        )
        if done.returncode != 0:
            raise PostgresFailed(
                f"initdb failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}"
            )

    def start(self, timeout: float = 30.0) -> LocalPostgres:
        """Start the server (initialising it first if needed) and wait until it serves."""
        self.init()
        if self.process is not None and self.process.poll() is None:
            return self
        log = self.log_path.open("ab")
        options = [
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.data}",
            "-c", "max_connections=200",
            "-c", "shared_buffers=32MB",
            "-c", f"fsync={'on' if self.fsync else 'off'}",
        ]
        if not self.fsync:
            options += ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        try:
            self.process = subprocess.Popen(
                [self._binary("postgres"), "-D", str(self.data), "-p", str(self.port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data,
                start_new_session=True,
                **self._as_server_user(),
            )
        finally:
            log.close()
        self._wait_ready(timeout)
        self._create_database()
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresFailed(
                    f"postgres exited with {self.process.returncode}: {self.log_tail()}"
                )
            ready = subprocess.run(
                [self._binary("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                 "-t", "1"],
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresFailed(f"postgres did not accept connections: {self.log_tail()}")
            time.sleep(0.05)

    def _create_database(self) -> None:
        exists = subprocess.run(
            [self._binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],  # noqa: S608
            capture_output=True,
            check=False,
        )
        if exists.stdout.strip() == b"1":
            return
        done = subprocess.run(
            [self._binary("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             self.database],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresFailed(f"createdb failed: {done.stderr.decode(errors='replace')}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: clients are disconnected, the data is flushed."""
        self._signal(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends: a crash (recovery runs at next start)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self._signal(signal.SIGKILL, 10.0)

    def _signal(self, signum: int, timeout: float) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        """Stop the server and remove a data directory made in the temporary directory."""
        self.stop()
        if self._run_as is not None and self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)
            self._data = None

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""
