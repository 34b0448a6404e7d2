"""The beacon daemon's decisions, without I/O: relay events and local input in, actions out.

:class:`BeaconCore` holds what the device knows (its standing at the relay, pending
prompts, the last lock command applied, the audio hand-off, the last meeting) and turns
each input — a relay event, the end of a lock or audio operation, a local confirmation,
a clock tick — into a list of :class:`Action` for the asyncio shell (:mod:`beacon.daemon`)
to carry out in order.  Time arrives as an argument; randomness (login codes) is a
``random.Random`` given at construction.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog
from pydantic import ValidationError

from beacon.memory import DaemonMemory
from beacon.status import (
    DeviceStatus,
    effective_auto_confirm,
    legacy_status,
    should_advertise,
    status_from_fields,
)
from relay.protocol import wire
from relay.protocol.login_code import LOGIN_CODE_KEEP_S, generate_login_code

_log = structlog.get_logger(__name__)

# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyLock:
    seq: int
    state: wire.LockState
    laptop_id: str


@dataclass(frozen=True, slots=True)
class AckLock:
    seq: int


@dataclass(frozen=True, slots=True)
class TakeAudio:
    handoff_id: str
    meeting_id: str
    laptop_id: str


@dataclass(frozen=True, slots=True)
class ReleaseAudio:
    """Give the audio back; ``ack`` False when the relay already forgot the hand-off."""

    handoff_id: str
    meeting_id: str
    reason: str
    ack: bool = True


@dataclass(frozen=True, slots=True)
class AckAudio:
    handoff_id: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ConfirmPair:
    request_id: str
    accept: bool


@dataclass(frozen=True, slots=True)
class RespondJoin:
    join_id: str
    accept: bool


@dataclass(frozen=True, slots=True)
class ReportLoginCode:
    request_id: str
    code: str


@dataclass(frozen=True, slots=True)
class Advertise:
    on: bool


@dataclass(frozen=True, slots=True)
class RunHook:
    hook: str
    details: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Remember:
    """Write :attr:`BeaconCore.memory` to disk before going on."""


@dataclass(frozen=True, slots=True)
class Show:
    """A line for whoever watches the device's console (stdout)."""

    text: str


Action = (
    ApplyLock
    | AckLock
    | TakeAudio
    | ReleaseAudio
    | AckAudio
    | ConfirmPair
    | RespondJoin
    | ReportLoginCode
    | Advertise
    | RunHook
    | Remember
    | Show
)

# --- state ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompt:
    """A pair or join prompt waiting for someone at the device (or for auto-confirm)."""

    kind: Literal["pair", "join"]
    prompt_id: str
    user_name: str
    expires_at: float  # relay time
    code: str | None = None
    laptop_name: str | None = None
    meeting_id: str | None = None

    def as_dict(self, relay_now: float | None) -> dict[str, object]:
        """The prompt for status output; with ``relay_now``, also the seconds it has left."""
        out: dict[str, object] = {
            "kind": self.kind,
            "id": self.prompt_id,
            "user_name": self.user_name,
            "code": self.code,
            "laptop_name": self.laptop_name,
            "meeting_id": self.meeting_id,
            "expires_at": self.expires_at,
        }
        if relay_now is not None:
            out["expires_in_s"] = round(max(0.0, self.expires_at - relay_now), 1)
        return out


@dataclass(frozen=True, slots=True)
class Handoff:
    handoff_id: str
    meeting_id: str
    laptop_id: str


class ControlError(ValueError):
    """A local request that cannot be carried out; the message is for the person asking."""


@dataclass
class BeaconCore:
    device_id: str
    organisation: str
    memory: DaemonMemory
    rng: random.Random
    auto_confirm_override: bool | None = None
    connected: bool = False
    clock_offset: float = 0.0  # relay time minus local time, from the last welcome
    status: DeviceStatus | None = None
    prompts: dict[str, Prompt] = field(default_factory=dict)
    handoff: Handoff | None = None
    last_join: dict[str, str] | None = None
    login_code: str | None = None
    login_code_at: float = 0.0
    unapplied_lock: ApplyLock | None = None
    advertising: bool = False
    _status_seen: bool = False
    _welcome_user: str | None = None
    _welcome_at: float = 0.0

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = self.memory.status

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> list[Action]:
        """On daemon start: go on beaconing as the last known status says."""
        return self._advertising_actions()

    def on_welcome(self, welcome: wire.Welcome, now: float) -> list[Action]:
        self.connected = True
        self.clock_offset = welcome.server_time - now
        self._status_seen = False
        self._welcome_user = welcome.principal.user_id
        self._welcome_at = now
        # The relay re-sends every pair prompt that is still pending; keep only joins.
        self.prompts = {k: p for k, p in self.prompts.items() if p.kind == "join"}
        return [Show(f"connected device={self.device_id}")]

    def on_disconnect(self, reason: str) -> list[Action]:
        """The relay is gone; it ends our audio hand-off when it notices, so do the same."""
        self.connected = False
        out: list[Action] = [Show(f"disconnected {reason}".rstrip())]
        if self.handoff is not None:
            handoff, self.handoff = self.handoff, None
            out.append(
                ReleaseAudio(handoff.handoff_id, handoff.meeting_id, "relay connection lost", False)
            )
            out.append(self._hook("on_audio_release", handoff_id=handoff.handoff_id,
                                  meeting_id=handoff.meeting_id, reason="relay connection lost"))
        return out

    def tick(self, now: float, status_grace_s: float = 1.0) -> list[Action]:
        """Expire prompts; fall back to the welcome if the relay never sends device.state."""
        out: list[Action] = []
        relay_now = now + self.clock_offset
        for prompt in list(self.prompts.values()):
            if prompt.expires_at <= relay_now:
                del self.prompts[prompt.prompt_id]
                out.append(Show(f"{prompt.kind}-expired {prompt.prompt_id}"))
        if self.connected and not self._status_seen and now - self._welcome_at >= status_grace_s:
            self._status_seen = True
            _log.info("device_state_not_sent_using_welcome", user_id=self._welcome_user)
            out += self._set_status(legacy_status(self._welcome_user, self.organisation))
        return out

    # --- relay events ------------------------------------------------------------------
    def on_event(self, event: wire.Event, now: float) -> list[Action]:
        if isinstance(event, wire.LockCommand):
            return self._lock_command(event)
        if isinstance(event, wire.AudioCommand):
            return self._audio_command(event)
        if isinstance(event, wire.PairPrompt):
            return self._pair_prompt(event, now)
        if isinstance(event, wire.PairCompleted):
            laptop = event.pairing.laptop_name
            return self._prompt_over("pair", event.request_id, "completed", laptop)
        if isinstance(event, wire.PairEnded):
            return self._prompt_over("pair", event.request_id, event.reason, None)
        if isinstance(event, wire.PairRemoved):
            return [Show(f"unpaired laptop={event.laptop_id}")]
        if isinstance(event, wire.JoinPrompt):
            return self._join_prompt(event, now)
        if isinstance(event, wire.JoinCommand):
            return self._join_command(event, now)
        if isinstance(event, wire.DeviceStateEvent):
            return self._device_state(event.model_dump())
        if isinstance(event, wire.LoginCodeRequest):
            return self._login_code_request(event.request_id, now)
        _log.info("relay_event_ignored", type=event.type)
        return []

    def _device_state(self, fields: Mapping[str, object]) -> list[Action]:
        try:
            status = status_from_fields(fields)
        except ValidationError as exc:
            _log.warning("device_state_invalid", error=str(exc)[:200])
            return []
        first = not self._status_seen
        self._status_seen = True
        return self._set_status(status, announce=first)

    def _set_status(self, status: DeviceStatus, *, announce: bool = True) -> list[Action]:
        """Adopt the relay's view; show it on each connection, hook and remember changes."""
        changed = status != self.status
        self.status = status
        out: list[Action] = []
        if changed or announce:
            out.append(
                Show(
                    f"state {status.state} organisation={status.organisation or '-'} "
                    f"user={status.user_name or '-'} "
                    f"beaconing={'yes' if status.beaconing else 'no'}"
                )
            )
        if changed:
            self.memory = self.memory.model_copy(update={"status": status})
            out += [
                Remember(),
                self._hook("on_state", state=status.state, organisation=status.organisation,
                           user_name=status.user_name or "",
                           beaconing="1" if status.beaconing else "0"),
            ]
            if status.state != "waiting_for_sign_in":
                self.login_code = None
        return out + self._advertising_actions()

    def _advertising_actions(self) -> list[Action]:
        wanted = should_advertise(self.status)
        if wanted == self.advertising:
            return []
        self.advertising = wanted
        return [Advertise(wanted)]

    def _login_code_request(self, request_id: str, now: float) -> list[Action]:
        # The code on the screen stays while it is young, whoever asks (an administrator, or
        # the relay for the device login page): two asks at once must not leave the relay
        # holding a code the screen no longer shows.
        if self.login_code is None or now - self.login_code_at >= LOGIN_CODE_KEEP_S:
            self.login_code, _normalised = generate_login_code(self.rng)
            self.login_code_at = now
        code = self.login_code
        _log.info("login_code_shown", request_id=request_id)
        return [
            ReportLoginCode(request_id, code),
            Show(f"login-code {code}"),
            self._hook("on_login_code", login_code=code, request_id=request_id),
        ]

    def _lock_command(self, command: wire.LockCommand) -> list[Action]:
        if command.seq <= self.memory.last_lock_seq:
            # Applied before (perhaps before a restart): acknowledge, never apply it again.
            _log.info("lock_command_stale", seq=command.seq, last=self.memory.last_lock_seq)
            return [AckLock(command.seq)]
        apply = ApplyLock(command.seq, command.state, command.laptop_id)
        self.unapplied_lock = apply
        return [apply]

    def lock_applied(self, apply: ApplyLock, confirmed: bool) -> list[Action]:
        """The session took the lock state; remember it before acknowledging."""
        if self.unapplied_lock == apply:
            self.unapplied_lock = None
        if apply.seq <= self.memory.last_lock_seq:
            return [AckLock(apply.seq)]
        self.memory = self.memory.model_copy(
            update={"last_lock_seq": apply.seq, "last_lock_state": apply.state}
        )
        hook = "on_lock" if apply.state == "locked" else "on_unlock"
        note = "" if confirmed else " (not confirmed by the desktop)"
        return [
            Remember(),
            AckLock(apply.seq),
            Show(f"{apply.state} seq={apply.seq}{note}"),
            self._hook(hook, seq=str(apply.seq), lock_state=apply.state,
                       laptop_id=apply.laptop_id, confirmed="1" if confirmed else "0"),
        ]

    def lock_failed(self, apply: ApplyLock, error: str) -> list[Action]:
        """Not applied, not acknowledged: the shell retries while the relay keeps it pending."""
        return [Show(f"lock-failed seq={apply.seq} {error}")]

    def _audio_command(self, command: wire.AudioCommand) -> list[Action]:
        if command.action == "take":
            return [TakeAudio(command.handoff_id, command.meeting_id, command.laptop_id)]
        if self.handoff is not None and self.handoff.handoff_id == command.handoff_id:
            self.handoff = None
        return [ReleaseAudio(command.handoff_id, command.meeting_id, command.reason)]

    def audio_taken(self, take: TakeAudio, ok: bool, detail: str) -> list[Action]:
        out: list[Action] = [AckAudio(take.handoff_id, ok, detail[:256])]
        if not ok:
            return [*out, Show(f"audio-failed {take.handoff_id} {detail}")]
        self.handoff = Handoff(take.handoff_id, take.meeting_id, take.laptop_id)
        return [
            *out,
            Show(f"audio-take {take.handoff_id} meeting={take.meeting_id}"),
            self._hook("on_audio_take", handoff_id=take.handoff_id, meeting_id=take.meeting_id,
                       laptop_id=take.laptop_id),
        ]

    def audio_released(self, release: ReleaseAudio, ok: bool, detail: str) -> list[Action]:
        out: list[Action] = []
        if release.ack:
            out.append(AckAudio(release.handoff_id, ok, detail[:256]))
            out.append(Show(f"audio-release {release.handoff_id} {release.reason}".rstrip()))
            out.append(self._hook("on_audio_release", handoff_id=release.handoff_id,
                                  meeting_id=release.meeting_id, reason=release.reason))
        return out

    def _pair_prompt(self, event: wire.PairPrompt, now: float) -> list[Action]:
        prompt = Prompt(
            kind="pair",
            prompt_id=event.request_id,
            user_name=event.user_name,
            expires_at=event.expires_at,
            code=event.code,
            laptop_name=event.laptop_name,
        )
        return self._new_prompt(prompt, now)

    def _join_prompt(self, event: wire.JoinPrompt, now: float) -> list[Action]:
        prompt = Prompt(
            kind="join",
            prompt_id=event.join_id,
            user_name=event.user_name,
            expires_at=event.expires_at,
            meeting_id=event.meeting_id,
        )
        return self._new_prompt(prompt, now)

    def _new_prompt(self, prompt: Prompt, now: float) -> list[Action]:
        if effective_auto_confirm(self.status, self.auto_confirm_override):
            _log.info("prompt_auto_confirmed", kind=prompt.kind, id=prompt.prompt_id)
            return [
                Show(f"{prompt.kind}-auto-confirm {prompt.prompt_id}"),
                self._answer(prompt, True),
            ]
        self.prompts[prompt.prompt_id] = prompt
        if prompt.kind == "pair":
            text = (
                f"pair-prompt {prompt.prompt_id} code={prompt.code} "
                f"laptop={prompt.laptop_name!r} user={prompt.user_name!r}"
            )
            hook = self._hook("on_pair_prompt", request_id=prompt.prompt_id,
                              pair_code=prompt.code or "", laptop_name=prompt.laptop_name or "",
                              user_name=prompt.user_name)
        else:
            text = (
                f"join-prompt {prompt.prompt_id} meeting={prompt.meeting_id!r} "
                f"user={prompt.user_name!r}"
            )
            hook = self._hook("on_join_prompt", join_id=prompt.prompt_id,
                              meeting_id=prompt.meeting_id or "", user_name=prompt.user_name)
        return [
            Show(text),
            Show(f"  confirm: btogether beacon confirm {prompt.prompt_id}  (decline: --decline)"),
            hook,
        ]

    def _answer(self, prompt: Prompt, accept: bool) -> Action:
        if prompt.kind == "pair":
            return ConfirmPair(prompt.prompt_id, accept)
        return RespondJoin(prompt.prompt_id, accept)

    def _prompt_over(
        self, kind: str, prompt_id: str, outcome: str, laptop_name: str | None
    ) -> list[Action]:
        self.prompts.pop(prompt_id, None)
        return [
            Show(f"{kind}-{outcome} {prompt_id}"),
            self._hook("on_pair_end", request_id=prompt_id, outcome=outcome,
                       laptop_name=laptop_name or ""),
        ]

    def _join_command(self, event: wire.JoinCommand, now: float) -> list[Action]:
        self.last_join = {
            "join_id": event.join_id,
            "meeting_id": event.meeting_id,
            "user_name": event.user_name,
            "at": f"{now:.3f}",
        }
        _log.info("meeting_join", join_id=event.join_id, meeting_id=event.meeting_id)
        return [
            Show(f"join meeting={event.meeting_id!r} user={event.user_name!r}"),
            self._hook("on_join", join_id=event.join_id, meeting_id=event.meeting_id,
                       user_name=event.user_name),
        ]

    # --- local input -------------------------------------------------------------------
    def confirm(self, prompt_id: str | None, accept: bool, now: float) -> list[Action]:
        """Someone at the device answered a prompt; with no id, the only one pending."""
        self.tick(now)
        if prompt_id is None:
            if not self.prompts:
                raise ControlError("nothing is waiting for confirmation")
            if len(self.prompts) > 1:
                ids = ", ".join(sorted(self.prompts))
                raise ControlError(f"several prompts are pending ({ids}); name one")
            prompt_id = next(iter(self.prompts))
        prompt = self.prompts.pop(prompt_id, None)
        if prompt is None:
            raise ControlError(f"no pending prompt {prompt_id!r}")
        verb = "confirmed" if accept else "declined"
        return [Show(f"{prompt.kind}-{verb} {prompt_id}"), self._answer(prompt, accept)]

    def snapshot(self, now: float, *, countdown: bool = True) -> dict[str, object]:
        """What ``beacon status`` shows; without ``countdown`` it changes only with the state."""
        relay_now = now + self.clock_offset if countdown else None
        status = self.status
        return {
            "device_id": self.device_id,
            "connected": self.connected,
            "state": status.state if status else None,
            "organisation": status.organisation if status else self.organisation,
            "user_name": status.user_name if status else None,
            "beaconing": status.beaconing if status else None,
            "auto_confirm": effective_auto_confirm(status, self.auto_confirm_override),
            "advertising": self.advertising,
            "login_code": self.login_code,
            "lock": {
                "last_seq": self.memory.last_lock_seq,
                "state": self.memory.last_lock_state,
                "pending_seq": self.unapplied_lock.seq if self.unapplied_lock else None,
            },
            "audio": None
            if self.handoff is None
            else {"handoff_id": self.handoff.handoff_id, "meeting_id": self.handoff.meeting_id},
            "last_join": self.last_join,
            "prompts": [p.as_dict(relay_now) for p in self.prompts.values()],
        }

    def _hook(self, hook: str, **details: str) -> RunHook:
        return RunHook(hook, {"device_id": self.device_id, **details})
