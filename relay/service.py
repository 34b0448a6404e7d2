"""The relay's domain logic: given who asks, what, and when, decide and say what to send.

Every decision the design gives the relay lives here — who may resolve an EID, who
may pair, what a pairing allows, who may add a room to a meeting — and nothing
here touches a socket. :meth:`RelayService.handle` takes a principal, a validated
request and the current time and returns an :class:`Outcome`: the result for the
caller and the events to deliver to other connections (by address). Refusals are
raised as :class:`~relay.errors.RelayError` before anything is changed; the wire
handler (:mod:`relay.server`) turns them into error replies in one place.

In-flight conversations (pair requests, audio hand-offs, join prompts) and recent
sightings are kept in memory; pairings and lock state are durable in the store.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from relay.credentials import hash_token
from relay.directory import Directory
from relay.errors import RelayError
from relay.model import Device, Pairing
from relay.pairing import PairEvent, PairState, PendingPair, confirmation_event
from relay.protocol import wire
from relay.protocol.wire import ErrorCode
from relay.store import Store

DeviceStateSource = Callable[[str, float], Awaitable["wire.DeviceStateEvent | None"]]


def laptop_address(user_id: str, laptop_id: str) -> str:
    return f"laptop/{user_id}/{laptop_id}"


def device_address(device_id: str) -> str:
    return f"device/{device_id}"


@dataclass(frozen=True, slots=True)
class LaptopPrincipal:
    """A user's client connection; ``laptop_id`` is the stable id the client sent at connect."""

    tenant_id: str
    user_id: str
    user_name: str
    laptop_id: str
    laptop_name: str
    credential_id: str
    role: Literal["laptop"] = "laptop"

    @property
    def address(self) -> str:
        return laptop_address(self.user_id, self.laptop_id)

    def info(self) -> wire.PrincipalInfo:
        return wire.PrincipalInfo(
            role="laptop", tenant_id=self.tenant_id, user_id=self.user_id, laptop_id=self.laptop_id
        )


@dataclass(frozen=True, slots=True)
class DevicePrincipal:
    tenant_id: str
    device_id: str
    credential_id: str
    role: Literal["device"] = "device"

    @property
    def address(self) -> str:
        return device_address(self.device_id)


Principal = LaptopPrincipal | DevicePrincipal


@dataclass(frozen=True, slots=True)
class Delivery:
    address: str
    event: wire.Event


@dataclass(frozen=True, slots=True)
class Outcome:
    result: wire.Message
    deliveries: list[Delivery] = field(default_factory=list)


class Presence(Protocol):
    def is_online(self, address: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """The relay's timing rules (see :class:`relay.config.RelaySettings`)."""

    sighting_freshness: float = 120.0
    pair_request_ttl: float = 120.0
    join_prompt_ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class Handoff:
    handoff_id: str
    phone_id: str
    user_id: str
    laptop_id: str
    meeting_id: str
    state: Literal["pending", "active", "releasing"] = "pending"


@dataclass(frozen=True, slots=True)
class PendingJoin:
    join_id: str
    room_id: str
    user_id: str
    laptop_id: str
    meeting_id: str
    expires_at: float


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


class RelayService:
    def __init__(
        self,
        store: Store,
        presence: Presence,
        rules: Rules | None = None,
        *,
        directory: Directory | None = None,
        new_id: Callable[[str], str] = _id,
        new_code: Callable[[], str] = _code,
    ) -> None:
        self.store = store
        self.presence = presence
        self.rules = rules or Rules()
        self.directory = directory or Directory(store)
        self._new_id = new_id
        self._new_code = new_code
        self._pairs: dict[str, PendingPair] = {}
        self._sightings: dict[tuple[str, str, str], float] = {}
        self._handoffs: dict[str, Handoff] = {}
        self._handoff_of_phone: dict[str, str] = {}
        self._joins: dict[str, PendingJoin] = {}
        self._handlers: dict[
            str, Callable[[Principal, wire.Request, float], Awaitable[Outcome]]
        ] = {
            "ping": self._ping,
            "sightings.report": self._sightings_report,
            "pair.request": self._pair_request,
            "pair.confirm": self._pair_confirm,
            "pair.remove": self._pair_remove,
            "pairings.list": self._pairings_list,
            "lock.set": self._lock_set,
            "lock.ack": self._lock_ack,
            "audio.select": self._audio_select,
            "audio.release": self._audio_release,
            "audio.ack": self._audio_ack,
            "join.request": self._join_request,
            "join.respond": self._join_respond,
        }
        # Set by relay.admin_endpoint when the relay serves provisioning: the device.state
        # event a device gets right after its welcome.
        self.device_state: DeviceStateSource | None = None

    def add_handler(
        self, kind: str, handler: Callable[[Principal, wire.Request, float], Awaitable[Outcome]]
    ) -> None:
        """Let another module answer a request type (provisioning, consoles)."""
        self._handlers[kind] = handler

    # --- connection life cycle -------------------------------------------------------
    async def authenticate(
        self, token: str, laptop_id: str | None, laptop_name: str | None, now: float
    ) -> Principal | None:
        """The principal a credential stands for, or None (unknown, revoked, subject gone)."""
        credential = await self.store.credential_by_hash(hash_token(token))
        if credential is None or credential.revoked_at is not None:
            return None
        if credential.subject_kind == "device":
            device = await self.directory.device(credential.subject_id, now)
            if device is None:
                return None
            return DevicePrincipal(device.tenant_id, device.id, credential.id)
        user = await self.directory.user(credential.subject_id, now)
        if user is None or laptop_id is None:
            return None
        return LaptopPrincipal(
            tenant_id=user.tenant_id,
            user_id=user.id,
            user_name=user.name,
            laptop_id=laptop_id,
            laptop_name=laptop_name or laptop_id,
            credential_id=credential.id,
        )

    async def welcome(self, principal: Principal, now: float) -> list[wire.Event]:
        """What a connection is sent first: the welcome, then anything it missed while away."""
        if isinstance(principal, LaptopPrincipal):
            return [wire.Welcome(principal=principal.info(), server_time=now)]
        device = await self.directory.device(principal.device_id, now)
        info = wire.PrincipalInfo(
            role="device",
            tenant_id=principal.tenant_id,
            user_id=device.user_id if device else None,
            device_id=principal.device_id,
        )
        events: list[wire.Event] = [wire.Welcome(principal=info, server_time=now)]
        if self.device_state is not None:
            state = await self.device_state(principal.device_id, now)
            if state is not None:
                events.append(state)
        record = await self.store.lock_record(principal.device_id)
        if record is not None and record.pending:
            events.append(
                wire.LockCommand(seq=record.seq, state=record.state, laptop_id=record.laptop_id)
            )
        events.extend(
            self._pair_prompt(pending)
            for pending in self._pairs.values()
            if pending.phone_id == principal.device_id and pending.expires_at > now
        )
        return events

    def disconnected(self, principal: Principal, now: float) -> list[Delivery]:
        """Release the audio hand-offs the departed connection was part of."""
        out: list[Delivery] = []
        for handoff in list(self._handoffs.values()):
            if isinstance(principal, LaptopPrincipal):
                mine = (handoff.user_id, handoff.laptop_id) == (
                    principal.user_id,
                    principal.laptop_id,
                )
                if mine:
                    out += self._end_handoff(handoff, "laptop disconnected", tell_laptop=False)
            elif handoff.phone_id == principal.device_id:
                out += self._end_handoff(handoff, "phone disconnected", tell_phone=False)
        return out

    def tick(self, now: float) -> list[Delivery]:
        """Expire pair requests and join prompts past their deadline; forget stale sightings."""
        out: list[Delivery] = []
        for pending in list(self._pairs.values()):
            if now >= pending.expires_at:
                del self._pairs[pending.request_id]
                ended = wire.PairEnded(request_id=pending.request_id, reason="expired")
                out.append(Delivery(device_address(pending.phone_id), ended))
                out.append(Delivery(laptop_address(pending.user_id, pending.laptop_id), ended))
        for join in list(self._joins.values()):
            if now >= join.expires_at:
                del self._joins[join.join_id]
                result = wire.JoinResult(
                    join_id=join.join_id, room_id=join.room_id, outcome="expired"
                )
                out.append(Delivery(laptop_address(join.user_id, join.laptop_id), result))
        horizon = now - self.rules.sighting_freshness
        for key in [k for k, seen in self._sightings.items() if seen < horizon]:
            del self._sightings[key]
        return out

    async def handle(self, principal: Principal, request: wire.Request, now: float) -> Outcome:
        if principal.role not in request.senders:
            raise RelayError(
                ErrorCode.FORBIDDEN,
                f"a {principal.role} connection may not send {request.type}",
            )
        handler = self._handlers.get(request.type)
        if handler is None:
            raise RelayError(ErrorCode.UNKNOWN_TYPE, f"this relay does not handle {request.type}")
        return await handler(principal, request, now)

    # --- helpers ------------------------------------------------------------------------
    async def _device_in_tenant(self, device_id: str, tenant_id: str, now: float) -> Device:
        device = await self.directory.device(device_id, now)
        if device is None or device.tenant_id != tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no device {device_id!r}")
        return device

    async def _check_better_together(self, laptop: LaptopPrincipal, now: float) -> None:
        user = await self.directory.user(laptop.user_id, now)
        policy = await self.directory.effective_policy(
            laptop.tenant_id, user.policy_id if user else None, now
        )
        if policy.allow_better_together != "Enabled":
            raise RelayError(
                ErrorCode.POLICY_DENIED,
                f"Better Together is Disabled by the account's policy {policy.name!r}",
            )

    def _fresh(self, laptop: LaptopPrincipal, device_id: str, now: float) -> bool:
        seen = self._sightings.get((laptop.user_id, laptop.laptop_id, device_id))
        return seen is not None and now - seen <= self.rules.sighting_freshness

    def _require_online(self, device: Device) -> None:
        if not self.presence.is_online(device_address(device.id)):
            raise RelayError(ErrorCode.DEVICE_OFFLINE, f"{device.name!r} is not connected")

    @staticmethod
    def _laptop(principal: Principal) -> LaptopPrincipal:
        assert isinstance(principal, LaptopPrincipal)  # handle() checked the role
        return principal

    @staticmethod
    def _device(principal: Principal) -> DevicePrincipal:
        assert isinstance(principal, DevicePrincipal)
        return principal

    async def _pairing_info(self, pairing: Pairing, now: float) -> wire.PairingInfo:
        phone = await self.directory.device(pairing.phone_id, now)
        return wire.PairingInfo(
            laptop_id=pairing.laptop_id,
            laptop_name=pairing.laptop_name,
            phone_id=pairing.phone_id,
            phone_name=phone.name if phone else pairing.phone_id,
            created_at=pairing.created_at,
        )

    # --- requests -----------------------------------------------------------------------
    async def _ping(self, principal: Principal, request: wire.Request, now: float) -> Outcome:
        return Outcome(wire.Pong(server_time=now))

    async def _sightings_report(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        assert isinstance(request, wire.SightingsReport)
        found: list[wire.DeviceDescriptor] = []
        for sighting in request.sightings:
            device = await self.directory.resolve(bytes.fromhex(sighting.eid), now)
            if device is None or device.tenant_id != laptop.tenant_id:
                continue  # unknown, stale, or another tenant's: all look the same
            own = device.user_id == laptop.user_id
            if device.mode == "personal" and not own:
                continue  # a personal device is visible to its own user only
            self._sightings[(laptop.user_id, laptop.laptop_id, device.id)] = now
            found.append(
                wire.DeviceDescriptor(
                    device_id=device.id,
                    eid=sighting.eid.lower(),
                    name=device.name,
                    kind=device.kind,
                    mode=device.mode,
                    location=device.location,
                    capabilities=list(device.capabilities),
                    own=own,
                    rssi=sighting.rssi,
                )
            )
        return Outcome(wire.SightingsResult(devices=found))

    def _pair_prompt(self, pending: PendingPair) -> wire.PairPrompt:
        return wire.PairPrompt(
            request_id=pending.request_id,
            code=pending.code,
            laptop_id=pending.laptop_id,
            laptop_name=pending.laptop_name,
            phone_id=pending.phone_id,
            phone_name=pending.phone_name,
            user_name=pending.user_name,
            expires_at=pending.expires_at,
        )

    async def _pair_request(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        assert isinstance(request, wire.PairRequest)
        phone = await self._device_in_tenant(request.phone_id, laptop.tenant_id, now)
        if not phone.is_personal_phone:
            raise RelayError(ErrorCode.FORBIDDEN, "only personal desk phones pair with laptops")
        if phone.user_id != laptop.user_id:
            raise RelayError(ErrorCode.WRONG_ACCOUNT, "the phone is signed in to another account")
        await self._check_better_together(laptop, now)
        if not self._fresh(laptop, phone.id, now):
            raise RelayError(
                ErrorCode.NO_FRESH_SIGHTING,
                f"report a sighting of the phone in the last {self.rules.sighting_freshness:.0f} s",
            )
        existing = await self.directory.laptop_pairings(laptop.user_id, laptop.laptop_id, now)
        if any(p.phone_id == phone.id for p in existing):
            raise RelayError(ErrorCode.WRONG_STATE, "this laptop and phone are already paired")
        self._require_online(phone)
        out: list[Delivery] = []
        for old in list(self._pairs.values()):
            if (old.user_id, old.laptop_id, old.phone_id) == (
                laptop.user_id,
                laptop.laptop_id,
                phone.id,
            ):
                del self._pairs[old.request_id]  # a new request supersedes the old one
                out.append(
                    Delivery(
                        device_address(phone.id),
                        wire.PairEnded(request_id=old.request_id, reason="expired"),
                    )
                )
        pending = PendingPair(
            request_id=self._new_id("pr_"),
            code=self._new_code(),
            tenant_id=laptop.tenant_id,
            user_id=laptop.user_id,
            user_name=laptop.user_name,
            laptop_id=laptop.laptop_id,
            laptop_name=laptop.laptop_name,
            phone_id=phone.id,
            phone_name=phone.name,
            created_at=now,
            expires_at=now + self.rules.pair_request_ttl,
        )
        self._pairs[pending.request_id] = pending
        prompt = self._pair_prompt(pending)
        out.append(Delivery(device_address(phone.id), prompt))
        out.append(Delivery(laptop.address, prompt))
        return Outcome(
            wire.PairRequestResult(
                request_id=pending.request_id, code=pending.code, expires_at=pending.expires_at
            ),
            out,
        )

    async def _pair_confirm(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        assert isinstance(request, wire.PairConfirm)
        pending = self._pairs.get(request.request_id)
        is_phone = isinstance(principal, DevicePrincipal)
        if pending is not None:
            party = (
                pending.phone_id == principal.device_id
                if isinstance(principal, DevicePrincipal)
                else (pending.user_id, pending.laptop_id)
                == (principal.user_id, principal.laptop_id)
            )
            if not party:
                pending = None
        if pending is None:
            raise RelayError(ErrorCode.NOT_FOUND, f"no pair request {request.request_id!r}")
        advanced = pending.advance(confirmation_event(is_phone, request.accept), now)
        if advanced.state is PairState.EXPIRED:
            raise RelayError(ErrorCode.EXPIRED, "the pair request has expired")
        phone_addr = device_address(pending.phone_id)
        laptop_addr = laptop_address(pending.user_id, pending.laptop_id)
        other = laptop_addr if is_phone else phone_addr
        if advanced.state is PairState.DECLINED:
            del self._pairs[pending.request_id]
            ended = wire.PairEnded(request_id=pending.request_id, reason="declined")
            return Outcome(wire.PairConfirmResult(state=advanced.state), [Delivery(other, ended)])
        if advanced.state is PairState.PAIRED:
            # Re-check what may have changed while the request was pending.
            phone = await self.directory.device(pending.phone_id, now)
            if phone is None or phone.user_id != pending.user_id:
                raise RelayError(ErrorCode.WRONG_ACCOUNT, "the phone is now signed in elsewhere")
            user = await self.directory.user(pending.user_id, now)
            policy = await self.directory.effective_policy(
                pending.tenant_id, user.policy_id if user else None, now
            )
            if policy.allow_better_together != "Enabled":
                raise RelayError(ErrorCode.POLICY_DENIED, "Better Together is now Disabled")
            pairing = Pairing(
                user_id=pending.user_id,
                laptop_id=pending.laptop_id,
                laptop_name=pending.laptop_name,
                phone_id=pending.phone_id,
                tenant_id=pending.tenant_id,
                created_at=now,
            )
            await self.store.add_pairing(pairing)
            self.directory.forget_pairings()
            self._pairs.pop(pending.request_id, None)
            completed = wire.PairCompleted(
                request_id=pending.request_id, pairing=await self._pairing_info(pairing, now)
            )
            return Outcome(
                wire.PairConfirmResult(state=advanced.state),
                [Delivery(phone_addr, completed), Delivery(laptop_addr, completed)],
            )
        self._pairs[pending.request_id] = advanced
        return Outcome(wire.PairConfirmResult(state=advanced.state))

    async def _pair_remove(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        assert isinstance(request, wire.PairRemove)
        if isinstance(principal, LaptopPrincipal):
            user_id, laptop_id, phone_id = principal.user_id, principal.laptop_id, request.peer_id
            other = device_address(phone_id)
        else:
            matches = [
                p
                for p in await self.store.pairings_of_phone(principal.device_id)
                if p.laptop_id == request.peer_id
            ]
            if not matches:
                raise RelayError(ErrorCode.NOT_FOUND, f"not paired with {request.peer_id!r}")
            user_id, laptop_id, phone_id = matches[0].user_id, request.peer_id, principal.device_id
            other = laptop_address(user_id, laptop_id)
        removed = await self.store.remove_pairing(user_id, laptop_id, phone_id)
        self.directory.forget_pairings()
        if not removed:
            raise RelayError(ErrorCode.NOT_FOUND, f"not paired with {request.peer_id!r}")
        out = [Delivery(other, wire.PairRemoved(laptop_id=laptop_id, phone_id=phone_id))]
        handoff_id = self._handoff_of_phone.get(phone_id)
        handoff = self._handoffs.get(handoff_id) if handoff_id else None
        if handoff is not None and (handoff.user_id, handoff.laptop_id) == (user_id, laptop_id):
            out += self._end_handoff(handoff, "unpaired")
        return Outcome(wire.Done(), out)

    async def _pairings_list(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        if isinstance(principal, LaptopPrincipal):
            pairings = await self.store.pairings_of_laptop(principal.user_id, principal.laptop_id)
        else:
            pairings = await self.store.pairings_of_phone(principal.device_id)
        return Outcome(
            wire.PairingsResult(pairings=[await self._pairing_info(p, now) for p in pairings])
        )

    async def _lock_set(self, principal: Principal, request: wire.Request, now: float) -> Outcome:
        laptop = self._laptop(principal)
        assert isinstance(request, wire.LockSet)
        pairings = await self.directory.laptop_pairings(laptop.user_id, laptop.laptop_id, now)
        if not pairings:
            raise RelayError(ErrorCode.NOT_PAIRED, "this laptop is not paired with a phone")
        await self._check_better_together(laptop, now)
        records = await self.store.set_desired_lock(
            [p.phone_id for p in pairings], request.state, laptop.user_id, laptop.laptop_id, now
        )
        return Outcome(
            wire.LockSetResult(
                state=request.state,
                phones=[wire.PhoneLockSeq(phone_id=r.phone_id, seq=r.seq) for r in records],
            ),
            [
                Delivery(
                    device_address(r.phone_id),
                    wire.LockCommand(seq=r.seq, state=r.state, laptop_id=r.laptop_id),
                )
                for r in records
            ],
        )

    async def _lock_ack(self, principal: Principal, request: wire.Request, now: float) -> Outcome:
        phone = self._device(principal)
        assert isinstance(request, wire.LockAck)
        record = await self.store.lock_record(phone.device_id)
        if record is None or request.seq > record.seq:
            raise RelayError(ErrorCode.WRONG_STATE, f"no lock command with seq {request.seq}")
        if request.seq <= record.acked_seq:
            return Outcome(wire.Done())  # a repeated ack changes nothing
        await self.store.ack_lock(phone.device_id, request.seq)
        if request.seq != record.seq:
            return Outcome(wire.Done())  # acked a superseded command; the newer one is pending
        applied = wire.LockApplied(phone_id=phone.device_id, seq=record.seq, state=record.state)
        return Outcome(
            wire.Done(), [Delivery(laptop_address(record.user_id, record.laptop_id), applied)]
        )

    def _end_handoff(
        self, handoff: Handoff, reason: str, *, tell_phone: bool = True, tell_laptop: bool = True
    ) -> list[Delivery]:
        """Release a hand-off: the phone is told to give the audio back, the laptop that it did."""
        out: list[Delivery] = []
        if self._handoff_of_phone.get(handoff.phone_id) == handoff.handoff_id:
            del self._handoff_of_phone[handoff.phone_id]
        if tell_phone:
            self._handoffs[handoff.handoff_id] = replace(handoff, state="releasing")
            out.append(
                Delivery(
                    device_address(handoff.phone_id),
                    wire.AudioCommand(
                        handoff_id=handoff.handoff_id,
                        action="release",
                        meeting_id=handoff.meeting_id,
                        laptop_id=handoff.laptop_id,
                        reason=reason,
                    ),
                )
            )
        else:
            self._handoffs.pop(handoff.handoff_id, None)
        if tell_laptop:
            out.append(
                Delivery(
                    laptop_address(handoff.user_id, handoff.laptop_id),
                    wire.AudioState(
                        handoff_id=handoff.handoff_id,
                        phone_id=handoff.phone_id,
                        state="released",
                        reason=reason,
                    ),
                )
            )
        return out

    async def _audio_select(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        assert isinstance(request, wire.AudioSelect)
        phone = await self._device_in_tenant(request.phone_id, laptop.tenant_id, now)
        pairings = await self.directory.laptop_pairings(laptop.user_id, laptop.laptop_id, now)
        if not any(p.phone_id == phone.id for p in pairings):
            raise RelayError(ErrorCode.NOT_PAIRED, "this laptop is not paired with that phone")
        await self._check_better_together(laptop, now)
        self._require_online(phone)
        current = self._handoff_of_phone.get(phone.id)
        if current is not None:
            raise RelayError(ErrorCode.BUSY, "the phone is already handling a meeting's audio")
        handoff = Handoff(
            handoff_id=self._new_id("ho_"),
            phone_id=phone.id,
            user_id=laptop.user_id,
            laptop_id=laptop.laptop_id,
            meeting_id=request.meeting_id,
        )
        self._handoffs[handoff.handoff_id] = handoff
        self._handoff_of_phone[phone.id] = handoff.handoff_id
        command = wire.AudioCommand(
            handoff_id=handoff.handoff_id,
            action="take",
            meeting_id=handoff.meeting_id,
            laptop_id=laptop.laptop_id,
        )
        return Outcome(
            wire.AudioSelectResult(handoff_id=handoff.handoff_id),
            [Delivery(device_address(phone.id), command)],
        )

    async def _audio_release(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        assert isinstance(request, wire.AudioRelease)
        handoff = self._handoffs.get(request.handoff_id)
        if (
            handoff is None
            or (handoff.user_id, handoff.laptop_id) != (laptop.user_id, laptop.laptop_id)
            or handoff.state == "releasing"
        ):
            raise RelayError(ErrorCode.NOT_FOUND, f"no active hand-off {request.handoff_id!r}")
        return Outcome(wire.Done(), self._end_handoff(handoff, "released by the laptop"))

    async def _audio_ack(self, principal: Principal, request: wire.Request, now: float) -> Outcome:
        phone = self._device(principal)
        assert isinstance(request, wire.AudioAck)
        handoff = self._handoffs.get(request.handoff_id)
        if handoff is None or handoff.phone_id != phone.device_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no hand-off {request.handoff_id!r}")
        laptop_addr = laptop_address(handoff.user_id, handoff.laptop_id)
        if handoff.state == "releasing":
            del self._handoffs[handoff.handoff_id]
            return Outcome(wire.Done())
        if handoff.state == "active":
            raise RelayError(ErrorCode.WRONG_STATE, "the hand-off is already active")
        if request.ok:
            self._handoffs[handoff.handoff_id] = replace(handoff, state="active")
            state = wire.AudioState(
                handoff_id=handoff.handoff_id, phone_id=handoff.phone_id, state="active"
            )
        else:
            del self._handoffs[handoff.handoff_id]
            self._handoff_of_phone.pop(handoff.phone_id, None)
            state = wire.AudioState(
                handoff_id=handoff.handoff_id,
                phone_id=handoff.phone_id,
                state="failed",
                reason=request.detail,
            )
        return Outcome(wire.Done(), [Delivery(laptop_addr, state)])

    async def _join_request(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        assert isinstance(request, wire.JoinRequest)
        room = await self._device_in_tenant(request.room_id, laptop.tenant_id, now)
        if room.mode != "meeting_room" and room.kind != "room_system":
            raise RelayError(ErrorCode.FORBIDDEN, f"{room.name!r} is not a meeting room")
        if not self._fresh(laptop, room.id, now):
            raise RelayError(
                ErrorCode.NO_FRESH_SIGHTING,
                f"report a sighting of the room within {self.rules.sighting_freshness:.0f} s first",
            )
        policy = await self.directory.effective_policy(room.tenant_id, room.policy_id, now)
        if policy.proximity_join == "off":
            raise RelayError(
                ErrorCode.POLICY_DENIED,
                f"proximity join is off in the room's policy {policy.name!r}",
            )
        self._require_online(room)
        join_id = self._new_id("jn_")
        address = device_address(room.id)
        if policy.proximity_join == "auto":
            command = wire.JoinCommand(
                join_id=join_id, meeting_id=request.meeting_id, user_name=laptop.user_name
            )
            return Outcome(
                wire.JoinRequestResult(join_id=join_id, outcome="accepted"),
                [Delivery(address, command)],
            )
        join = PendingJoin(
            join_id=join_id,
            room_id=room.id,
            user_id=laptop.user_id,
            laptop_id=laptop.laptop_id,
            meeting_id=request.meeting_id,
            expires_at=now + self.rules.join_prompt_ttl,
        )
        self._joins[join_id] = join
        prompt = wire.JoinPrompt(
            join_id=join_id,
            meeting_id=request.meeting_id,
            user_name=laptop.user_name,
            expires_at=join.expires_at,
        )
        return Outcome(
            wire.JoinRequestResult(join_id=join_id, outcome="pending"), [Delivery(address, prompt)]
        )

    async def _join_respond(
        self, principal: Principal, request: wire.Request, now: float
    ) -> Outcome:
        room = self._device(principal)
        assert isinstance(request, wire.JoinRespond)
        join = self._joins.get(request.join_id)
        if join is None or join.room_id != room.device_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no join prompt {request.join_id!r}")
        if now >= join.expires_at:
            raise RelayError(ErrorCode.EXPIRED, "the join prompt has expired")
        del self._joins[join.join_id]
        result = wire.JoinResult(
            join_id=join.join_id,
            room_id=join.room_id,
            outcome="accepted" if request.accept else "declined",
        )
        return Outcome(
            wire.Done(), [Delivery(laptop_address(join.user_id, join.laptop_id), result)]
        )


__all__ = [
    "Delivery",
    "DevicePrincipal",
    "LaptopPrincipal",
    "Outcome",
    "PairEvent",
    "Presence",
    "Principal",
    "RelayService",
    "Rules",
    "device_address",
    "laptop_address",
]
