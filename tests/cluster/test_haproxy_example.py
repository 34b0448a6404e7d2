"""The shipped production HAProxy example (``packaging/haproxy/btogether.cfg``) works as
documented: HAProxy accepts it, and — with its addresses pointed at loopback — it ends
TLS for a cluster of relay nodes (a device and laptops are served through it) and
redirects plain HTTP to https."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from btogether.cluster import _wait, free_port
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.cluster.conftest import ClusterWorld
from tests.tls_harness import InternalCa, make_internal_ca

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "haproxy" / "btogether.cfg"


def _haproxy() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(found).exists():
        pytest.skip("haproxy is not installed (./dev.sh test installs it)")
    return found


def localised(world: ClusterWorld, pem: Path, tls_port: int, plain_port: int) -> str:
    """The example with its listening addresses, certificate and servers on loopback."""
    text = EXAMPLE.read_text()
    text = text.replace("    log /dev/log local0\n", "")
    text = text.replace("bind :443 ssl crt /etc/haproxy/certs/btogether.pem",
                        f"bind 127.0.0.1:{tls_port} ssl crt {pem}")
    text = text.replace("bind :80\n", f"bind 127.0.0.1:{plain_port}\n")
    text = text.replace("maxconn 100000", "maxconn 4000").replace("maxconn 30000", "maxconn 1000")
    text = re.sub(r"^    server relay\d .*\n", "", text, flags=re.MULTILINE)
    servers = "".join(f"    server {n.name} 127.0.0.1:{n.port} check\n"
                      for n in world.cluster.relays)
    return text + servers


@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory: pytest.TempPathFactory) -> InternalCa:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return make_internal_ca(Path(tmp_path_factory.mktemp("ca")))


@contextmanager
def example_haproxy(world: ClusterWorld, ca: InternalCa, workdir: Path) -> Iterator[tuple[int, int]]:
    tls_port, plain_port = free_port(), free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(localised(world, ca.server_pem, tls_port, plain_port))
    log = workdir / "haproxy.log"
    process = subprocess.Popen([_haproxy(), "-db", "-f", str(config)],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        from btogether.cluster import _answers

        _wait(lambda: _answers(tls_port), "haproxy", 10, process, log)
        yield tls_port, plain_port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_haproxy_accepts_the_example(tmp_path: Path, internal_ca: InternalCa,
                                     cluster_world: ClusterWorld) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(localised(cluster_world, internal_ca.server_pem, free_port(), free_port()))
    done = subprocess.run([_haproxy(), "-c", "-f", str(config)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_example_ends_tls_for_the_cluster(
    tmp_path: Path, internal_ca: InternalCa, cluster_world: ClusterWorld
) -> None:
    world = cluster_world
    tls = ssl.create_default_context(cafile=str(internal_ca.ca_file))
    with example_haproxy(world, internal_ca, tmp_path) as (tls_port, plain_port):
        # Plain HTTP is sent to https.
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirected:
            opener.open(f"http://127.0.0.1:{plain_port}/admin/", timeout=5)
        assert redirected.value.code == 301
        assert redirected.value.headers["Location"].startswith("https://")
        # Beacons and laptops speak wss:// to HAProxy; the nodes behind it are one relay.
        phone = await RelayLink.connect(f"wss://127.0.0.1:{tls_port}/",
                                        world.alice.phone_credential.token, tls=tls,
                                        reply_timeout=8.0)
        laptops = [await RelayLink.connect(f"wss://127.0.0.1:{tls_port}/",
                                           world.alice.credential.token, tls=tls,
                                           laptop_id=f"tls-{i}", reply_timeout=8.0)
                   for i in range(3)]
        try:
            state = await phone.next_event("device.state")
            assert isinstance(state, wire.DeviceStateEvent) and state.state == "signed_in"
            for laptop in laptops:
                assert (await laptop.ping()).server_time > 0
        finally:
            for link in [phone, *laptops]:
                await link.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
