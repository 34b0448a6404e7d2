"""The laptop client's core: one relay connection, continuous scanning, lock watching, actions.

:class:`ClientCore` is what ``client run`` and ``client tray`` run. It

* keeps one :class:`~relay.protocol.link.RelayLink` open, reconnecting with jittered
  exponential backoff (:mod:`relay.protocol.backoff`);
* scans continuously (:mod:`hw.scanner`), decodes our frames, reports the EIDs it hears
  to the relay every ``report_interval_s`` (:class:`client.nearby.SightingBook`) and
  feeds the resolved ones to the :class:`~client.proximity.ProximityTracker`, so
  :meth:`ClientCore.nearby` is the ranked list of rooms and phones with their names;
* watches the screen lock (:mod:`hw.lock`) and tells the relay (``lock.set``) when
  paired and lock sync is on, re-sending after a reconnect what the relay has not
  confirmed (:class:`client.lock_report.LockReporter`);
* follows what the relay pushes (pair prompts and outcomes, lock acknowledgements,
  audio hand-off states, join results);
* carries out the user's actions (connect a phone, confirm, unpair, audio on/off, lock
  sync, join a room), which the control socket (:mod:`client.api`) and the tray call.

Failures the user can act on raise :class:`~hw.control_socket.ControlError` whose ``source``
is ``relay`` (the wire error code and message) or ``client``.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import structlog
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from client.config import ClientConfig
from client.lock_report import LockReporter, LockState
from client.nearby import NearbyDevice, SightingBook, rank_nearby
from client.proximity import ProximityTracker, TrackerConfig
from client.tray_menu import (
    JoinOutcome,
    NearbyPhone,
    NearbyRoom,
    PairedPhone,
    PairingCode,
    PendingPairing,
    TrayState,
)
from hw.control_socket import ControlError
from hw.lock import LockBackendError, LockBusConfig, LockWatcher, create_lock_watcher
from hw.scanner import (
    AdvertLost,
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
from relay.protocol.frame import decode_manufacturer_data
from relay.protocol.link import LinkClosed, LinkError, RelayLink, RequestFailed
from relay.protocol.reach import why_unreachable

_log = structlog.get_logger(__name__)
T = TypeVar("T")

ScannerFactory = Callable[[Callable[[ScanEvent], None]], AdvertScanner]
LockWatcherFactory = Callable[[], LockWatcher]
Connector = Callable[..., Awaitable[RelayLink]]
HandoffState = Literal["pending", "active", "failed", "released"]
MAX_REMEMBERED_OUTCOMES = 64
DEFAULT_AD_HOC_MEETING = "ad-hoc"


def default_scanner_factory(config: ClientConfig) -> ScannerFactory:
    options = ScanOptions(config.scan.company_id, config.scan.min_rssi, ScanMode(config.scan.mode))

    def make(on_event: Callable[[ScanEvent], None]) -> AdvertScanner:
        return create_scanner(on_event, options, SystemClock())

    return make


def default_lock_watcher_factory() -> LockWatcher:
    return create_lock_watcher(LockBusConfig.from_environ(os.environ))


@dataclass
class PendingPair:
    """A pair request this laptop is part of, until it completes or ends."""

    request_id: str
    phone_id: str
    phone_name: str
    code: str
    expires_at: float
    confirmed_by_me: bool = False


@dataclass
class Handoff:
    handoff_id: str
    phone_id: str
    meeting_id: str
    state: HandoffState = "pending"
    reason: str = ""


@dataclass
class _Outcomes:
    """Results of things the user may be waiting for, kept briefly (bounded)."""

    pairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    joins: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def put(table: dict[str, dict[str, Any]], key: str, value: dict[str, Any]) -> None:
        table[key] = value
        while len(table) > MAX_REMEMBERED_OUTCOMES:
            del table[next(iter(table))]


def _relay_error(exc: RequestFailed) -> ControlError:
    return ControlError(exc.code.value, exc.message, "relay")


def _match(devices: list[tuple[str, str]], wanted: str, *, words: bool = False) -> str | None:
    """The id among (id, name) pairs that ``wanted`` names, by id or case-insensitive name.

    With ``words``, a name that contains ``wanted`` as whole words also matches if it is
    the only one (``join Borealis`` for "Room Borealis").
    """
    for device_id, _ in devices:
        if device_id == wanted:
            return device_id
    folded = " ".join(wanted.split()).casefold()
    matches = [
        device_id for device_id, name in devices if " ".join(name.split()).casefold() == folded
    ]
    if not matches and words and folded:
        wanted_words = folded.split()
        for device_id, name in devices:
            name_words = name.casefold().split()
            if any(
                name_words[i : i + len(wanted_words)] == wanted_words
                for i in range(len(name_words) - len(wanted_words) + 1)
            ):
                matches.append(device_id)
    if len(matches) > 1:
        raise ControlError("ambiguous", f"several devices are called {wanted!r}; use the id")
    return matches[0] if matches else None


class ClientCore:
    """The laptop client (see the module docstring). ``await run()``; ``stop()`` ends it."""

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
        on_change: Callable[[], None] | None = None,
        unsent_lock: LockState | None = None,
        save_unsent_lock: Callable[[LockState | None], None] | None = None,
        tls: ssl.SSLContext | None = None,
        meeting_id: str | None = None,
        save_meeting: Callable[[str | None], None] | None = None,
    ) -> None:
        self.config = config
        self._credential = credential
        self._tls = tls
        self._relogin = asyncio.Event()
        self._save_meeting = save_meeting
        self._scanner_factory = scanner_factory or default_scanner_factory(config)
        self._lock_watcher_factory = lock_watcher_factory
        self._connect = connect
        self._clock = clock
        self._rng = rng or random.Random()
        self._save_config = save_config
        self._on_change = on_change
        self._log = _log.bind(laptop_id=config.laptop_id)

        self.book = SightingBook(config.scan.fresh_s, config.scan.forget_after_s)
        self.tracker = ProximityTracker(tracker_config)
        self.reporter = LockReporter(enabled=config.lock_sync)
        if unsent_lock is not None and config.lock_sync:
            # The last run could not deliver this: it is still the latest news for the relay.
            self.reporter.state, self.reporter.pending = unsent_lock, True
        self._save_unsent_lock = save_unsent_lock
        self._saved_unsent = unsent_lock
        self.link: RelayLink | None = None
        self.principal: wire.PrincipalInfo | None = None
        self.relay_error: str | None = None
        self.connected_since: float | None = None
        self.reconnects = 0
        self.scan_status = "starting"
        self.scan_mode: str | None = None
        self.lock_status = "starting" if lock_watcher_factory is not None else "off"
        self.locked: bool | None = None
        self.lock_session: str | None = None  # which session, and how it was chosen
        self.pairings: dict[str, wire.PairingInfo] = {}
        self.pairings_known = False
        self.pending: PendingPair | None = None
        self.handoffs: dict[str, Handoff] = {}
        self.meeting_id: str | None = meeting_id
        self._saved_meeting = meeting_id
        self.lock_applied: dict[str, wire.LockApplied] = {}
        self.last_join: JoinOutcome | None = None
        self._join_meetings: dict[str, str] = {}
        self.adverts_heard = 0
        self.reports_sent = 0
        self._outcomes = _Outcomes()
        self._changed = asyncio.Event()
        self._lock_kick = asyncio.Event()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Run until :meth:`stop`; a crash of one of the loops ends it with that error."""
        loops = [
            self._relay_loop(),
            self._report_loop(),
            self._scan_loop(),
            self._lock_loop(),
            self._lock_sender(),
        ]
        tasks = [asyncio.create_task(loop) for loop in loops]
        stopper = asyncio.create_task(self._stop.wait())
        self._ready.set()
        pending: set[asyncio.Task[Any]] = {*tasks, stopper}
        done: set[asyncio.Task[Any]] = set()
        try:
            # A loop may finish normally (no lock watcher configured); only a stop or a crash
            # ends the client.
            while stopper in pending and not any(
                not t.cancelled() and t.exception() is not None for t in done
            ):
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                done |= finished
        finally:
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            link, self.link = self.link, None
            if link is not None:
                await link.close()
            self._log.info("client_stopped")
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def stop(self) -> None:
        self._stop.set()

    def _persist_unsent_lock(self) -> None:
        r = self.reporter
        unsent = r.in_flight or (r.state if r.pending else None)
        if unsent != self._saved_unsent and self._save_unsent_lock is not None:
            try:
                self._save_unsent_lock(unsent)
            except OSError as exc:
                self._log.warning("unsent_lock_not_saved", error=str(exc))
            else:
                self._saved_unsent = unsent

    def _persist_meeting(self) -> None:
        if self.meeting_id != self._saved_meeting and self._save_meeting is not None:
            try:
                self._save_meeting(self.meeting_id)
            except OSError as exc:
                self._log.warning("meeting_not_saved", error=str(exc))
            else:
                self._saved_meeting = self.meeting_id

    def _notify(self) -> None:
        self._persist_unsent_lock()
        self._persist_meeting()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self._on_change is not None:
            self._on_change()

    async def _wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    async def wait_connected(self, within: float) -> bool:
        return await self._wait_until(lambda: self.link is not None, within)

    # --- the relay connection -----------------------------------------------------------
    async def _relay_loop(self) -> None:
        policy = Backoff(
            self.config.reconnect_initial_s,
            max(self.config.reconnect_max_s, self.config.reconnect_initial_s),
        )
        backoff = Retries(policy, self._rng)
        while True:
            try:
                link = await self._connect(
                    self.config.relay_url,
                    self._credential,
                    laptop_id=self.config.laptop_id,
                    laptop_name=self.config.laptop_name,
                    on_event=self._on_event,
                    tls=self._tls,
                )
            except InvalidStatus as exc:
                refusal = why_unreachable(self.config.relay_url, exc)
                if exc.response.status_code == 401:
                    refusal += "; after a new `btogether client login` this client retries"
                self._set_relay_error(refusal)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, LinkError) as exc:
                why = why_unreachable(self.config.relay_url, exc)
                self._set_relay_error(f"cannot reach the relay at {self.config.relay_url}: {why}")
            else:
                backoff.reset()
                if await self._connected(link) == wire.CloseCode.REPLACED:
                    # Another client took this laptop id: retrying at once would make the
                    # two take turns replacing each other, so come back slowly.
                    backoff.failures = 64
            delay = 0.0 if self._relogin.is_set() else backoff.next_delay()
            self._relogin.clear()
            self._log.info("relay_reconnect_scheduled", delay_s=round(delay, 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._relogin.wait(), delay)
            if self._relogin.is_set():
                backoff.reset()

    async def use_login(
        self, config: ClientConfig, credential: str, tls: ssl.SSLContext | None
    ) -> dict[str, Any]:
        """A new ``client login``: reconnect at once with its relay URL and credential."""
        self.config = self.config.model_copy(
            update={k: getattr(config, k) for k in ("relay_url", "ca_file", "laptop_name")}
        )
        self._credential, self._tls = credential, tls
        self._relogin.set()
        link = self.link
        if link is not None:
            await link.close()
        self._log.info("login_changed", url=self.config.relay_url)
        return {"relay_url": self.config.relay_url}

    def _set_relay_error(self, message: str) -> None:
        if message != self.relay_error:
            self._log.warning("relay_unreachable", error=message)
        self.relay_error = message
        self._notify()

    async def _connected(self, link: RelayLink) -> int | None:
        """Serve one connection until it closes; returns the close code."""
        self.link = link
        self.principal = link.welcome.principal
        self.relay_error = None
        self.connected_since = self._clock()
        self.reconnects += 1
        log = self._log.bind(tenant_id=self.principal.tenant_id, user_id=self.principal.user_id)
        log.info("relay_connected", url=self.config.relay_url)
        self._resync_handoffs(set(link.welcome.handoffs))
        try:
            with contextlib.suppress(LinkError, TimeoutError):
                await self._refresh_pairings(link)
            self._lock_kick.set()
            self._notify()
            code, reason = await link.closed
        finally:
            self.link = None
            self.connected_since = None
            await link.close()
        if code == wire.CloseCode.REPLACED:
            message = "another client with this laptop id connected to the relay"
        else:
            message = f"the relay closed the connection ({code}) {reason}".strip()
        log.warning("relay_disconnected", code=code, reason=reason)
        self._set_relay_error(message)
        return code

    def _resync_handoffs(self, held: set[str]) -> None:
        """After a (re)connect: a hand-off the relay no longer holds has ended (the relay
        restarted, or the phone gave the audio back while we were away)."""
        for handoff in self.handoffs.values():
            if handoff.state in ("pending", "active") and handoff.handoff_id not in held:
                handoff.state = "released"
                handoff.reason = "the relay no longer holds this hand-off (it restarted?)"
                self._log.info("audio_state_resynced", handoff_id=handoff.handoff_id)

    async def _refresh_pairings(self, link: RelayLink) -> None:
        pairings = await link.pairings()
        self.pairings = {p.phone_id: p for p in pairings}
        self.pairings_known = True
        self._notify()

    def _paired(self) -> bool | None:
        return bool(self.pairings) if self.pairings_known else None

    async def _request(self, call: Callable[[RelayLink], Awaitable[T]]) -> T:
        link = self.link
        if link is None:
            detail = f": {self.relay_error}" if self.relay_error else ""
            raise ControlError("relay_unreachable", f"not connected to the relay{detail}")
        try:
            return await call(link)
        except RequestFailed as exc:
            raise _relay_error(exc) from None
        except LinkClosed:
            raise ControlError(
                "relay_unreachable", "the connection to the relay closed before it answered"
            ) from None
        except TimeoutError:
            raise ControlError("timeout", "the relay did not answer in time") from None

    # --- pushed events (run in the link's reader: no requests from here) -----------------
    def _on_event(self, event: wire.Event) -> None:
        if isinstance(event, wire.PairPrompt):
            self._on_pair_prompt(event)
        elif isinstance(event, wire.PairCompleted):
            pairing = event.pairing
            if pairing.laptop_id == self.config.laptop_id:
                self.pairings[pairing.phone_id] = pairing
                self.pairings_known = True
            if self.pending is not None and self.pending.request_id == event.request_id:
                self.pending = None
            self._outcomes.put(
                self._outcomes.pairs,
                event.request_id,
                {"outcome": "paired", "pairing": pairing.model_dump()},
            )
            self._log.info("pairing_completed", phone_id=pairing.phone_id)
        elif isinstance(event, wire.PairEnded):
            if self.pending is not None and self.pending.request_id == event.request_id:
                self.pending = None
            self._outcomes.put(self._outcomes.pairs, event.request_id, {"outcome": event.reason})
            self._log.info("pair_request_ended", request_id=event.request_id, reason=event.reason)
        elif isinstance(event, wire.PairRemoved):
            self.pairings.pop(event.phone_id, None)
            for ended in self.handoffs.values():
                if ended.phone_id == event.phone_id and ended.state in ("pending", "active"):
                    ended.state, ended.reason = "released", "unpaired"
            self._log.info("pairing_removed", phone_id=event.phone_id)
        elif isinstance(event, wire.LockApplied):
            self.lock_applied[event.phone_id] = event
            self._log.info("lock_applied", phone_id=event.phone_id, state=event.state)
        elif isinstance(event, wire.AudioState):
            handoff = self.handoffs.get(event.handoff_id)
            if handoff is None:
                handoff = Handoff(event.handoff_id, event.phone_id, self.meeting_id or "")
                self.handoffs[event.handoff_id] = handoff
            handoff.state, handoff.reason = event.state, event.reason
            self._log.info("audio_state", phone_id=event.phone_id, state=event.state)
        elif isinstance(event, wire.JoinResult):
            self._remember_join(event.join_id, event.room_id, event.outcome)
            self._outcomes.put(
                self._outcomes.joins,
                event.join_id,
                {"join_id": event.join_id, "room_id": event.room_id, "outcome": event.outcome},
            )
            self._log.info("join_result", room_id=event.room_id, outcome=event.outcome)
        self._notify()

    def _on_pair_prompt(self, event: wire.PairPrompt) -> None:
        if event.laptop_id != self.config.laptop_id:
            return
        confirmed = (
            self.pending is not None
            and self.pending.request_id == event.request_id
            and self.pending.confirmed_by_me
        )
        self.pending = PendingPair(
            event.request_id,
            event.phone_id,
            event.phone_name,
            event.code,
            event.expires_at,
            confirmed,
        )
        self._log.info("pair_prompt", phone_id=event.phone_id, request_id=event.request_id)

    # --- scanning and reporting ---------------------------------------------------------
    def _on_scan_event(self, event: ScanEvent) -> None:
        if isinstance(event, AdvertLost):
            # The book and the tracker age devices out on their own, unless the scanner
            # only hears changes (passive): then this is the only word that one is gone.
            for gone in self.book.lost(event.address):
                self.tracker.forget(gone)
            return
        frame = decode_manufacturer_data(event.manufacturer_data, self.config.scan.company_id)
        if frame is None:
            return
        self.adverts_heard += 1
        device_id = self.book.heard(
            frame.eid, event.rssi, frame.tx_power, event.monotonic, event.address
        )
        if device_id is not None:
            self.tracker.observe(device_id, event.rssi, frame.tx_power, event.monotonic)

    async def _scan_loop(self) -> None:
        while True:
            scanner = self._scanner_factory(self._on_scan_event)
            try:
                await scanner.start()
            except Exception as exc:  # ScannerError, or a radio stack failing unexpectedly
                if not isinstance(exc, ScannerError):
                    self._log.exception("scan_start_failed")
                if self.scan_status != f"unavailable: {exc}":
                    self._log.warning("scan_unavailable", error=str(exc))
                self.scan_status = f"unavailable: {exc}"
                self._notify()
                await asyncio.sleep(self.config.scan.retry_s)
                continue
            self.scan_status = "scanning"
            self.scan_mode = scanner.mode_in_use.value if scanner.mode_in_use else None
            held = not scanner.reports_every_advert
            self.book.hold_until_lost = self.tracker.hold_until_lost = held
            self._log.info("scan_started", mode=self.scan_mode)
            self._notify()
            try:
                await asyncio.Event().wait()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(scanner.stop())

    async def _report_loop(self) -> None:
        interval = self.config.scan.report_interval_s
        while True:
            await asyncio.sleep(interval)
            link = self.link
            if link is None:
                continue
            batch = self.book.batch(self._clock())
            if not batch:
                continue
            try:
                result = await link.report_sightings(batch)
            except RequestFailed as exc:
                self._log.warning("sightings_refused", code=exc.code.value, error=exc.message)
                continue
            except (LinkClosed, TimeoutError):
                continue
            self.reports_sent += 1
            new = self.book.resolved(batch, result.devices, self._clock())
            if new:
                self._log.info("devices_resolved", device_ids=new)
            self._notify()

    # --- the screen lock ------------------------------------------------------------------
    async def _lock_loop(self) -> None:
        if self._lock_watcher_factory is None:
            return
        while True:
            watcher = self._lock_watcher_factory()
            try:
                await watcher.start()
            except Exception as exc:  # LockBackendError, or D-Bus failing unexpectedly
                if not isinstance(exc, LockBackendError):
                    self._log.exception("lock_watch_start_failed")
                if self.lock_status != f"unavailable: {exc}":
                    self._log.warning("lock_watch_unavailable", error=str(exc))
                self.lock_status = f"unavailable: {exc}"
                self._notify()
                await asyncio.sleep(self.config.scan.retry_s)
                continue
            self.lock_status = "watching"
            self.lock_session = watcher.watching
            self._notify()
            try:
                async for event in watcher.events():
                    self.locked = event.locked
                    self.reporter.observed(
                        event.locked, initial=event.initial, paired=self._paired()
                    )
                    self._log.info(
                        "screen_lock_seen",
                        locked=event.locked,
                        initial=event.initial,
                        will_report=self.reporter.pending,
                    )
                    self._lock_kick.set()
                    self._notify()
            except Exception:
                self._log.exception("lock_watch_failed")
            finally:
                await watcher.stop()
            self.lock_status = "restarting"
            await asyncio.sleep(self.config.scan.retry_s)

    async def _lock_sender(self) -> None:
        while True:
            await self._lock_kick.wait()
            self._lock_kick.clear()
            while True:
                link = self.link
                state = self.reporter.next_to_send(
                    connected=link is not None, paired=self._paired()
                )
                if state is None or link is None:
                    break
                try:
                    result = await link.lock_set(state)
                except RequestFailed as exc:
                    if exc.code == wire.ErrorCode.NOT_PAIRED:
                        self.pairings.clear()
                        self.reporter.finished(state, "not_paired", exc.message)
                    else:
                        self.reporter.finished(state, "refused", f"{exc.code.value}: {exc.message}")
                    self._log.warning("lock_report_refused", state=state, code=exc.code.value)
                except (LinkClosed, TimeoutError):
                    self.reporter.finished(state, "connection_lost")
                    self._log.info("lock_report_deferred", state=state)
                    if self.link is link and not link.closed.done():
                        await asyncio.sleep(1.0)  # the reply timed out: try again shortly
                        continue
                    break  # the reconnect kicks this loop again
                else:
                    self.reporter.finished(state, "confirmed")
                    self._log.info(
                        "lock_reported", state=state, phones=[p.phone_id for p in result.phones]
                    )
                self._notify()

    # --- what the user sees ----------------------------------------------------------------
    def nearby(self) -> list[NearbyDevice]:
        """Rooms and phones heard and resolved, nearest first."""
        descriptors = {d.device_id: d for d in self.book.descriptors()}
        return rank_nearby(self.tracker.ranking(self._clock()), descriptors)

    def nearby_json(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            {
                "device_id": n.device_id,
                "name": n.name,
                "kind": n.kind,
                "mode": n.mode,
                "location": n.location,
                "own": n.own,
                "connectable": n.connectable and n.device_id not in self.pairings,
                "paired": n.device_id in self.pairings,
                "distance_m": round(n.distance_m, 2),
                "rssi": round(n.rssi, 1),
                "age_s": round(max(0.0, now - n.last_seen), 2),
            }
            for n in self.nearby()
        ]

    def _handoff_of(self, phone_id: str | None = None) -> Handoff | None:
        for handoff in reversed(self.handoffs.values()):
            if handoff.state in ("pending", "active") and phone_id in (None, handoff.phone_id):
                return handoff
        return None

    def status(self) -> dict[str, Any]:
        principal = self.principal
        handoff = self._handoff_of()
        return {
            "laptop_id": self.config.laptop_id,
            "laptop_name": self.config.laptop_name,
            "relay": {
                "url": self.config.relay_url,
                "connected": self.link is not None,
                "error": self.relay_error,
                "connections": self.reconnects,
                "tenant_id": principal.tenant_id if principal else None,
                "user_id": principal.user_id if principal else None,
            },
            "scan": {
                "status": self.scan_status,
                "mode": self.scan_mode,
                "adverts_heard": self.adverts_heard,
                "reports_sent": self.reports_sent,
                "nearby": len(self.nearby()),
            },
            "lock": {
                "watch": self.lock_status,
                "session": self.lock_session,
                "locked": self.locked,
                "sync": self.reporter.enabled,
                "unsent": self.reporter.pending or self.reporter.in_flight is not None,
                "last_reported": self.reporter.last_confirmed,
                "last_error": self.reporter.last_error,
                "applied": {
                    phone_id: {"seq": e.seq, "state": e.state}
                    for phone_id, e in self.lock_applied.items()
                },
            },
            "pairings": [p.model_dump() for p in self.pairings.values()],
            "pending": self._pending_json(),
            "audio": self._handoff_json(handoff) if handoff else None,
            "meeting_id": self.meeting_id,
        }

    def _pending_json(self) -> dict[str, Any] | None:
        p = self.pending
        if p is None:
            return None
        return {
            "request_id": p.request_id,
            "phone_id": p.phone_id,
            "phone_name": p.phone_name,
            "code": p.code,
            "expires_at": p.expires_at,
            "confirmed_by_me": p.confirmed_by_me,
        }

    @staticmethod
    def _handoff_json(h: Handoff) -> dict[str, Any]:
        return {
            "handoff_id": h.handoff_id,
            "phone_id": h.phone_id,
            "meeting_id": h.meeting_id,
            "state": h.state,
            "reason": h.reason,
        }

    def tray_state(self) -> TrayState:
        nearby = self.nearby()
        pending = self.pending
        handoff = self._handoff_of()
        return TrayState(
            relay_connected=self.link is not None,
            rooms=tuple(NearbyRoom(n.device_id, n.name, n.distance_m) for n in nearby if n.is_room),
            phones=tuple(
                NearbyPhone(n.device_id, n.name, n.distance_m) for n in nearby if n.connectable
            ),
            paired=tuple(PairedPhone(p.phone_id, p.phone_name) for p in self.pairings.values()),
            pending=(
                PendingPairing(
                    pending.phone_id,
                    f"{pending.phone_name} (code {pending.code})",
                    needs_my_confirmation=not pending.confirmed_by_me,
                )
                if pending is not None
                else None
            ),
            lock_sync=self.reporter.enabled,
            audio_phone_id=handoff.phone_id if handoff is not None else None,
            meeting_id=self.meeting_id,
            pairing_code=(
                PairingCode(pending.request_id, pending.phone_name, pending.code)
                if pending is not None and pending.code
                else None
            ),
            last_join=self.last_join,
        )

    def _remember_join(self, join_id: str, room_id: str, outcome: str) -> None:
        """The latest join's answer, for the tray's notification."""
        descriptor = self.book.descriptor(room_id)
        meeting = self._join_meetings.get(join_id, self.meeting_id or "")
        name = descriptor.name if descriptor is not None else room_id
        self.last_join = JoinOutcome(join_id, name, outcome, meeting)

    # --- actions ------------------------------------------------------------------------------
    def _resolve_phone(self, phone: str | None) -> str:
        nearby = self.nearby()
        if phone is None:
            offered = [n for n in nearby if n.connectable and n.device_id not in self.pairings]
            if not offered:
                paired = [n for n in nearby if n.device_id in self.pairings]
                if paired:
                    raise ControlError(
                        "already_paired",
                        f"{paired[0].name!r} is already paired with this laptop "
                        "(`btogether client pairings`; `client unpair` to undo it)",
                    )
                raise ControlError(
                    "no_phone",
                    "no desk phone of yours is nearby (see `btogether client nearby`)",
                )
            return offered[0].device_id
        names = {n.device_id: n.name for n in nearby}
        names.update((p.phone_id, p.phone_name) for p in self.pairings.values())
        known = list(names.items())
        device_id = _match(known, phone) or phone
        if device_id in self.pairings:
            raise ControlError(
                "already_paired",
                f"{self.pairings[device_id].phone_name!r} is already paired with this laptop",
            )
        near = next((n for n in nearby if n.device_id == device_id), None)
        if near is not None and not near.connectable:
            whose = "your own" if near.own else "another account's or a shared"
            raise ControlError(
                "not_connectable",
                f"{near.name!r} is {whose} {near.kind.replace('_', ' ')}; "
                "only your own personal desk phone can be connected",
            )
        return device_id

    async def pair_start(self, phone: str | None) -> dict[str, Any]:
        """Ask the relay to pair with my desk phone; returns the code both screens show."""
        phone_id = self._resolve_phone(phone)
        result = await self._request(lambda link: link.pair_request(phone_id))
        descriptor = self.book.descriptor(phone_id)
        name = descriptor.name if descriptor is not None else phone_id
        if self.pending is not None and self.pending.request_id == result.request_id:
            self.pending.code = result.code  # the prompt arrived before the reply
        else:
            self.pending = PendingPair(
                result.request_id, phone_id, name, result.code, result.expires_at
            )
        self._log.info("pair_requested", phone_id=phone_id, request_id=result.request_id)
        self._notify()
        return {
            "request_id": result.request_id,
            "code": result.code,
            "phone_id": phone_id,
            "phone_name": self.pending.phone_name,
            "expires_at": result.expires_at,
        }

    async def pair_confirm(self, request_id: str | None, accept: bool) -> dict[str, Any]:
        """Confirm (or decline) the pending pair request on the laptop's side."""
        pending = self.pending
        if request_id is None:
            if pending is None:
                raise ControlError("no_pending", "no pair request is waiting for confirmation")
            request_id = pending.request_id
        result = await self._request(lambda link: link.pair_confirm(request_id, accept))
        if pending is not None and pending.request_id == request_id:
            if accept:
                pending.confirmed_by_me = True
            elif self.pending is pending:
                self.pending = None
        if not accept:
            self._outcomes.put(self._outcomes.pairs, request_id, {"outcome": "declined"})
        self._log.info("pair_confirmed", request_id=request_id, accept=accept, state=result.state)
        self._notify()
        return {"request_id": request_id, "state": result.state}

    async def pair_wait(self, request_id: str, within: float) -> dict[str, Any]:
        """Wait for a pair request to complete or end; outcome ``pending`` if it did not."""
        done = await self._wait_until(lambda: request_id in self._outcomes.pairs, within)
        if not done:
            return {"request_id": request_id, "outcome": "pending"}
        return {"request_id": request_id, **self._outcomes.pairs[request_id]}

    async def list_pairings(self) -> list[dict[str, Any]]:
        if self.link is not None:
            with contextlib.suppress(ControlError):
                await self._request(self._refresh_pairings)
        return [p.model_dump() for p in self.pairings.values()]

    def _paired_phone(self, phone: str | None) -> str:
        if phone is None:
            if len(self.pairings) == 1:
                return next(iter(self.pairings))
            if not self.pairings:
                raise ControlError("not_paired", "this laptop is not paired with a phone")
            raise ControlError("ambiguous", "several phones are paired; say which one")
        found = _match([(p.phone_id, p.phone_name) for p in self.pairings.values()], phone)
        if found is None:
            raise ControlError("not_paired", f"this laptop is not paired with {phone!r}")
        return found

    async def unpair(self, phone: str) -> dict[str, Any]:
        phone_id = self._paired_phone(phone)
        await self._request(lambda link: link.pair_remove(phone_id))
        self.pairings.pop(phone_id, None)
        self._log.info("unpaired", phone_id=phone_id)
        self._notify()
        return {"phone_id": phone_id, "paired": False}

    def _meeting(self, meeting: str | None) -> str:
        chosen = meeting or self.meeting_id
        if not chosen:
            raise ControlError("no_meeting", "say which meeting with --meeting ID")
        if len(chosen) > 128:
            raise ControlError("bad_request", "a meeting id is at most 128 characters")
        self.meeting_id = chosen
        return chosen

    async def audio_on(
        self, phone: str | None, meeting: str | None, wait_s: float = 10.0
    ) -> dict[str, Any]:
        """Make my paired phone the audio device of a meeting; waits for it to take over."""
        phone_id = self._paired_phone(phone)
        meeting_id = self._meeting(meeting)
        result = await self._request(lambda link: link.audio_select(phone_id, meeting_id))
        handoff = self.handoffs.setdefault(
            result.handoff_id, Handoff(result.handoff_id, phone_id, meeting_id)
        )
        handoff.meeting_id = meeting_id
        self._notify()
        await self._wait_until(lambda: handoff.state != "pending", wait_s)
        if handoff.state == "failed":
            raise ControlError(
                "audio_failed", f"the phone could not take over the audio: {handoff.reason}"
            )
        return self._handoff_json(handoff)

    async def audio_off(self, phone: str | None, wait_s: float = 10.0) -> dict[str, Any]:
        phone_id = self._paired_phone(phone) if phone is not None else None
        handoff = self._handoff_of(phone_id)
        if handoff is None:
            raise ControlError("no_audio", "no phone is the audio device now")
        await self._request(lambda link: link.audio_release(handoff.handoff_id))
        await self._wait_until(lambda: handoff.state == "released", wait_s)
        handoff.state = "released"
        self._notify()
        return self._handoff_json(handoff)

    def set_lock_sync(self, enabled: bool) -> dict[str, Any]:
        self.reporter.set_enabled(enabled)
        self.config = self.config.model_copy(update={"lock_sync": enabled})
        if self._save_config is not None:
            self._save_config(self.config)
        self._log.info("lock_sync_set", enabled=enabled)
        self._notify()
        return {"lock_sync": enabled}

    def set_meeting(self, meeting: str | None) -> dict[str, Any]:
        self.meeting_id = self._meeting(meeting) if meeting else None
        self._notify()
        return {"meeting_id": self.meeting_id}

    async def join(
        self, room: str | None, meeting: str | None, wait_s: float = 30.0
    ) -> dict[str, Any]:
        """Add a nearby room to a meeting (proximity join); waits for a prompted room."""
        rooms = [n for n in self.nearby() if n.is_room]
        if room is None:
            if not rooms:
                raise ControlError("no_room", "no room is nearby (see `btogether client nearby`)")
            room_id = rooms[0].device_id
        else:
            found = _match([(n.device_id, n.name) for n in rooms], room, words=True)
            if found is None and not room.startswith("d_"):
                heard = ", ".join(repr(n.name) for n in rooms) or "none"
                raise ControlError(
                    "no_room",
                    f"no room called {room!r} is nearby (nearby: {heard}; "
                    "see `btogether client nearby`)",
                )
            room_id = found or room
        meeting_id = self._meeting(meeting)
        result = await self._request(lambda link: link.join_request(room_id, meeting_id))
        self._join_meetings[result.join_id] = meeting_id
        if result.outcome != "pending":
            self._remember_join(result.join_id, room_id, result.outcome)
        outcome: dict[str, Any] = {
            "join_id": result.join_id,
            "room_id": room_id,
            "meeting_id": meeting_id,
            "outcome": result.outcome,
        }
        if result.outcome == "pending":
            joins = self._outcomes.joins
            if await self._wait_until(lambda: result.join_id in joins, wait_s):
                outcome["outcome"] = joins[result.join_id]["outcome"]
        self._log.info("join_requested", room_id=room_id, outcome=outcome["outcome"])
        self._notify()
        return outcome


class CoreTrayActions:
    """The tray's actions (:class:`client.tray_menu.TrayActions`) carried out by the core."""

    def __init__(self, core: ClientCore, on_quit: Callable[[], None]) -> None:
        self._core = core
        self._on_quit = on_quit

    async def join_room(self, room_id: str) -> None:
        await self._core.join(room_id, None, wait_s=0.0)

    async def connect_phone(self, phone_id: str) -> None:
        await self._core.pair_start(phone_id)

    async def confirm_pairing(self, phone_id: str) -> None:
        await self._core.pair_confirm(None, True)

    async def decline_pairing(self, phone_id: str) -> None:
        await self._core.pair_confirm(None, False)

    async def audio_on(self, phone_id: str) -> None:
        meeting = self._core.meeting_id or DEFAULT_AD_HOC_MEETING
        await self._core.audio_on(phone_id, meeting, wait_s=0.0)

    async def audio_off(self, phone_id: str) -> None:
        await self._core.audio_off(phone_id, wait_s=0.0)

    async def lock_sync(self, enabled: bool) -> None:
        self._core.set_lock_sync(enabled)

    async def unpair(self, phone_id: str) -> None:
        await self._core.unpair(phone_id)

    async def set_meeting(self, meeting_id: str | None) -> None:
        self._core.set_meeting(meeting_id)

    async def quit(self) -> None:
        self._on_quit()
