"""``client run`` and ``client tray``: the asyncio shell around :class:`client.core.ClientCore`.

:class:`ClientDaemon` keeps one :class:`~relay.protocol.link.RelayLink` open (reconnecting
with jittered exponential backoff, :mod:`relay.protocol.backoff`), scans (:mod:`hw.scanner`)
and watches the screen lock (:mod:`hw.lock`), and feeds everything that happens — the
connection coming and going, pushed events, the replies to requests, adverts, lock
changes, the user's commands (from the control socket, :mod:`client.api`, and the tray),
and the clock — through one inbox into the core, one at a time, and carries out the
effects the core returns: send a request (its reply comes back through the inbox),
answer a command, save the settings, the unsent lock state or the meeting. Nothing but the
inbox loop touches the core's state, and it never awaits in between: the core sees one
input at a time, in the order they arrived.

Failures the user can act on are raised as :class:`~hw.control_socket.ControlError` whose
``source`` is ``relay`` (the wire error code and message) or ``client``.

The radio, the lock watcher, the relay connection, the clock and the RNG are passed in;
the defaults are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from client import core as c
from client.config import ClientConfig
from client.lock_report import LockState
from client.operations import Command, Relogin, Stop
from client.proximity.tracker import TrackerConfig
from client.views import ReloginView, Status, Stopping, TrayState
from hw.control_socket import ControlError
from hw.lock import LockBackendError, LockBusConfig, LockWatcher, create_lock_watcher
from hw.scanner import (
    AdvertScanner,
    ScanEvent,
    ScanMode,
    ScannerError,
    ScanOptions,
    SystemClock,
    create_scanner,
)
from relay.protocol import wire
from relay.protocol.backoff import Backoff, Retries
from relay.protocol.link import LinkClosed, LinkError, RelayLink, RequestFailed
from relay.protocol.reach import why_unreachable

_log = structlog.get_logger(__name__)

ScannerFactory = Callable[[Callable[[ScanEvent], None]], AdvertScanner]
LockWatcherFactory = Callable[[], LockWatcher]
Connector = Callable[..., Awaitable[RelayLink]]
# A new ``client login`` read from disk: its settings, credential and TLS context.
LoginLoader = Callable[[], tuple[ClientConfig, str, ssl.SSLContext | None]]
# Another client took this laptop id: coming back at once would make the two take turns
# replacing each other, so back off as after this many failures.
_REPLACED_FAILURES = 64


def default_scanner_factory(config: ClientConfig) -> ScannerFactory:
    options = ScanOptions(config.scan.company_id, config.scan.min_rssi, ScanMode(config.scan.mode))

    def make(on_event: Callable[[ScanEvent], None]) -> AdvertScanner:
        return create_scanner(on_event, options, SystemClock())

    return make


def default_lock_watcher_factory() -> LockWatcher:
    return create_lock_watcher(LockBusConfig.from_environ(os.environ))


# --- what arrives in the inbox ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Connected:
    generation: int
    link: RelayLink


@dataclass(frozen=True, slots=True)
class _Closed:
    generation: int
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class _ConnectFailed:
    message: str


@dataclass(frozen=True, slots=True)
class _RelayEvent:
    generation: int
    event: wire.Event


@dataclass(frozen=True, slots=True)
class _Reply:
    ticket: int
    reply: c.Reply


@dataclass(frozen=True, slots=True)
class _Scan:
    event: ScanEvent


@dataclass(frozen=True, slots=True)
class _ScanStarted:
    mode: str | None
    reports_every_advert: bool


@dataclass(frozen=True, slots=True)
class _ScanFailed:
    error: str


@dataclass(frozen=True, slots=True)
class _LockWatchStarted:
    session: str | None


@dataclass(frozen=True, slots=True)
class _LockWatchFailed:
    error: str


@dataclass(frozen=True, slots=True)
class _LockWatchEnded:
    pass


@dataclass(frozen=True, slots=True)
class _Lock:
    locked: bool
    initial: bool


@dataclass(frozen=True, slots=True)
class _Command:
    token: int
    command: Command[Any]


@dataclass(frozen=True, slots=True)
class _Login:
    config: ClientConfig
    credential: str
    tls: ssl.SSLContext | None
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _Crashed:
    task: asyncio.Task[None]


@dataclass(frozen=True, slots=True)
class _Stop:
    pass


_Item = (
    _Connected
    | _Closed
    | _ConnectFailed
    | _RelayEvent
    | _Reply
    | _Scan
    | _ScanStarted
    | _ScanFailed
    | _LockWatchStarted
    | _LockWatchFailed
    | _LockWatchEnded
    | _Lock
    | _Command
    | _Login
    | _Crashed
    | _Stop
)


class ClientDaemon:
    """The laptop client (see the module docstring). ``await run()``; ``stop()`` ends it.

    ``reload_login`` reads a new ``client login`` from disk (for the ``relogin``
    operation; without it the operation says to restart); it may raise ControlError.
    """

    def __init__(
        self,
        config: ClientConfig,
        credential: str,
        *,
        scanner_factory: ScannerFactory | None = None,
        lock_watcher_factory: LockWatcherFactory | None = default_lock_watcher_factory,
        connect: Connector = RelayLink.connect,
        tracker_config: TrackerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        save_config: Callable[[ClientConfig], None] | None = None,
        unsent_lock: LockState | None = None,
        save_unsent_lock: Callable[[LockState | None], None] | None = None,
        tls: ssl.SSLContext | None = None,
        meeting_id: str | None = None,
        save_meeting: Callable[[str | None], None] | None = None,
        reload_login: LoginLoader | None = None,
    ) -> None:
        self.core = c.ClientCore(
            config,
            tracker_config=tracker_config,
            lock_watch=lock_watcher_factory is not None,
            unsent_lock=unsent_lock,
            meeting_id=meeting_id,
        )
        self._credential = credential
        self._tls = tls
        self._scanner_factory = scanner_factory or default_scanner_factory(config)
        self._lock_watcher_factory = lock_watcher_factory
        self._connect = connect
        self._clock = clock
        self._rng = rng or random.Random()
        self._save_config = save_config
        self._save_unsent_lock = save_unsent_lock
        self._save_meeting = save_meeting
        self._reload_login = reload_login
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._generation = 0
        self._link: RelayLink | None = None
        self._relogin = asyncio.Event()
        self._tokens = 0
        self._answers: dict[int, asyncio.Future[object]] = {}
        self._requests: set[asyncio.Task[None]] = set()
        self._log = _log.bind(laptop_id=config.laptop_id)

    # --- public ---------------------------------------------------------------------------------
    @property
    def link(self) -> RelayLink | None:
        """The open relay connection, if any."""
        return self._link

    def stop(self) -> None:
        self._inbox.put_nowait(_Stop())

    async def execute(self, command: Command[Any]) -> object:
        """Carry out a command (:mod:`client.operations`); its view, or ControlError."""
        if isinstance(command, Relogin):
            return await self._use_new_login()
        if isinstance(command, Stop):
            self.stop()
            return Stopping()
        self._tokens += 1
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._answers[self._tokens] = answer
        self._inbox.put_nowait(_Command(self._tokens, command))
        return await answer

    def status(self) -> Status:
        return self.core.status(self._clock())

    def tray_state(self) -> TrayState:
        return self.core.tray_state(self._clock())

    async def run(self) -> None:
        """Run until :meth:`stop`; a crash of one of the loops ends it with that error."""
        loops = [self._relay_loop(), self._scan_loop(), self._lock_loop()]
        tasks = [asyncio.create_task(loop) for loop in loops]
        for task in tasks:
            task.add_done_callback(self._watch_loop)
        crashed: BaseException | None = None
        try:
            self._execute(self.core.start(self._clock()))
            crashed = await self._serve_inbox()
        finally:
            await self._shut_down(tasks)
        if crashed is not None:
            raise crashed

    # --- the inbox ------------------------------------------------------------------------------
    async def _serve_inbox(self) -> BaseException | None:
        while True:
            deadline = self.core.next_deadline()
            within = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                item = await asyncio.wait_for(self._inbox.get(), within)
            except TimeoutError:
                self._execute(self.core.tick(self._clock()))
                continue
            if isinstance(item, _Stop):
                return None
            if isinstance(item, _Crashed):
                return item.task.exception()
            self._execute(self._handle(item, self._clock()))

    def _handle(self, item: _Item, now: float) -> list[c.Effect]:
        core = self.core
        if isinstance(item, _Scan):
            return core.on_scan(item.event, now)
        if isinstance(item, _Reply):
            return core.on_reply(item.ticket, item.reply, now)
        if isinstance(item, _RelayEvent):
            if item.generation != self._generation or self._link is None:
                return core.tick(now)  # from a connection that has ended since
            return core.on_relay_event(item.event, now)
        if isinstance(item, _Command):
            return core.on_command(item.token, item.command, now)
        if isinstance(item, _Connected):
            self._link = item.link
            return core.on_connected(item.link.welcome, now)
        if isinstance(item, _Closed):
            if item.generation == self._generation:
                self._link = None
            return core.on_disconnected(item.code, item.reason, now)
        if isinstance(item, _ConnectFailed):
            return core.on_connect_failed(item.message, now)
        if isinstance(item, _ScanStarted):
            return core.on_scan_started(item.mode, item.reports_every_advert, now)
        if isinstance(item, _ScanFailed):
            return core.on_scan_failed(item.error, now)
        if isinstance(item, _LockWatchStarted):
            return core.on_lock_watch_started(item.session, now)
        if isinstance(item, _LockWatchFailed):
            return core.on_lock_watch_failed(item.error, now)
        if isinstance(item, _LockWatchEnded):
            return core.on_lock_watch_ended(now)
        if isinstance(item, _Lock):
            return core.on_lock(item.locked, item.initial, now)
        if isinstance(item, _Login):
            effects = core.on_login(item.config, now)
            self._credential, self._tls = item.credential, item.tls
            self._relogin.set()
            if self._link is not None:
                self._spawn(self._link.close())
            item.done.set_result(None)
            return effects
        raise AssertionError(f"unhandled inbox item {item!r}")

    # --- carrying out effects -------------------------------------------------------------------
    def _execute(self, effects: list[c.Effect]) -> None:
        for effect in effects:
            try:
                self._do(effect)
            except Exception:  # one failed effect must not take the client down
                self._log.exception("effect_failed", effect=type(effect).__name__)

    def _do(self, effect: c.Effect) -> None:
        if isinstance(effect, c.Send):
            link = self._link
            if link is None:
                self._inbox.put_nowait(_Reply(effect.ticket, c.Lost("offline")))
            else:
                self._spawn(self._request(link, effect.request))
        elif isinstance(effect, c.Answer):
            future = self._answers.pop(effect.token, None)
            if future is None or future.done():
                return
            answer = effect.answer
            if isinstance(answer, c.Refusal):
                future.set_exception(ControlError(answer.code, answer.message, answer.source))
            else:
                future.set_result(answer)
        elif isinstance(effect, c.SaveConfig):
            if self._save_config is not None:
                try:
                    self._save_config(self.core.config)
                except OSError as exc:
                    self._log.warning("config_not_saved", error=str(exc))
        elif isinstance(effect, c.SaveUnsentLock):
            self._save(effect, self._save_unsent_lock, effect.state, "unsent_lock_not_saved")
        elif isinstance(effect, c.SaveMeeting):
            self._save(effect, self._save_meeting, effect.meeting_id, "meeting_not_saved")

    def _save(
        self,
        effect: c.SaveUnsentLock | c.SaveMeeting,
        save: Callable[[Any], None] | None,
        value: object,
        failed: str,
    ) -> None:
        if save is None:
            return
        try:
            save(value)
        except OSError as exc:
            self._log.warning(failed, error=str(exc))
            self.core.not_saved(effect)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # The coroutine itself becomes the task (not wrapped in another): a task cancelled
        # at shutdown before it ever ran then closes it, instead of leaving it "never
        # awaited".
        task = asyncio.create_task(work)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _request(self, link: RelayLink, request: wire.Request) -> None:
        """Send one request; its reply (or why there is none) goes to the inbox."""
        reply: c.Reply
        try:
            reply = await link.request(request)
        except RequestFailed as exc:
            reply = c.RelayRefused(exc.code, exc.message)
        except (LinkClosed, LinkError):
            reply = c.Lost("closed")
        except TimeoutError:
            reply = c.Lost("timeout")
        except ValidationError as exc:
            self._log.warning("relay_reply_unreadable", type=request.type, error=str(exc)[:200])
            reply = c.Lost("unreadable")
        self._inbox.put_nowait(_Reply(request.id, reply))

    # --- logging in again -----------------------------------------------------------------------
    async def _use_new_login(self) -> ReloginView:
        if self._reload_login is None:
            raise ControlError(
                "unsupported", "this client cannot reload its login: restart `client run`"
            )
        config, credential, tls = self._reload_login()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Login(config, credential, tls, done))
        await done
        return ReloginView(relay_url=config.relay_url)

    # --- the loops that watch the world ---------------------------------------------------------
    def _watch_loop(self, task: asyncio.Task[None]) -> None:
        # A loop may end normally (no lock watcher configured); a crash ends the client.
        if not task.cancelled() and task.exception() is not None:
            self._inbox.put_nowait(_Crashed(task))

    async def _relay_loop(self) -> None:
        config = self.core.config
        policy = Backoff(
            config.reconnect_initial_s, max(config.reconnect_max_s, config.reconnect_initial_s)
        )
        backoff = Retries(policy, self._rng)
        while True:
            self._generation += 1
            generation = self._generation
            config = self.core.config  # a new login changes the URL and the name

            def deliver(event: wire.Event, generation: int = generation) -> None:
                self._inbox.put_nowait(_RelayEvent(generation, event))

            try:
                link = await self._connect(
                    config.relay_url,
                    self._credential,
                    laptop_id=config.laptop_id,
                    laptop_name=config.laptop_name,
                    on_event=deliver,
                    tls=self._tls,
                )
            except InvalidStatus as exc:
                refusal = why_unreachable(config.relay_url, exc)
                if exc.response.status_code == 401:
                    refusal += "; after a new `btogether client login` this client retries"
                self._inbox.put_nowait(_ConnectFailed(refusal))
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, LinkError) as exc:
                why = why_unreachable(config.relay_url, exc)
                message = f"cannot reach the relay at {config.relay_url}: {why}"
                self._inbox.put_nowait(_ConnectFailed(message))
            else:
                backoff.reset()
                self._inbox.put_nowait(_Connected(generation, link))
                code, reason = await link.closed
                self._inbox.put_nowait(_Closed(generation, code, reason))
                await link.close()
                if code == wire.CloseCode.REPLACED:
                    backoff.failures = _REPLACED_FAILURES
            delay = 0.0 if self._relogin.is_set() else backoff.next_delay()
            self._relogin.clear()
            self._log.info("relay_reconnect_scheduled", delay_s=round(delay, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._relogin.wait(), delay)
            if self._relogin.is_set():
                backoff.reset()

    async def _scan_loop(self) -> None:
        retry_s = self.core.config.scan.retry_s

        def heard(event: ScanEvent) -> None:
            self._inbox.put_nowait(_Scan(event))

        while True:
            scanner = self._scanner_factory(heard)
            try:
                await scanner.start()
            except Exception as exc:  # ScannerError, or a radio stack failing unexpectedly
                if not isinstance(exc, ScannerError):
                    self._log.exception("scan_start_failed")
                self._inbox.put_nowait(_ScanFailed(str(exc)))
                await asyncio.sleep(retry_s)
                continue
            mode = scanner.mode_in_use.value if scanner.mode_in_use else None
            self._inbox.put_nowait(_ScanStarted(mode, scanner.reports_every_advert))
            try:
                await asyncio.Event().wait()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(scanner.stop())

    async def _lock_loop(self) -> None:
        if self._lock_watcher_factory is None:
            return
        retry_s = self.core.config.scan.retry_s
        while True:
            watcher = self._lock_watcher_factory()
            try:
                await watcher.start()
            except Exception as exc:  # LockBackendError, or D-Bus failing unexpectedly
                if not isinstance(exc, LockBackendError):
                    self._log.exception("lock_watch_start_failed")
                self._inbox.put_nowait(_LockWatchFailed(str(exc)))
                await asyncio.sleep(retry_s)
                continue
            self._inbox.put_nowait(_LockWatchStarted(watcher.watching))
            try:
                async for event in watcher.events():
                    self._inbox.put_nowait(_Lock(event.locked, event.initial))
            except Exception:
                self._log.exception("lock_watch_failed")
            finally:
                await watcher.stop()
            self._inbox.put_nowait(_LockWatchEnded())
            await asyncio.sleep(retry_s)

    async def _shut_down(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in [*tasks, *self._requests]:
            task.cancel()
        await asyncio.gather(*tasks, *self._requests, return_exceptions=True)
        for future in self._answers.values():  # nobody will answer these now
            if not future.done():
                future.set_exception(ControlError("stopping", "the client is stopping"))
        self._answers.clear()
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if isinstance(item, _Login) and not item.done.done():
                item.done.set_exception(ControlError("stopping", "the client is stopping"))
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        self._log.info("client_stopped")
