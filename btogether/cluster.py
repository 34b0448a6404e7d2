"""A relay cluster on one machine: Redis, PostgreSQL, relay nodes and HAProxy as processes.

For ``btogether demo --cluster``, the multi-node tests and ``bench/cluster.py``: each
server runs from its Debian binary in a work directory, on free loopback ports, with its
log beside it. :class:`LocalCluster` starts Redis, the database (PostgreSQL when the
PostgreSQL store is installed, else one SQLite file that every node opens), ``n`` relay
nodes (``btogether relay serve --db … --redis …``) and HAProxy in front of them, with
the same options as the production example ``packaging/haproxy/btogether.cfg`` (minus
TLS: the local cluster speaks plain ws:// on 127.0.0.1). Nodes can be killed
(``kill -9``) and started again, Redis and PostgreSQL restarted, to show what an outage
looks like. Nothing listens anywhere but 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.process import stop_process


class ClusterError(RuntimeError):
    """A server of the local cluster did not start or is missing; says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(check: Callable[[], bool], what: str, timeout: float,
          process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else ""
            raise ClusterError(f"{what} exited with {process.returncode}: {tail}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if found is None:
        raise ClusterError(f"{name} is not installed (Debian: apt-get install {package})")
    return found


# --- Redis ------------------------------------------------------------------------------------


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class LocalRedis:
    """``redis-server`` without persistence (a restart forgets every key: the worst case
    for the relay, which must rebuild presence by itself)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> LocalRedis:
        binary = _binary("redis-server", "redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait(lambda: _redis_ping(self.port), "redis-server", 10, self.process, self.log_path)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 10.0)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


# --- HAProxy ----------------------------------------------------------------------------------


def haproxy_config(bind: str, servers: Sequence[tuple[str, str]], *, check_ms: int = 500,
                   pem: Path | None = None) -> str:
    """An HAProxy configuration for relay nodes: websockets kept open, health from
    ``/readyz`` (a node that cannot reach its database takes no new connections), a
    connection attempt to a dead node is re-dispatched to another. A node killed with
    ``kill -9`` resets its connections, so HAProxy closes the clients' side at once and
    they reconnect. The production example ``packaging/haproxy/btogether.cfg`` has the
    same backend, with TLS."""
    tls = f" ssl crt {pem} alpn http/1.1" if pem is not None else ""
    lines = [
        "global",
        "  maxconn 4000",
        "defaults",
        "  mode http",
        "  timeout connect 1s",
        "  timeout client 75s",
        "  timeout server 75s",
        "  timeout tunnel 1h",
        "  timeout http-request 10s",
        "  timeout client-fin 5s",
        "frontend btogether",
        f"  bind {bind}{tls}",
        "  option forwardfor",
        "  default_backend relays",
        "backend relays",
        "  balance leastconn",
        "  option httpchk GET /readyz",
        "  http-check expect status 200",
        "  retries 3",
        "  option redispatch 1",
        f"  default-server inter {check_ms}ms fastinter {check_ms // 2}ms downinter {check_ms}ms"
        " fall 2 rise 1",
        *[f"  server {name} {address} check" for name, address in servers],
    ]
    return "\n".join(lines) + "\n"


@dataclass
class LocalHAProxy:
    directory: Path
    servers: list[tuple[str, str]]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> LocalHAProxy:
        binary = _binary("haproxy", "haproxy")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "haproxy.cfg"
        config.write_text(haproxy_config(f"127.0.0.1:{self.port}", self.servers))
        log_path = self.directory / "haproxy.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _wait(lambda: _answers(self.port), "haproxy", 10, self.process, log_path)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 10.0)


# --- relay nodes ------------------------------------------------------------------------------


@dataclass
class RelayNodeProcess:
    """One ``btogether relay serve`` process of the cluster, on a fixed port."""

    name: str
    port: int
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )
        _wait(self.ready, f"relay node {self.name}", timeout, self.process, self.log_path)

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def kill(self) -> None:
        """``kill -9``: no goodbye to Redis, no closing handshakes."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, 10.0)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pid(self) -> int | None:
        return self.process.pid if self.alive() and self.process is not None else None


def postgres_store_installed() -> bool:
    return (importlib.util.find_spec("relay.storage.postgres_store") is not None
            and importlib.util.find_spec("btogether.local_postgres") is not None)


@dataclass
class LocalCluster:
    """Redis, a database, ``nodes`` relay nodes and HAProxy in ``workdir``."""

    workdir: Path
    nodes: int = 3
    database: str = "auto"  # "postgres", "sqlite", or "auto" (PostgreSQL when installed)
    log_level: str = "info"
    extra_args: list[str] = field(default_factory=list)
    redis: LocalRedis | None = None
    postgres: Any = None  # btogether.local_postgres.LocalPostgres when on PostgreSQL
    haproxy: LocalHAProxy | None = None
    relays: list[RelayNodeProcess] = field(default_factory=list)
    db_url: str = ""

    @property
    def url(self) -> str:
        """Where clients connect: HAProxy."""
        assert self.haproxy is not None, "not started"
        return self.haproxy.url

    @property
    def redis_url(self) -> str:
        assert self.redis is not None, "not started"
        return self.redis.url

    @property
    def on_postgres(self) -> bool:
        return self.postgres is not None

    def start_database(self) -> str:
        use_pg = self.database == "postgres" or (
            self.database == "auto" and postgres_store_installed()
        )
        if use_pg:
            if not postgres_store_installed():
                raise ClusterError("the PostgreSQL store is not installed in this checkout")
            from btogether.local_postgres import LocalPostgres  # type: ignore[import-not-found,unused-ignore]

            self.postgres = LocalPostgres(self.workdir / "postgres").start()
            self.db_url = str(self.postgres.url())
        else:
            self.db_url = str(self.workdir / "relay.sqlite3")
        return self.db_url

    def start_redis(self) -> str:
        self.redis = LocalRedis(self.workdir / "redis").start()
        return self.redis.url

    def node_argv(self, name: str, port: int) -> list[str]:
        assert self.redis is not None
        return [sys.executable, "-m", "btogether.cli", "--log-level", self.log_level,
                "--log-json", "relay", "serve", "--host", "127.0.0.1", "--port", str(port),
                "--db", self.db_url, "--redis", self.redis.url, *self.extra_args]

    def start_nodes(self) -> list[RelayNodeProcess]:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BTOGETHER_")}
        env["PYTHONUNBUFFERED"] = "1"
        for i in range(1, self.nodes + 1):
            name = f"relay-{i}"
            port = free_port()
            node = RelayNodeProcess(name, port, self.node_argv(name, port),
                                    logs / f"{name}.log", env)
            self.relays.append(node)
        for node in self.relays:
            node.start()
        return self.relays

    def start_haproxy(self) -> str:
        servers = [(n.name, f"127.0.0.1:{n.port}") for n in self.relays]
        self.haproxy = LocalHAProxy(self.workdir / "haproxy", servers).start()
        return self.haproxy.url

    def start(self) -> LocalCluster:
        """Everything, in order; the database must be bootstrapped by the caller
        between :meth:`start_database` and :meth:`start_nodes` if it wants an owner."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.start_database()
        self.start_nodes()
        self.start_haproxy()
        return self

    def node(self, name: str) -> RelayNodeProcess:
        return next(n for n in self.relays if n.name == name)

    def node_by_pid(self, pid: int) -> RelayNodeProcess | None:
        return next((n for n in self.relays if n.pid() == pid), None)

    def restart_redis(self) -> float:
        """Stop Redis and start it again on the same port; how long it was down (s)."""
        assert self.redis is not None
        started = time.monotonic()
        self.redis.stop()
        self.redis.start()
        return time.monotonic() - started

    def restart_postgres(self) -> float:
        assert self.postgres is not None, "not on PostgreSQL"
        started = time.monotonic()
        self.postgres.stop()
        self.postgres.start()
        return time.monotonic() - started

    def close(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for node in self.relays:
            node.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
