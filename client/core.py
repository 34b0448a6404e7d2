"""The laptop client's state and decisions, without I/O: inputs and the time in, effects out.

:class:`ClientCore` holds what the laptop knows — its standing with the relay, what it
hears and what the relay said those EIDs are (:class:`client.proximity.nearby.SightingBook`,
:class:`client.proximity.tracker.ProximityTracker`), the screen lock and what the relay still has
to hear of it (:class:`client.lock_report.LockReporter`), pairings, the pair request in
progress, audio hand-offs, the meeting, joins — and turns each input into a list of
:data:`Effect` for the asyncio shell (:mod:`client.daemon`) to carry out in order:

* the relay connection: :meth:`~ClientCore.on_connected`, :meth:`~ClientCore.on_disconnected`,
  :meth:`~ClientCore.on_connect_failed`, pushed events (:meth:`~ClientCore.on_relay_event`)
  and the answers to the requests the core sent (:meth:`~ClientCore.on_reply`);
* the radio (:meth:`~ClientCore.on_scan` and the scanner's state) and the screen lock
  (:meth:`~ClientCore.on_lock` and the watcher's state);
* the user's commands (:meth:`~ClientCore.on_command`, :mod:`client.operations`), each
  answered by an :class:`Answer` with its view (:mod:`client.views`) or a
  :class:`Refusal` — at once, when the relay replies, or when what it waits for happens
  (a pairing completing, a phone taking the audio, a room answering) or its time is up;
* the clock (:meth:`~ClientCore.tick`): every input carries ``now`` (monotonic seconds),
  and whatever is due by then — a sightings report, a lock report to retry, a wait that
  timed out — is done with it; :meth:`~ClientCore.next_deadline` says when to tick next.

Every request to the relay is a :class:`Send` with a ticket (the request's wire id); the
shell answers each with exactly one :meth:`~ClientCore.on_reply`: the result, a
:class:`RelayRefused`, or :class:`Lost`. Requests and pushed events come through one
inbox in the order they arrived, so e.g. a pair prompt that overtakes the reply to the
pair request is one more ordering the core handles, not a race. The shape is that of
websockets' ``protocol.py`` (events in, what to send out) under ``asyncio/connection.py``,
and of :mod:`beacon.core` under :mod:`beacon.daemon`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import structlog

from client.lock_report import LockReporter, LockState
from client.operations import (
    AudioOff,
    AudioOn,
    Command,
    Confirm,
    Connect,
    GetNearby,
    GetStatus,
    GetTrayState,
    Join,
    ListPairings,
    SetLockSync,
    SetMeeting,
    Unpair,
    WaitConnected,
    WaitPair,
)
from client.proximity.nearby import NearbyDevice, SightingBook, rank_nearby
from client.proximity.tracker import ProximityTracker, TrackerConfig
from client.views import (
    AppliedLock,
    ConnectedView,
    HandoffState,
    HandoffView,
    JoinOutcome,
    JoinView,
    LockSyncView,
    LockView,
    MeetingView,
    NearbyEntry,
    NearbyPhone,
    NearbyRoom,
    PairConfirmed,
    PairedPhone,
    PairingCode,
    PairOutcome,
    PairStarted,
    PendingPairing,
    PendingView,
    RelayView,
    ScanView,
    Status,
    TrayState,
    Unpaired,
)
from hw.scanner import AdvertLost, RawAdvert
from relay.protocol import wire
from relay.protocol.frame import decode_manufacturer_data

if TYPE_CHECKING:
    from client.config import ClientConfig

_log = structlog.get_logger(__name__)
M = TypeVar("M", bound=wire.Message)

MAX_REMEMBERED_OUTCOMES = 64
LOCK_RETRY_S = 1.0  # a lock report whose reply timed out on a live connection: again soon
DEFAULT_AD_HOC_MEETING = "ad-hoc"  # the tray's meeting for audio when none is set

# --- replies to the core's requests -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayRefused:
    """The relay answered a request with an error."""

    code: wire.ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Lost:
    """No answer: not connected when it was to be sent, the connection closed, no answer
    in time, or an answer that could not be read."""

    why: Literal["offline", "closed", "timeout", "unreadable"]


Reply = wire.Message | RelayRefused | Lost


class Refusal(Exception):
    """A command the client (``source`` client) or the relay (``source`` relay) refused."""

    def __init__(self, code: str, message: str, source: Literal["client", "relay"] = "client"):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.source = source


# --- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` to the relay (its id is the ticket); then :meth:`ClientCore.on_reply`."""

    request: wire.Request

    @property
    def ticket(self) -> int:
        return self.request.id


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to the command with this token: its view, or a :class:`Refusal`."""

    token: int
    answer: object


@dataclass(frozen=True, slots=True)
class SaveConfig:
    """Write :attr:`ClientCore.config` (lock sync changed)."""


@dataclass(frozen=True, slots=True)
class SaveUnsentLock:
    """Keep the lock state the relay has not confirmed (None: nothing unsent) across restarts."""

    state: LockState | None


@dataclass(frozen=True, slots=True)
class SaveMeeting:
    meeting_id: str | None


Effect = Send | Answer | SaveConfig | SaveUnsentLock | SaveMeeting

# --- state ------------------------------------------------------------------------------------


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

    def view(self) -> HandoffView:
        return HandoffView(
            handoff_id=self.handoff_id,
            phone_id=self.phone_id,
            meeting_id=self.meeting_id,
            state=self.state,
            reason=self.reason,
        )


@dataclass
class _Waiter:
    """A command answered when ``ready`` has an answer, or with ``timeout()`` at ``deadline``."""

    token: int
    deadline: float
    ready: Callable[[], object | None]
    timeout: Callable[[], object]


@dataclass
class _Outcomes:
    """Results of things the user may be waiting for, kept briefly (bounded)."""

    pairs: dict[str, PairOutcome] = field(default_factory=dict)
    joins: dict[str, str] = field(default_factory=dict)  # join id -> outcome

    @staticmethod
    def put(table: dict[str, Any], key: str, value: object) -> None:
        table[key] = value
        while len(table) > MAX_REMEMBERED_OUTCOMES:
            del table[next(iter(table))]


_UNSAVED = object()  # a save that failed: compare unequal to anything, so it is tried again
OnReply = Callable[[Reply, float], list[Effect]]


def match_device(devices: list[tuple[str, str]], wanted: str, *, words: bool = False) -> str | None:
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
        raise Refusal("ambiguous", f"several devices are called {wanted!r}; use the id")
    return matches[0] if matches else None


class ClientCore:
    """The laptop client's state and decisions (see the module docstring).

    ``unsent_lock`` and ``meeting_id`` are what the last run left (:class:`SaveUnsentLock`,
    :class:`SaveMeeting`); ``lock_watch`` False when the screen lock is not watched at all.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        tracker_config: TrackerConfig | None = None,
        lock_watch: bool = True,
        unsent_lock: LockState | None = None,
        meeting_id: str | None = None,
    ) -> None:
        self.config = config
        self.book = SightingBook(config.scan.fresh_s, config.scan.forget_after_s)
        self.tracker = ProximityTracker(tracker_config)
        self.reporter = LockReporter(enabled=config.lock_sync)
        if unsent_lock is not None and config.lock_sync:
            # The last run could not deliver this: it is still the latest news for the relay.
            self.reporter.state, self.reporter.pending = unsent_lock, True
        self._saved_unsent: object = unsent_lock
        self.connected = False
        self.principal: wire.PrincipalInfo | None = None
        self.relay_error: str | None = None
        self.connected_since: float | None = None
        self.reconnects = 0
        self.scan_status = "starting"
        self.scan_mode: str | None = None
        self.lock_status = "starting" if lock_watch else "off"
        self.locked: bool | None = None
        self.lock_session: str | None = None  # which session, and how it was chosen
        self.pairings: dict[str, wire.PairingInfo] = {}
        self.pairings_known = False
        self.pending: PendingPair | None = None
        self.handoffs: dict[str, Handoff] = {}
        self.meeting_id = meeting_id
        self._saved_meeting: object = meeting_id
        self.lock_applied: dict[str, wire.LockApplied] = {}
        self.last_join: JoinOutcome | None = None
        self._join_meetings: dict[str, str] = {}
        self.adverts_heard = 0
        self.reports_sent = 0
        self._outcomes = _Outcomes()
        self._tickets = 0
        self._awaiting: dict[int, OnReply] = {}
        self._waiters: list[_Waiter] = []
        self._next_report_at: float | None = None
        self._report_in_flight = False
        self._lock_retry_at: float | None = None
        self._log = _log.bind(laptop_id=config.laptop_id)

    # --- the clock ------------------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        """The client starts: the first sightings report is due one interval from now."""
        self._next_report_at = now + self.config.scan.report_interval_s
        return self._after(now, [])

    def tick(self, now: float) -> list[Effect]:
        """Nothing happened but time passed: do what is due by ``now``."""
        return self._after(now, [])

    def next_deadline(self) -> float | None:
        """When something falls due if no input comes first (call :meth:`tick` then)."""
        times = [w.deadline for w in self._waiters]
        if self._next_report_at is not None and not self._report_in_flight:
            times.append(self._next_report_at)
        if self._lock_retry_at is not None:
            times.append(self._lock_retry_at)
        return min(times, default=None)

    def _after(self, now: float, out: list[Effect]) -> list[Effect]:
        """What every input ends with: what is due, answers ready, what to keep on disk."""
        if self._lock_retry_at is not None and now >= self._lock_retry_at:
            self._lock_retry_at = None
            out += self._send_lock()
        out += self._report_if_due(now)
        out += self._settle(now)
        return out + self._persist()

    def _settle(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for waiter in list(self._waiters):
            answer = waiter.ready()
            if answer is None and now >= waiter.deadline:
                answer = waiter.timeout()
            if answer is not None:
                self._waiters.remove(waiter)
                out.append(Answer(waiter.token, answer))
        return out

    def _wait(
        self,
        token: int,
        now: float,
        within: float,
        ready: Callable[[], object | None],
        timeout: Callable[[], object],
    ) -> list[Effect]:
        self._waiters.append(_Waiter(token, now + within, ready, timeout))
        return []  # _after settles it, at once if it is ready or ``within`` is 0

    def _persist(self) -> list[Effect]:
        out: list[Effect] = []
        r = self.reporter
        unsent = r.in_flight or (r.state if r.pending else None)
        if unsent != self._saved_unsent:
            self._saved_unsent = unsent
            out.append(SaveUnsentLock(unsent))
        if self.meeting_id != self._saved_meeting:
            self._saved_meeting = self.meeting_id
            out.append(SaveMeeting(self.meeting_id))
        return out

    def not_saved(self, effect: SaveUnsentLock | SaveMeeting) -> None:
        """Writing ``effect`` failed: it is tried again after the next input."""
        if isinstance(effect, SaveUnsentLock):
            self._saved_unsent = _UNSAVED
        else:
            self._saved_meeting = _UNSAVED

    # --- the relay connection -------------------------------------------------------------------
    def on_connected(self, welcome: wire.Welcome, now: float) -> list[Effect]:
        self.connected = True
        self.principal = welcome.principal
        self.relay_error = None
        self.connected_since = now
        self.reconnects += 1
        self._log.info(
            "relay_connected",
            url=self.config.relay_url,
            tenant_id=self.principal.tenant_id,
            user_id=self.principal.user_id,
        )
        self._resync_handoffs(set(welcome.handoffs))

        # Pairings first: whether a lock change goes to the relay depends on them.
        def refreshed(reply: Reply, now: float) -> list[Effect]:
            self._take_pairings(reply)
            return self._send_lock()

        return self._after(now, [self._send(wire.PairingsList, refreshed)])

    def on_disconnected(self, code: int | None, reason: str, now: float) -> list[Effect]:
        self.connected = False
        self.connected_since = None
        if code == wire.CloseCode.REPLACED:
            message = "another client with this laptop id connected to the relay"
        else:
            message = f"the relay closed the connection ({code}) {reason}".strip()
        self._log.warning("relay_disconnected", code=code, reason=reason)
        self._set_relay_error(message)
        return self._after(now, [])

    def on_connect_failed(self, message: str, now: float) -> list[Effect]:
        """Connecting failed; ``message`` says why, for the user (``status``)."""
        self._set_relay_error(message)
        return self._after(now, [])

    def on_login(self, config: ClientConfig, now: float) -> list[Effect]:
        """A new ``client login``: its relay URL, CA file and name (the shell reconnects)."""
        self.config = self.config.model_copy(
            update={k: getattr(config, k) for k in ("relay_url", "ca_file", "laptop_name")}
        )
        self._log.info("login_changed", url=self.config.relay_url)
        return self._after(now, [])

    def _set_relay_error(self, message: str) -> None:
        if message != self.relay_error:
            self._log.warning("relay_unreachable", error=message)
        self.relay_error = message

    def _resync_handoffs(self, held: set[str]) -> None:
        """After a (re)connect: a hand-off the relay no longer holds has ended (the relay
        restarted, or the phone gave the audio back while we were away)."""
        for handoff in self.handoffs.values():
            if handoff.state in ("pending", "active") and handoff.handoff_id not in held:
                handoff.state = "released"
                handoff.reason = "the relay no longer holds this hand-off (it restarted?)"
                self._log.info("audio_state_resynced", handoff_id=handoff.handoff_id)

    def _take_pairings(self, reply: Reply) -> None:
        """The relay's list of this laptop's pairings; a failure leaves what was known."""
        if isinstance(reply, wire.PairingsResult):
            self.pairings = {p.phone_id: p for p in reply.pairings}
            self.pairings_known = True

    def _paired(self) -> bool | None:
        return bool(self.pairings) if self.pairings_known else None

    # --- requests and their replies -------------------------------------------------------------
    def _send(self, kind: type[wire.Request], on_reply: OnReply, **fields: Any) -> Send:
        self._tickets += 1
        self._awaiting[self._tickets] = on_reply
        return Send(kind(id=self._tickets, **fields))

    def on_reply(self, ticket: int, reply: Reply, now: float) -> list[Effect]:
        """How the request with this ticket ended (each :class:`Send` gets one)."""
        on_reply = self._awaiting.pop(ticket, None)
        if on_reply is None:
            self._log.warning("reply_unexpected", ticket=ticket)
            return self._after(now, [])
        return self._after(now, on_reply(reply, now))

    def _ask_relay(
        self,
        token: int,
        kind: type[wire.Request],
        result_type: type[M],
        on_result: Callable[[M, float], list[Effect]],
        **fields: Any,
    ) -> list[Effect]:
        """A request on behalf of a command: a failure answers the command with a refusal."""
        if not self.connected:
            detail = f": {self.relay_error}" if self.relay_error else ""
            raise Refusal("relay_unreachable", f"not connected to the relay{detail}")

        def replied(reply: Reply, now: float) -> list[Effect]:
            if isinstance(reply, RelayRefused | Lost):
                return [Answer(token, self._refusal(reply))]
            if not isinstance(reply, result_type):
                why = f"the relay answered {kind.__name__} with {type(reply).__name__}"
                return [Answer(token, Refusal("bad_reply", why))]
            try:
                return on_result(reply, now)
            except Refusal as refusal:
                return [Answer(token, refusal)]

        return [self._send(kind, replied, **fields)]

    def _refusal(self, reply: RelayRefused | Lost) -> Refusal:
        if isinstance(reply, RelayRefused):
            return Refusal(reply.code.value, reply.message, "relay")
        if reply.why == "timeout":
            return Refusal("timeout", "the relay did not answer in time")
        if reply.why == "unreadable":
            return Refusal("bad_reply", "the relay's answer could not be read")
        if reply.why == "closed":
            return Refusal(
                "relay_unreachable", "the connection to the relay closed before it answered"
            )
        detail = f": {self.relay_error}" if self.relay_error else ""
        return Refusal("relay_unreachable", f"not connected to the relay{detail}")

    # --- pushed events ------------------------------------------------------------------------
    def on_relay_event(self, event: wire.Event, now: float) -> list[Effect]:
        if isinstance(event, wire.PairPrompt):
            self._pair_prompt(event)
        elif isinstance(event, wire.PairCompleted):
            pairing = event.pairing
            if pairing.laptop_id == self.config.laptop_id:
                self.pairings[pairing.phone_id] = pairing
                self.pairings_known = True
            if self.pending is not None and self.pending.request_id == event.request_id:
                self.pending = None
            outcome = PairOutcome(request_id=event.request_id, outcome="paired", pairing=pairing)
            self._outcomes.put(self._outcomes.pairs, event.request_id, outcome)
            self._log.info("pairing_completed", phone_id=pairing.phone_id)
        elif isinstance(event, wire.PairEnded):
            if self.pending is not None and self.pending.request_id == event.request_id:
                self.pending = None
            outcome = PairOutcome(request_id=event.request_id, outcome=event.reason)
            self._outcomes.put(self._outcomes.pairs, event.request_id, outcome)
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
            self._outcomes.put(self._outcomes.joins, event.join_id, event.outcome)
            self._log.info("join_result", room_id=event.room_id, outcome=event.outcome)
        return self._after(now, [])

    def _pair_prompt(self, event: wire.PairPrompt) -> None:
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

    def _remember_join(self, join_id: str, room_id: str, outcome: str) -> None:
        """The latest join's answer, for the tray's notification."""
        descriptor = self.book.descriptor(room_id)
        meeting = self._join_meetings.get(join_id, self.meeting_id or "")
        name = descriptor.name if descriptor is not None else room_id
        self.last_join = JoinOutcome(
            join_id=join_id, room_name=name, outcome=outcome, meeting_id=meeting
        )

    # --- the radio ------------------------------------------------------------------------------
    def on_scan(self, event: RawAdvert | AdvertLost, now: float) -> list[Effect]:
        if isinstance(event, AdvertLost):
            # The book and the tracker age devices out on their own, unless the scanner
            # only hears changes (passive): then this is the only word that one is gone.
            for gone in self.book.lost(event.address):
                self.tracker.forget(gone)
            return self._after(now, [])
        frame = decode_manufacturer_data(event.manufacturer_data, self.config.scan.company_id)
        if frame is not None:
            self.adverts_heard += 1
            device_id = self.book.heard(
                frame.eid, event.rssi, frame.tx_power, event.monotonic, event.address
            )
            if device_id is not None:
                self.tracker.observe(device_id, event.rssi, frame.tx_power, event.monotonic)
        return self._after(now, [])

    def on_scan_started(
        self, mode: str | None, reports_every_advert: bool, now: float
    ) -> list[Effect]:
        self.scan_status = "scanning"
        self.scan_mode = mode
        held = not reports_every_advert
        self.book.hold_until_lost = self.tracker.hold_until_lost = held
        self._log.info("scan_started", mode=mode)
        return self._after(now, [])

    def on_scan_failed(self, error: str, now: float) -> list[Effect]:
        """Scanning could not start (the shell tries again)."""
        if self.scan_status != f"unavailable: {error}":
            self._log.warning("scan_unavailable", error=error)
        self.scan_status = f"unavailable: {error}"
        return self._after(now, [])

    def _report_if_due(self, now: float) -> list[Effect]:
        due = self._next_report_at
        if due is None or now < due or self._report_in_flight:
            return []
        self._next_report_at = now + self.config.scan.report_interval_s
        if not self.connected:
            return []
        batch = self.book.batch(now)
        if not batch:
            return []
        self._report_in_flight = True
        sightings = [wire.Sighting(eid=eid.hex(), rssi=rssi) for eid, rssi in batch]

        def reported(reply: Reply, now: float) -> list[Effect]:
            self._report_in_flight = False
            # The next report one interval after this reply, as a loop that awaits it would.
            self._next_report_at = now + self.config.scan.report_interval_s
            if isinstance(reply, RelayRefused):
                self._log.warning("sightings_refused", code=reply.code.value, error=reply.message)
            elif isinstance(reply, wire.SightingsResult):
                self.reports_sent += 1
                new = self.book.resolved(batch, reply.devices, now)
                if new:
                    self._log.info("devices_resolved", device_ids=new)
            return []

        return [self._send(wire.SightingsReport, reported, sightings=sightings)]

    # --- the screen lock ------------------------------------------------------------------------
    def on_lock_watch_started(self, session: str | None, now: float) -> list[Effect]:
        self.lock_status = "watching"
        self.lock_session = session
        return self._after(now, [])

    def on_lock_watch_failed(self, error: str, now: float) -> list[Effect]:
        """The watcher could not start (the shell tries again)."""
        if self.lock_status != f"unavailable: {error}":
            self._log.warning("lock_watch_unavailable", error=error)
        self.lock_status = f"unavailable: {error}"
        return self._after(now, [])

    def on_lock_watch_ended(self, now: float) -> list[Effect]:
        """The watcher stopped (its bus went away, say); the shell starts it again."""
        self.lock_status = "restarting"
        return self._after(now, [])

    def on_lock(self, locked: bool, initial: bool, now: float) -> list[Effect]:
        """The screen locked or unlocked; ``initial`` for the state read when watching starts."""
        self.locked = locked
        self.reporter.observed(locked, initial=initial, paired=self._paired())
        self._log.info(
            "screen_lock_seen", locked=locked, initial=initial, will_report=self.reporter.pending
        )
        return self._after(now, self._send_lock())

    def _send_lock(self) -> list[Effect]:
        """Report the lock state the relay has not heard yet, one at a time."""
        if self._lock_retry_at is not None:
            return []
        state = self.reporter.next_to_send(connected=self.connected, paired=self._paired())
        if state is None:
            return []

        def reported(reply: Reply, now: float) -> list[Effect]:
            if isinstance(reply, RelayRefused):
                if reply.code == wire.ErrorCode.NOT_PAIRED:
                    self.pairings.clear()
                    self.reporter.finished(state, "not_paired", reply.message)
                else:
                    detail = f"{reply.code.value}: {reply.message}"
                    self.reporter.finished(state, "refused", detail)
                self._log.warning("lock_report_refused", state=state, code=reply.code.value)
            elif isinstance(reply, Lost):
                self.reporter.finished(state, "connection_lost")
                self._log.info("lock_report_deferred", state=state)
                if reply.why == "timeout" and self.connected:
                    self._lock_retry_at = now + LOCK_RETRY_S
                return []  # else the next connection sends it
            elif isinstance(reply, wire.LockSetResult):
                self.reporter.finished(state, "confirmed")
                phones = [p.phone_id for p in reply.phones]
                self._log.info("lock_reported", state=state, phones=phones)
            return self._send_lock()

        return [self._send(wire.LockSet, reported, state=state)]

    # --- the user's commands --------------------------------------------------------------------
    def on_command(self, token: int, command: Command[Any], now: float) -> list[Effect]:
        """A command (:mod:`client.operations`); it is answered by an :class:`Answer` with
        ``token``, now or later."""
        try:
            out = self._command(token, command, now)
        except Refusal as refusal:
            out = [Answer(token, refusal)]
        return self._after(now, out)

    def _command(self, token: int, command: Command[Any], now: float) -> list[Effect]:
        match command:
            case GetStatus():
                return [Answer(token, self.status(now))]
            case GetNearby():
                return [Answer(token, self.nearby_entries(now))]
            case GetTrayState():
                return [Answer(token, self.tray_state(now))]
            case Connect(phone=phone):
                return self._connect(token, phone, now)
            case Confirm(request_id=request_id, accept=accept):
                return self._confirm(token, request_id, accept)
            case WaitPair(request_id=request_id, timeout=within):
                pairs = self._outcomes.pairs
                return self._wait(
                    token,
                    now,
                    within,
                    lambda: pairs.get(request_id),
                    lambda: PairOutcome(request_id=request_id, outcome="pending"),
                )
            case ListPairings():
                return self._list_pairings(token)
            case Unpair(phone=phone):
                return self._unpair(token, phone)
            case AudioOn(phone=phone, meeting=meeting, wait=within):
                return self._audio_on(token, phone, meeting, within)
            case AudioOff(phone=phone, wait=within):
                return self._audio_off(token, phone, within)
            case SetLockSync(enabled=enabled):
                self.reporter.set_enabled(enabled)
                self.config = self.config.model_copy(update={"lock_sync": enabled})
                self._log.info("lock_sync_set", enabled=enabled)
                return [SaveConfig(), Answer(token, LockSyncView(lock_sync=enabled))]
            case SetMeeting(meeting=meeting):
                self.meeting_id = self._meeting(meeting) if meeting else None
                return [Answer(token, MeetingView(meeting_id=self.meeting_id))]
            case Join(room=room, meeting=meeting, wait=within):
                return self._join(token, room, meeting, within, now)
            case WaitConnected(timeout=within):
                return self._wait(
                    token,
                    now,
                    within,
                    lambda: ConnectedView(connected=True, error=None) if self.connected else None,
                    lambda: ConnectedView(connected=False, error=self.relay_error),
                )
        raise Refusal("unsupported", f"the client does not carry out {command.op!r} itself")

    def _resolve_phone(self, phone: str | None, now: float) -> str:
        nearby = self.nearby(now)
        if phone is None:
            offered = [n for n in nearby if n.connectable and n.device_id not in self.pairings]
            if not offered:
                paired = [n for n in nearby if n.device_id in self.pairings]
                if paired:
                    raise Refusal(
                        "already_paired",
                        f"{paired[0].name!r} is already paired with this laptop "
                        "(`btogether client pairings`; `client unpair` to undo it)",
                    )
                raise Refusal(
                    "no_phone",
                    "no desk phone of yours is nearby (see `btogether client nearby`)",
                )
            return offered[0].device_id
        names = {n.device_id: n.name for n in nearby}
        names.update((p.phone_id, p.phone_name) for p in self.pairings.values())
        device_id = match_device(list(names.items()), phone) or phone
        if device_id in self.pairings:
            raise Refusal(
                "already_paired",
                f"{self.pairings[device_id].phone_name!r} is already paired with this laptop",
            )
        near = next((n for n in nearby if n.device_id == device_id), None)
        if near is not None and not near.connectable:
            whose = "your own" if near.own else "another account's or a shared"
            raise Refusal(
                "not_connectable",
                f"{near.name!r} is {whose} {near.kind.replace('_', ' ')}; "
                "only your own personal desk phone can be connected",
            )
        return device_id

    def _connect(self, token: int, phone: str | None, now: float) -> list[Effect]:
        phone_id = self._resolve_phone(phone, now)

        def started(result: wire.PairRequestResult, now: float) -> list[Effect]:
            pending = self.pending
            if pending is not None and pending.request_id == result.request_id:
                pending.code = result.code  # the prompt came in before this reply
            else:
                descriptor = self.book.descriptor(phone_id)
                name = descriptor.name if descriptor is not None else phone_id
                pending = PendingPair(
                    result.request_id, phone_id, name, result.code, result.expires_at
                )
                self.pending = pending
            self._log.info("pair_requested", phone_id=phone_id, request_id=result.request_id)
            view = PairStarted(
                request_id=result.request_id,
                code=result.code,
                phone_id=phone_id,
                phone_name=pending.phone_name,
                expires_at=result.expires_at,
            )
            return [Answer(token, view)]

        return self._ask_relay(
            token, wire.PairRequest, wire.PairRequestResult, started, phone_id=phone_id
        )

    def _confirm(self, token: int, request_id: str | None, accept: bool) -> list[Effect]:
        pending = self.pending
        if request_id is None:
            if pending is None:
                raise Refusal("no_pending", "no pair request is waiting for confirmation")
            request_id = pending.request_id
        confirming = request_id

        def confirmed(result: wire.PairConfirmResult, now: float) -> list[Effect]:
            if pending is not None and pending.request_id == confirming:
                if accept:
                    pending.confirmed_by_me = True
                elif self.pending is pending:
                    self.pending = None
            if not accept:
                declined = PairOutcome(request_id=confirming, outcome="declined")
                self._outcomes.put(self._outcomes.pairs, confirming, declined)
            self._log.info(
                "pair_confirmed", request_id=confirming, accept=accept, state=result.state
            )
            return [Answer(token, PairConfirmed(request_id=confirming, state=result.state))]

        return self._ask_relay(
            token,
            wire.PairConfirm,
            wire.PairConfirmResult,
            confirmed,
            request_id=request_id,
            accept=accept,
        )

    def _list_pairings(self, token: int) -> list[Effect]:
        if not self.connected:
            return [Answer(token, list(self.pairings.values()))]

        def listed(reply: Reply, now: float) -> list[Effect]:
            self._take_pairings(reply)
            return [Answer(token, list(self.pairings.values()))]

        return [self._send(wire.PairingsList, listed)]

    def _paired_phone(self, phone: str | None) -> str:
        if phone is None:
            if len(self.pairings) == 1:
                return next(iter(self.pairings))
            if not self.pairings:
                raise Refusal("not_paired", "this laptop is not paired with a phone")
            raise Refusal("ambiguous", "several phones are paired; say which one")
        paired = [(p.phone_id, p.phone_name) for p in self.pairings.values()]
        found = match_device(paired, phone)
        if found is None:
            raise Refusal("not_paired", f"this laptop is not paired with {phone!r}")
        return found

    def _unpair(self, token: int, phone: str) -> list[Effect]:
        phone_id = self._paired_phone(phone)

        def removed(result: wire.Done, now: float) -> list[Effect]:
            self.pairings.pop(phone_id, None)
            self._log.info("unpaired", phone_id=phone_id)
            return [Answer(token, Unpaired(phone_id=phone_id))]

        return self._ask_relay(token, wire.PairRemove, wire.Done, removed, peer_id=phone_id)

    def _meeting(self, meeting: str | None) -> str:
        chosen = meeting or self.meeting_id
        if not chosen:
            raise Refusal("no_meeting", "say which meeting with --meeting ID")
        if len(chosen) > 128:
            raise Refusal("bad_request", "a meeting id is at most 128 characters")
        self.meeting_id = chosen
        return chosen

    def _handoff_of(self, phone_id: str | None = None) -> Handoff | None:
        for handoff in reversed(self.handoffs.values()):
            if handoff.state in ("pending", "active") and phone_id in (None, handoff.phone_id):
                return handoff
        return None

    def _audio_on(
        self, token: int, phone: str | None, meeting: str | None, within: float
    ) -> list[Effect]:
        phone_id = self._paired_phone(phone)
        meeting_id = self._meeting(meeting)

        def selected(result: wire.AudioSelectResult, now: float) -> list[Effect]:
            handoff = self.handoffs.setdefault(
                result.handoff_id, Handoff(result.handoff_id, phone_id, meeting_id)
            )
            handoff.meeting_id = meeting_id

            def answer() -> object:
                if handoff.state == "failed":
                    return Refusal(
                        "audio_failed",
                        f"the phone could not take over the audio: {handoff.reason}",
                    )
                return handoff.view()

            return self._wait(
                token,
                now,
                within,
                lambda: answer() if handoff.state != "pending" else None,
                answer,
            )

        return self._ask_relay(
            token,
            wire.AudioSelect,
            wire.AudioSelectResult,
            selected,
            phone_id=phone_id,
            meeting_id=meeting_id,
        )

    def _audio_off(self, token: int, phone: str | None, within: float) -> list[Effect]:
        phone_id = self._paired_phone(phone) if phone is not None else None
        handoff = self._handoff_of(phone_id)
        if handoff is None:
            raise Refusal("no_audio", "no phone is the audio device now")

        def released(result: wire.Done, now: float) -> list[Effect]:
            def given_back() -> HandoffView:
                handoff.state = "released"  # the relay took it back, whatever the phone says
                return handoff.view()

            return self._wait(
                token,
                now,
                within,
                lambda: handoff.view() if handoff.state == "released" else None,
                given_back,
            )

        return self._ask_relay(
            token, wire.AudioRelease, wire.Done, released, handoff_id=handoff.handoff_id
        )

    def _join(
        self, token: int, room: str | None, meeting: str | None, within: float, now: float
    ) -> list[Effect]:
        rooms = [n for n in self.nearby(now) if n.is_room]
        if room is None:
            if not rooms:
                raise Refusal("no_room", "no room is nearby (see `btogether client nearby`)")
            room_id = rooms[0].device_id
        else:
            found = match_device([(n.device_id, n.name) for n in rooms], room, words=True)
            if found is None and not room.startswith("d_"):
                heard = ", ".join(repr(n.name) for n in rooms) or "none"
                raise Refusal(
                    "no_room",
                    f"no room called {room!r} is nearby (nearby: {heard}; "
                    "see `btogether client nearby`)",
                )
            room_id = found or room
        meeting_id = self._meeting(meeting)

        def requested(result: wire.JoinRequestResult, now: float) -> list[Effect]:
            join_id = result.join_id
            self._join_meetings[join_id] = meeting_id
            if result.outcome != "pending":
                self._remember_join(join_id, room_id, result.outcome)

            def view(outcome: str) -> JoinView:
                self._log.info("join_requested", room_id=room_id, outcome=outcome)
                return JoinView(
                    join_id=join_id, room_id=room_id, meeting_id=meeting_id, outcome=outcome
                )

            if result.outcome != "pending":
                return [Answer(token, view(result.outcome))]
            joins = self._outcomes.joins
            return self._wait(
                token,
                now,
                within,
                lambda: view(joins[join_id]) if join_id in joins else None,
                lambda: view("pending"),
            )

        return self._ask_relay(
            token,
            wire.JoinRequest,
            wire.JoinRequestResult,
            requested,
            room_id=room_id,
            meeting_id=meeting_id,
        )

    # --- views ------------------------------------------------------------------------------
    def nearby(self, now: float) -> list[NearbyDevice]:
        """Rooms and phones heard and resolved, nearest first."""
        descriptors = {d.device_id: d for d in self.book.descriptors()}
        return rank_nearby(self.tracker.ranking(now), descriptors)

    def nearby_entries(self, now: float) -> list[NearbyEntry]:
        return [
            NearbyEntry(
                device_id=n.device_id,
                name=n.name,
                kind=n.kind,
                mode=n.mode,
                location=n.location,
                own=n.own,
                connectable=n.connectable and n.device_id not in self.pairings,
                paired=n.device_id in self.pairings,
                distance_m=round(n.distance_m, 2),
                rssi=round(n.rssi, 1),
                age_s=round(max(0.0, now - n.last_seen), 2),
            )
            for n in self.nearby(now)
        ]

    def status(self, now: float) -> Status:
        principal = self.principal
        handoff = self._handoff_of()
        pending = self.pending
        r = self.reporter
        return Status(
            laptop_id=self.config.laptop_id,
            laptop_name=self.config.laptop_name,
            relay=RelayView(
                url=self.config.relay_url,
                connected=self.connected,
                error=self.relay_error,
                connections=self.reconnects,
                tenant_id=principal.tenant_id if principal else None,
                user_id=principal.user_id if principal else None,
            ),
            scan=ScanView(
                status=self.scan_status,
                mode=self.scan_mode,
                adverts_heard=self.adverts_heard,
                reports_sent=self.reports_sent,
                nearby=len(self.nearby(now)),
            ),
            lock=LockView(
                watch=self.lock_status,
                session=self.lock_session,
                locked=self.locked,
                sync=r.enabled,
                unsent=r.pending or r.in_flight is not None,
                last_reported=r.last_confirmed,
                last_error=r.last_error,
                applied={
                    phone_id: AppliedLock(seq=e.seq, state=e.state)
                    for phone_id, e in self.lock_applied.items()
                },
            ),
            pairings=list(self.pairings.values()),
            pending=None
            if pending is None
            else PendingView(
                request_id=pending.request_id,
                phone_id=pending.phone_id,
                phone_name=pending.phone_name,
                code=pending.code,
                expires_at=pending.expires_at,
                confirmed_by_me=pending.confirmed_by_me,
            ),
            audio=handoff.view() if handoff else None,
            meeting_id=self.meeting_id,
        )

    def tray_state(self, now: float) -> TrayState:
        nearby = self.nearby(now)
        pending = self.pending
        handoff = self._handoff_of()
        return TrayState(
            relay_connected=self.connected,
            rooms=tuple(
                NearbyRoom(room_id=n.device_id, name=n.name, distance_m=n.distance_m)
                for n in nearby
                if n.is_room
            ),
            phones=tuple(
                NearbyPhone(phone_id=n.device_id, name=n.name, distance_m=n.distance_m)
                for n in nearby
                if n.connectable
            ),
            paired=tuple(
                PairedPhone(phone_id=p.phone_id, name=p.phone_name) for p in self.pairings.values()
            ),
            pending=(
                PendingPairing(
                    phone_id=pending.phone_id,
                    name=f"{pending.phone_name} (code {pending.code})",
                    needs_my_confirmation=not pending.confirmed_by_me,
                )
                if pending is not None
                else None
            ),
            lock_sync=self.reporter.enabled,
            audio_phone_id=handoff.phone_id if handoff is not None else None,
            meeting_id=self.meeting_id,
            pairing_code=(
                PairingCode(
                    request_id=pending.request_id, phone_name=pending.phone_name, code=pending.code
                )
                if pending is not None and pending.code
                else None
            ),
            last_join=self.last_join,
        )
