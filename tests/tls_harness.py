"""TLS in front of a test relay, the way it is deployed: an internal CA, and HAProxy
terminating ``wss://`` on 127.0.0.1 and forwarding to the relay's plain port.

The certificates are made with the ``openssl`` command line; HAProxy is Debian's
``haproxy`` (``./dev.sh test`` installs both).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hw.process import stop_process


@dataclass(frozen=True)
class InternalCa:
    ca_file: Path  # what clients trust
    server_pem: Path  # certificate for 127.0.0.1 and its key, for HAProxy


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_internal_ca(directory: Path) -> InternalCa:
    """A CA and a server certificate for 127.0.0.1 (and localhost) it signed."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.pem"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "2",
        "-subj",
        "/CN=btogether test internal CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    server_pem = directory / "server.pem"
    server_pem.write_text(crt.read_text() + key.read_text())
    return InternalCa(ca_crt, server_pem)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def haproxy_tls(backend_port: int, server_pem: Path, workdir: Path) -> Iterator[int]:
    """HAProxy terminating TLS on a free loopback port, forwarding to ``backend_port``."""
    haproxy = shutil.which("haproxy")
    assert haproxy is not None, "haproxy is missing (./dev.sh test installs it)"
    port = _free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        "global\n  maxconn 64\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
        "  timeout server 60s\n"
        f"frontend relay_tls\n  bind 127.0.0.1:{port} ssl crt {server_pem}\n"
        "  default_backend relay\n"
        f"backend relay\n  server relay 127.0.0.1:{backend_port}\n"
    )
    process = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "haproxy.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            assert process.poll() is None, (workdir / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not start listening"
            time.sleep(0.05)
        yield port
    finally:
        stop_process(process)
