"""``btogether beacon run``: the daemon on room systems, conference and desk phones.

The asyncio shell around :class:`beacon.core.BeaconCore`.  It keeps one connection to the
relay with the device credential (reconnecting with jittered exponential backoff,
:mod:`relay.protocol.backoff`), feeds everything that happens — relay events, connection changes,
local confirmations from the control socket, clock ticks — through one inbox into the
core, one at a time, and carries out the actions the core returns: lock and unlock the
session (``hw.lock``), hand the speakerphone's audio over and back (``hw.audio``), switch
the EID advert on and off (:mod:`beacon.radio`), answer the relay, run hooks, print to the
console, and remember the last lock command applied (:mod:`beacon.memory`).

A supervisor can wait for the line ``ready …`` on stdout (the control socket is up, unless
its path is too long for a Unix socket, which is reported and not fatal), then
for ``connected …`` or ``"connected": true`` in ``status.json`` in the state directory,
which is rewritten whenever the daemon's state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from beacon import core as c
from beacon.advertising import BeaconConfig, Rotation
from beacon.config import BeaconSettings
from beacon.control import BEACON, control_path
from beacon.hooks import HookRunner
from beacon.memory import load_memory, save_memory
from beacon.radio import AdvertisingSwitch
from beacon.state import DeviceIdentity
from hw.advertiser import Advertiser
from hw.audio import AudioError, AudioRouter
from hw.control_socket import ControlError, ControlPathTooLong, ControlServer
from hw.lock import SessionLocker
from hw.secure_file import write_private
from relay.protocol import wire
from relay.protocol.backoff import Backoff
from relay.protocol.link import LinkClosed, LinkError, RelayLink, RequestFailed
from relay.protocol.reach import why_unreachable

STATUS_FILE = "status.json"
# A connection that lasted this long was a success: the next failure starts backoff afresh.
_STABLE_CONNECTION_S = 3.0
_log = structlog.get_logger(__name__)


# --- what arrives in the inbox ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Connected:
    generation: int
    link: RelayLink


@dataclass(frozen=True, slots=True)
class _Closed:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class _RelayEvent:
    generation: int
    event: wire.Event


@dataclass(frozen=True, slots=True)
class _Control:
    op: str
    args: dict[str, Any]
    reply: asyncio.Future[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_Item = _Connected | _Closed | _RelayEvent | _Control | _Tick | _Stop


def print_line(text: str) -> None:
    """The console: one line per thing a person at the device should see."""
    with contextlib.suppress(OSError, ValueError):
        print(text, flush=True)


class BeaconDaemon:
    """One device's daemon; ``await daemon.run()`` until :meth:`request_stop`."""

    def __init__(
        self,
        identity: DeviceIdentity,
        settings: BeaconSettings,
        state_dir: Path,
        *,
        locker: SessionLocker | None,
        audio: AudioRouter | None,
        advertiser: Advertiser,
        hooks: HookRunner,
        rng: random.Random,
        wall_time: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        out: Callable[[str], None] = print_line,
        tick_s: float = 0.25,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.identity = identity
        self._tls = tls
        self.settings = settings
        self.state_dir = state_dir
        self._locker = locker
        self._locker_started = False
        self._audio = audio
        self._hooks = hooks
        self._rng = rng
        self._wall_time = wall_time
        self._sleep = sleep
        self._out = out
        self._tick_s = tick_s
        self._backoff = Backoff(settings.reconnect.initial_s, settings.reconnect.cap_s)
        self._radio = AdvertisingSwitch(
            advertiser,
            BeaconConfig(
                identity_key=identity.identity_key_bytes,
                rotation_exponent=identity.rotation_exponent,
                tx_power=settings.advertising.tx_power,
                company_id=identity.company_id,
                local_name=settings.advertising.local_name,
            ),
            retry_s=settings.advertising.retry_s,
            wall_time=wall_time,
            sleep=sleep,
            on_rotation=self._rotated,
        )
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._generation = 0
        self._link: RelayLink | None = None
        self._lock_retry_at = 0.0
        self._lock_error: str | None = None
        self._relay_error: str | None = None
        self._next_retry_s: float | None = None
        self._written_status: dict[str, Any] | None = None
        self.core: c.BeaconCore | None = None
        self.control = ControlServer(control_path(state_dir), self._on_control, BEACON)
        self._log = _log.bind(device_id=identity.device_id)

    # --- public ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._inbox.put_nowait(_Stop())

    async def run(self) -> None:
        memory = load_memory(self.state_dir, self.identity.device_id)
        core = c.BeaconCore(
            device_id=self.identity.device_id,
            organisation=self.identity.organisation,
            memory=memory,
            rng=self._rng,
            auto_confirm_override=self.settings.auto_confirm,
        )
        self.core = core
        control: Path | str = self.control.path
        try:
            await self.control.start()
        except ControlPathTooLong as exc:
            # Confirming on the device needs the socket, but the rest of the daemon does not.
            self._log.error("control_socket_unavailable", error=str(exc))
            self._out(f"control socket unavailable: {exc}")
            control = "-"
        tasks: list[asyncio.Task[None]] = []
        try:
            self._write_status()
            self._out(f"ready control={control} status={self.state_dir / STATUS_FILE}")
            self._log.info("beacon_daemon_ready", relay=self.identity.relay_url)
            await self._execute(core.start())
            tasks.append(asyncio.create_task(self._connection_loop(), name="relay-connection"))
            tasks.append(asyncio.create_task(self._ticker(), name="ticker"))
            while True:
                item = await self._inbox.get()
                if isinstance(item, _Stop):
                    break
                await self._handle(item)
                self._write_status()
        finally:
            await self._shut_down(tasks)

    # --- the inbox ---------------------------------------------------------------------
    async def _handle(self, item: _Item) -> None:
        core = self._core()
        now = self._wall_time()
        if isinstance(item, _Connected):
            if item.generation != self._generation:
                await item.link.close()
                return
            self._link = item.link
            self._relay_error = None
            self._next_retry_s = None
            await self._execute(core.on_welcome(item.link.welcome, now))
        elif isinstance(item, _Closed):
            if item.generation == self._generation and self._link is not None:
                self._link = None
                await self._execute(core.on_disconnect(item.reason))
        elif isinstance(item, _RelayEvent):
            if item.generation == self._generation and self._link is not None:
                self._log.info("relay_event", type=item.event.type)
                await self._execute(core.on_event(item.event, now))
        elif isinstance(item, _Control):
            try:
                reply = await self._control(item.op, item.args, now)
            except Exception as exc:
                item.reply.set_exception(exc)
            else:
                item.reply.set_result(reply)
        elif isinstance(item, _Tick):
            await self._execute(core.tick(now))
            if core.unapplied_lock is not None and now >= self._lock_retry_at:
                await self._execute([core.unapplied_lock])

    async def _on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Control(op, args, reply))
        return await reply

    async def _control(self, op: str, args: dict[str, Any], now: float) -> dict[str, Any]:
        """Answer ``status`` and ``confirm``; a refusal is a ControlError (code, message)."""
        core = self._core()
        if op == "status":
            return self.status(now, countdown=True)
        if op == "confirm":
            prompt_id = args.get("id")
            accept = args.get("accept", True)
            if (prompt_id is not None and not isinstance(prompt_id, str)) or not isinstance(
                accept, bool
            ):
                raise ControlError(
                    "bad_request", "confirm needs an id (string or null) and accept"
                )
            if self._link is None:
                raise ControlError(
                    "relay_unreachable", "not connected to the relay; try again shortly"
                )
            try:
                actions = core.confirm(prompt_id, accept, now)
            except c.ControlError as exc:
                raise ControlError("no_prompt", str(exc)) from None
            answer = next(a for a in actions if isinstance(a, c.ConfirmPair | c.RespondJoin))
            answered_id = answer.request_id if isinstance(answer, c.ConfirmPair) else answer.join_id
            failures = await self._execute(actions)
            if failures:
                raise ControlError("refused", "; ".join(failures), "relay")
            return {"id": answered_id, "accepted": accept}
        raise ControlError("bad_request", f"unknown op {op!r}")

    # --- carrying out actions ----------------------------------------------------------
    async def _execute(self, actions: list[c.Action]) -> list[str]:
        """Carry out actions in order (follow-ups first); return the relay's refusals."""
        failures: list[str] = []
        queue: deque[c.Action] = deque(actions)
        while queue:
            action = queue.popleft()
            try:
                more = await self._do(action, failures)
            except Exception:  # one failed action must not take the daemon down
                self._log.exception("action_failed", action=type(action).__name__)
                continue
            queue.extendleft(reversed(more))
        return failures

    async def _do(self, action: c.Action, failures: list[str]) -> list[c.Action]:
        core = self._core()
        if isinstance(action, c.Show):
            self._out(action.text)
        elif isinstance(action, c.RunHook):
            self._hooks.fire(action.hook, action.details)
        elif isinstance(action, c.Remember):
            save_memory(self.state_dir, core.memory)
        elif isinstance(action, c.Advertise):
            await self._radio.set(action.on)
            self._out(f"advertising {'on' if action.on else 'off'}")
        elif isinstance(action, c.ApplyLock):
            return await self._apply_lock(action)
        elif isinstance(action, c.TakeAudio):
            ok, detail = await self._take_audio()
            return core.audio_taken(action, ok, detail)
        elif isinstance(action, c.ReleaseAudio):
            ok, detail = await self._release_audio()
            return core.audio_released(action, ok, detail)
        elif isinstance(action, c.AckLock):
            await self._send("lock.ack", failures, lambda link: link.lock_ack(action.seq))
        elif isinstance(action, c.AckAudio):
            await self._send(
                "audio.ack",
                failures,
                lambda link: link.audio_ack(action.handoff_id, action.ok, action.detail),
            )
        elif isinstance(action, c.ConfirmPair):
            await self._send(
                "pair.confirm",
                failures,
                lambda link: link.pair_confirm(action.request_id, action.accept),
            )
        elif isinstance(action, c.RespondJoin):
            await self._send(
                "join.respond",
                failures,
                lambda link: link.join_respond(action.join_id, action.accept),
            )
        elif isinstance(action, c.ReportLoginCode):
            await self._send(
                "login_code.report",
                failures,
                lambda link: link.call(
                    wire.LoginCodeReport, request_id=action.request_id, code=action.code
                ),
            )
        return []

    async def _send(
        self,
        what: str,
        failures: list[str],
        request: Callable[[RelayLink], Awaitable[object]],
    ) -> None:
        link = self._link
        if link is None:
            self._log.warning("relay_request_skipped_offline", request=what)
            failures.append(f"{what}: not connected to the relay")
            return
        try:
            await request(link)
        except RequestFailed as exc:
            self._log.warning("relay_refused", request=what, code=exc.code.value, why=exc.message)
            self._out(f"relay-refused {what} {exc.code.value}: {exc.message}")
            failures.append(f"the relay refused {what}: {exc.code.value}: {exc.message}")
        except (LinkClosed, TimeoutError) as exc:
            self._log.warning("relay_request_lost", request=what, error=str(exc))
            failures.append(f"{what}: the relay connection was lost")

    async def _apply_lock(self, action: c.ApplyLock) -> list[c.Action]:
        core = self._core()
        try:
            locker = await self._started_locker()
            outcome = await (locker.lock() if action.state == "locked" else locker.unlock())
        except Exception as exc:
            self._lock_error = str(exc) or type(exc).__name__
            self._lock_retry_at = self._wall_time() + self.settings.lock.retry_s
            self._log.error("lock_apply_failed", seq=action.seq, error=self._lock_error)
            await self._stop_locker()
            return core.lock_failed(action, self._lock_error)
        self._lock_error = None
        return core.lock_applied(action, outcome.confirmed)

    async def _started_locker(self) -> SessionLocker:
        if self._locker is None:
            raise RuntimeError("locking the session is not supported on this platform")
        if not self._locker_started:
            await self._locker.start()
            self._locker_started = True
        return self._locker

    async def _stop_locker(self) -> None:
        if self._locker is not None and self._locker_started:
            self._locker_started = False
            with contextlib.suppress(Exception):
                await self._locker.stop()

    async def _take_audio(self) -> tuple[bool, str]:
        audio = self.settings.audio
        if self._audio is None:
            return False, "audio hand-off is not supported on this platform"
        if not audio.sink or not audio.source:
            return False, "no speakerphone configured ([audio] sink and source)"
        try:
            result = await self._audio.activate(audio.sink, audio.source)
        except AudioError as exc:
            self._log.error("audio_take_failed", error=str(exc))
            return False, str(exc)
        return True, (
            f"sink={result.sink} source={result.source} moved "
            f"{len(result.moved_playback)} playback and {len(result.moved_recording)} recording"
        )

    async def _release_audio(self) -> tuple[bool, str]:
        if self._audio is None or not self._audio.active:
            return True, "nothing to release"
        try:
            result = await self._audio.release()
        except AudioError as exc:
            self._log.error("audio_release_failed", error=str(exc))
            return False, str(exc)
        if result is None:
            return True, "nothing to release"
        return True, f"sink={result.sink} source={result.source}"

    # --- the relay connection ----------------------------------------------------------
    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            self._generation += 1
            generation = self._generation

            def deliver(event: wire.Event, generation: int = generation) -> None:
                self._inbox.put_nowait(_RelayEvent(generation, event))

            try:
                link = await RelayLink.connect(
                    self.identity.relay_url,
                    self.identity.credential,
                    on_event=deliver,
                    tls=self._tls,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                why = (
                    "the relay refused the device credential (revoked? run `btogether beacon "
                    "reset` and provision again)"
                    if status == 401
                    else f"the relay answered HTTP {status}"
                )
                self._relay_error = why
                self._log.error("relay_connect_refused", status=status, why=why)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, LinkError,
                    ValueError) as exc:
                self._relay_error = why_unreachable(self.identity.relay_url, exc)
                self._log.warning("relay_connect_failed", error=self._relay_error, attempt=attempt)
            else:
                started = time.monotonic()
                self._inbox.put_nowait(_Connected(generation, link))
                self._log.info("relay_connected")
                code, reason = await link.closed
                self._inbox.put_nowait(_Closed(generation, f"code={code} {reason}".strip()))
                self._log.warning("relay_disconnected", code=code, reason=reason)
                if time.monotonic() - started >= _STABLE_CONNECTION_S:
                    attempt = 0
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            self._next_retry_s = round(delay, 2)
            self._log.info("relay_reconnect_scheduled", delay_s=round(delay, 3), attempt=attempt)
            await self._sleep(delay)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self._inbox.put_nowait(_Tick())

    # --- status ------------------------------------------------------------------------
    def status(self, now: float, *, countdown: bool = False) -> dict[str, Any]:
        snapshot = self._core().snapshot(now, countdown=countdown)
        snapshot.update(
            relay_url=self.identity.relay_url,
            eid=self._radio.eid.hex() if self._radio.eid else None,
            advertising_error=self._radio.error,
            lock_error=self._lock_error,
            relay_error=self._relay_error,
            next_retry_s=None if self._link is not None else self._next_retry_s,
        )
        return snapshot

    def _write_status(self) -> None:
        snapshot = self.status(self._wall_time())
        if snapshot == self._written_status:
            return
        try:
            write_private(self.state_dir / STATUS_FILE, json.dumps(snapshot, indent=1).encode())
        except OSError as exc:
            self._log.warning("status_file_unwritable", error=str(exc))
            return
        self._written_status = snapshot

    def _rotated(self, rotation: Rotation) -> None:
        self._log.info("advertising_eid", eid=rotation.eid.hex())
        self._write_status()

    def _core(self) -> c.BeaconCore:
        assert self.core is not None, "the daemon is not running"
        return self.core

    async def _shut_down(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        while not self._inbox.empty():  # nobody will answer these now
            item = self._inbox.get_nowait()
            if isinstance(item, _Control) and not item.reply.done():
                item.reply.set_exception(ControlError("stopping", "the daemon is stopping"))
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()
        with contextlib.suppress(Exception):
            await self._radio.set(False)
        if self._audio is not None and self._audio.active:
            await self._release_audio()
        await self._stop_locker()
        await self.control.stop()
        await self._hooks.drain(within=2.0)
        if self.core is not None:
            self.core.connected = False
            self.core.advertising = False
            self._write_status()
        self._out("stopped")
        self._log.info("beacon_daemon_stopped")

