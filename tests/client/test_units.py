"""The client's pure parts and its control socket, without radio or relay."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client.api import ControlApi
from client.config import (
    ClientConfig,
    ClientFiles,
    ConfigError,
    load_config,
    load_credential,
    login,
    resolve_state_dir,
)
from client.daemon import ClientDaemon
from client.lock_report import LockReporter
from client.proximity.nearby import SightingBook
from hw.control_socket import AlreadyRunning, ControlError, ControlServer, DaemonNotRunning, call
from hw.scanner import ScanEvent, ScanMode, ScannerError
from relay.protocol import wire
from relay.protocol.backoff import Backoff, Retries

# --- backoff ----------------------------------------------------------------------------------


def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    policy = Backoff(initial_s=0.5, cap_s=8.0, factor=2.0)
    backoff = Retries(policy, random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    caps = [min(8.0, 0.5 * 2**n) for n in range(12)]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert max(delays[6:]) <= 8.0 and min(delays[6:]) >= 4.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_spreads_clients_apart() -> None:
    policy = Backoff()
    firsts = {round(policy.delay(5, random.Random(seed)), 3) for seed in range(20)}
    assert len(firsts) > 15


def test_backoff_refuses_nonsense_and_survives_huge_attempt_counts() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_s=0)
    with pytest.raises(ValueError):
        Backoff(initial_s=5, cap_s=1)
    assert Backoff(cap_s=30).ceiling(10_000) == 30


# --- lock reporting ------------------------------------------------------------------------------


def test_lock_reporter_sends_transitions_not_the_initial_state() -> None:
    r = LockReporter()
    r.observed(False, initial=True, paired=True)
    assert r.next_to_send(connected=True, paired=True) is None
    r.observed(True, initial=False, paired=True)
    assert r.next_to_send(connected=True, paired=True) == "locked"
    assert r.next_to_send(connected=True, paired=True) is None  # one in flight at a time
    r.finished("locked", "confirmed")
    r.observed(True, initial=False, paired=True)  # LockedHint repeating the request
    assert r.next_to_send(connected=True, paired=True) is None
    assert r.last_confirmed == "locked"


def test_lock_reporter_sends_a_change_seen_when_the_watcher_restarts() -> None:
    r = LockReporter()
    r.observed(False, initial=True, paired=True)
    r.observed(False, initial=True, paired=True)  # restarted, nothing changed
    assert r.next_to_send(connected=True, paired=True) is None
    r.observed(True, initial=True, paired=True)  # locked while the watcher was away
    assert r.next_to_send(connected=True, paired=True) == "locked"


def test_lock_reporter_keeps_the_latest_state_until_the_relay_confirms_it() -> None:
    r = LockReporter()
    r.observed(True, initial=False, paired=True)
    assert r.next_to_send(connected=False, paired=True) is None
    r.observed(False, initial=False, paired=True)
    r.observed(True, initial=False, paired=True)
    sent = r.next_to_send(connected=True, paired=True)
    assert sent == "locked"
    r.finished(sent, "connection_lost")
    assert r.next_to_send(connected=False, paired=True) is None
    assert r.next_to_send(connected=True, paired=True) == "locked"


def test_lock_reporter_sends_the_newer_state_after_one_in_flight() -> None:
    r = LockReporter()
    r.observed(True, initial=False, paired=True)
    assert r.next_to_send(connected=True, paired=True) == "locked"
    r.observed(False, initial=False, paired=True)
    r.finished("locked", "connection_lost")
    assert r.next_to_send(connected=True, paired=True) == "unlocked"


def test_lock_reporter_sends_nothing_when_off_or_not_paired() -> None:
    r = LockReporter(enabled=False)
    r.observed(True, initial=False, paired=True)
    assert r.next_to_send(connected=True, paired=True) is None
    r.set_enabled(True)
    assert r.next_to_send(connected=True, paired=True) is None  # no stale state on switch-on
    r.observed(False, initial=False, paired=False)
    assert r.next_to_send(connected=True, paired=False) is None
    r.observed(True, initial=False, paired=None)  # pairings not known yet: hold it
    assert r.next_to_send(connected=True, paired=None) is None
    assert r.next_to_send(connected=True, paired=True) == "locked"
    r.finished("locked", "not_paired", "not paired")
    assert r.last_error == "not paired"
    assert r.next_to_send(connected=True, paired=True) is None


# --- sightings --------------------------------------------------------------------------------


def _descriptor(eid: bytes, device_id: str) -> wire.DeviceDescriptor:
    return wire.DeviceDescriptor(
        device_id=device_id,
        eid=eid.hex(),
        name=device_id,
        kind="room_system",
        mode="meeting_room",
        location="",
        capabilities=[],
        own=False,
        rssi=-60,
    )


def test_sighting_batches_hold_fresh_eids_only_and_at_most_64_ours_first() -> None:
    book = SightingBook(fresh_s=3.0, forget_after_s=10.0)
    eids = [i.to_bytes(8, "big") for i in range(100)]
    for i, eid in enumerate(eids):
        book.heard(eid, -40 - i % 50, -59, t=100.0)
    book.heard(b"\xff" * 8, -30, -59, t=90.0)  # heard too long ago
    first = book.batch(100.5)
    assert len(first) == wire.MAX_SIGHTINGS_PER_REPORT
    assert b"\xff" * 8 not in dict(first)
    quiet = eids[99]
    assert quiet not in dict(first)
    book.resolved(first, [], 100.6)
    book.resolved([(quiet, -89)], [_descriptor(quiet, "room-9")], 100.7)
    second = book.batch(101.0)
    assert second[0][0] == quiet  # resolved EIDs first: their sightings must stay fresh
    assert book.heard(quiet, -70, -59, t=101.1) == "room-9"
    assert book.batch(120.0) == []
    assert book.descriptor("room-9") is None  # forgotten once not heard for a while


# --- configuration ----------------------------------------------------------------------------


def test_state_dir_comes_from_the_flag_then_the_environment_then_xdg() -> None:
    env = {"HOME": "/home/a", "XDG_STATE_HOME": "/x", "BTOGETHER_STATE_DIR": "/b"}
    assert resolve_state_dir(Path("/f"), env) == Path("/f")
    assert resolve_state_dir(None, env) == Path("/b")
    assert resolve_state_dir(None, {"HOME": "/h", "XDG_STATE_HOME": "/x"}) == Path("/x/btogether")
    assert resolve_state_dir(None, {"HOME": "/h"}) == Path("/h/.local/state/btogether")


def test_an_unsent_lock_state_is_kept_in_the_state_dir(tmp_path: Path) -> None:
    files = ClientFiles(tmp_path)
    assert files.load_unsent_lock() is None
    files.save_unsent_lock("locked")
    assert files.load_unsent_lock() == "locked"
    files.unsent_lock_path.write_text('{"unsent": "maybe"}')
    assert files.load_unsent_lock() is None
    files.save_unsent_lock(None)
    assert not files.unsent_lock_path.exists()


def test_config_errors_say_what_is_wrong(tmp_path: Path) -> None:
    files = ClientFiles(tmp_path)
    with pytest.raises(ConfigError, match="client login"):
        load_config(files)
    files.config_path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(files)
    files.config_path.write_text(json.dumps({"relay_url": "ftp://x", "laptop_id": "a", "x": 1}))
    with pytest.raises(ConfigError) as bad:
        load_config(files)
    assert "relay_url" in str(bad.value) and "laptop_name" in str(bad.value)
    with pytest.raises(ConfigError, match="empty"):
        login(files, "ws://relay/", "   ")
    assert not files.credential_path.exists()
    files.credential_path.write_bytes(b"\xff\xfe")
    files.credential_path.chmod(0o600)
    with pytest.raises(ConfigError, match="does not hold a credential"):
        load_credential(files)


# --- the control socket -------------------------------------------------------------------------


async def _raw(path: Path, line: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(line)
    await writer.drain()
    reply = json.loads(await reader.readline())
    writer.close()
    return reply  # type: ignore[no-any-return]


class NoRadio:
    """A scanner on a machine without Bluetooth (the AdvertScanner interface)."""

    def __init__(self, on_event: Callable[[ScanEvent], None]) -> None:
        self.on_event = on_event

    @property
    def mode_in_use(self) -> ScanMode | None:
        return None

    @property
    def reports_every_advert(self) -> bool:
        return True

    async def start(self) -> None:
        raise ScannerError("no Bluetooth adapter")

    async def stop(self) -> None:
        pass


async def test_control_socket_refuses_bad_requests_clearly(tmp_path: Path) -> None:
    # Nothing listens on port 1: the client runs, unable to reach the relay.
    config = ClientConfig(relay_url="ws://127.0.0.1:1/", laptop_id="l", laptop_name="L")
    daemon = ClientDaemon(config, "token", scanner_factory=NoRadio, lock_watcher_factory=None)
    running = asyncio.create_task(daemon.run())
    path = tmp_path / "control.sock"
    server = ControlServer(path, ControlApi(daemon.execute).handle)
    await server.start()
    try:
        assert (await _raw(path, b"nonsense\n"))["error"]["code"] == "bad_request"
        assert (await _raw(path, b'["op"]\n'))["error"]["code"] == "bad_request"
        with pytest.raises(ControlError) as unknown:
            await call(path, "explode")
        assert unknown.value.code == "unknown_op" and "nearby" in unknown.value.message
        with pytest.raises(ControlError) as bad_args:
            await call(path, "lock_sync", {"enabled": "perhaps", "extra": 1})
        assert bad_args.value.code == "bad_request" and "enabled" in bad_args.value.message
        with pytest.raises(ControlError) as offline:
            await call(path, "connect", {"phone": "p1"})
        assert (offline.value.code, offline.value.source) == ("relay_unreachable", "client")
        status = await call(path, "status")
        assert status["relay"]["connected"] is False and status["laptop_id"] == "l"
        assert status["scan"]["status"] == "unavailable: no Bluetooth adapter"
        with pytest.raises(AlreadyRunning):
            await ControlServer(path, ControlApi(daemon.execute).handle).start()
    finally:
        await server.stop()
        daemon.stop()
        await running
    assert not path.exists()
    with pytest.raises(DaemonNotRunning):
        await call(path, "status")


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("")  # left over by a client that was killed

    async def handler(op: str, args: dict[str, Any]) -> object:
        return {"op": op}

    server = ControlServer(path, handler)
    await server.start()
    try:
        assert await call(path, "ping") == {"op": "ping"}
    finally:
        await server.stop()


async def test_a_request_cancelled_at_shutdown_before_it_ran_is_closed_not_left_unawaited() -> None:
    import gc
    import warnings

    config = ClientConfig(relay_url="ws://127.0.0.1:1/", laptop_id="l", laptop_name="L")
    daemon = ClientDaemon(config, "token", scanner_factory=NoRadio, lock_watcher_factory=None)
    ran: list[str] = []

    async def request() -> None:
        ran.append("request")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        daemon._spawn(request())  # an effect's request, made just as the daemon stops
        await daemon._shut_down([])  # cancels it before the loop ever ran it
        await asyncio.sleep(0)  # the finished task's callbacks let go of it
        gc.collect()
    assert ran == []
    assert not [w for w in caught if "never awaited" in str(w.message)]
