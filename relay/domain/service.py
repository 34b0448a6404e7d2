"""The relay's domain logic: given who asks, what, and when, decide and say what to send.

Every decision the design gives the relay lives here — who may resolve an EID, who
may pair, what a pairing allows, who may add a room to a meeting — and nothing here
touches a socket. :meth:`RelayService.handle` takes a principal, a validated request
and the current time and returns an :class:`Outcome`: the result for the caller and
the events to deliver to other connections (by address). Refusals are raised as
:class:`~relay.domain.errors.RelayError` before anything is changed; the request pipeline
(:mod:`relay.net.pipeline`) turns them into error replies in one place.

Every request is judged against the directory as it is *now*, not as it was when the
connection opened: :meth:`session_verdict` says whether a principal's credential and
subject still stand, a phone obeys only the account it is signed in to *now*, and
only signed-in devices resolve. In-flight conversations (pair requests, audio
hand-offs, join prompts) and recent sightings live in the shared
:class:`~relay.domain.ephemeral.EphemeralState` with TTLs; pairings and lock state are
durable in the store. The only state of this object is the list of deadlines of
what this node started (a pair request or join prompt it must announce as expired).
"""

from __future__ import annotations

import heapq
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from relay.domain.credentials import hash_token
from relay.domain.directory import Directory
from relay.domain.ephemeral import EphemeralState
from relay.domain.errors import RelayError
from relay.domain.handlers import handlers_of, handles, require_handlers
from relay.domain.model import Device, Pairing
from relay.domain.pairing import PairEvent, PairState, PendingPair, confirmation_event
from relay.domain.routing import Presence
from relay.domain.store import DirectoryStore, LockStore, PairingStore
from relay.protocol import wire
from relay.protocol.states import (
    HANDOFF_TERMINAL_STATES,
    HANDOFF_TRANSITIONS,
    HandoffEvent,
    HandoffState,
)
from relay.protocol.wire import CloseCode, ErrorCode

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
    """A device's connection; ``user_id`` is the account signed in when it connected."""

    tenant_id: str
    device_id: str
    credential_id: str
    user_id: str | None = None
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


Handler = Callable[[Principal, Any, float], Awaitable[Outcome]]


class ServiceStore(DirectoryStore, PairingStore, LockStore, Protocol):
    """The roles of the store the service reads and writes."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The relay's timing rules and per-credential limits (see
    :class:`relay.config.RelaySettings`)."""

    sighting_freshness: float = 120.0
    pair_request_ttl: float = 120.0
    join_prompt_ttl: float = 60.0
    handoff_ttl: float = 12 * 3600.0
    # Requests that push something to another connection's screen (pair requests, join
    # requests), per credential and minute: a person needs a few, a flood needs many.
    pushes_per_minute: int = 20


# A record stays readable this long after its deadline, so the node that set the
# deadline can still find it and announce the expiry.
GRACE_S = 30.0


@dataclass(frozen=True, slots=True)
class Handoff:
    handoff_id: str
    phone_id: str
    user_id: str
    laptop_id: str
    meeting_id: str
    state: HandoffState = HandoffState.PENDING

    def after(self, event: HandoffEvent) -> Handoff:
        """This hand-off after ``event``, as the protocol's table says (else wrong_state)."""
        state = HANDOFF_TRANSITIONS.get((self.state, event))
        if state is None:
            raise RelayError(
                ErrorCode.WRONG_STATE,
                f"the hand-off is {self.state.value}; cannot {event.value.replace('_', ' ')}",
            )
        return replace(self, state=state)


@dataclass(frozen=True, slots=True)
class PendingJoin:
    join_id: str
    room_id: str
    user_id: str
    laptop_id: str
    meeting_id: str
    expires_at: float


class SightingDescriptors:
    """What a sighting reply says about each device, minus what changes per sighting (the
    EID heard, its power, whose device it is), kept per device so that a laptop reporting
    the same rooms every second does not assemble them again. An entry is for one
    :class:`Device` object: the directory replaces the object when the device changes,
    so a changed device is assembled afresh."""

    MAX_DEVICES = 65_536  # beyond it the cache starts over: bounded, and rebuilt cheaply

    def __init__(self) -> None:
        self._bases: dict[str, tuple[Device, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._bases)

    def fields(self, device: Device, eid: str, own: bool, rssi: int) -> dict[str, Any]:
        """The fields of ``device``'s :class:`wire.DeviceDescriptor`, in declaration order."""
        cached = self._bases.get(device.id)
        if cached is None or cached[0] is not device:
            if len(self._bases) >= self.MAX_DEVICES:
                self._bases.clear()
            base: dict[str, Any] = {
                "device_id": device.id,
                "eid": "",
                "name": device.name,
                "kind": device.kind,
                "mode": device.mode,
                "location": device.location,
                "capabilities": list(device.capabilities),
                "own": False,
                "rssi": 0,
            }
            cached = self._bases[device.id] = (device, base)
        fields = cached[1].copy()
        fields["eid"] = eid
        fields["own"] = own
        fields["rssi"] = rssi
        fields["capabilities"] = fields["capabilities"].copy()  # each message owns its list
        return fields


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _dump(record: PendingPair | Handoff | PendingJoin) -> str:
    return json.dumps(asdict(record), separators=(",", ":"))


def _pair(text: str) -> PendingPair:
    data = json.loads(text)
    data["state"] = PairState(data["state"])
    return PendingPair(**data)


def _handoff(text: str) -> Handoff:
    data = json.loads(text)
    data["state"] = HandoffState(data["state"])
    return Handoff(**data)


def _join(text: str) -> PendingJoin:
    return PendingJoin(**json.loads(text))


class RelayService:
    def __init__(
        self,
        store: ServiceStore,
        directory: Directory,
        ephemeral: EphemeralState,
        presence: Presence,
        rules: Rules | None = None,
        *,
        handlers: Mapping[str, Handler] | None = None,
        device_state: DeviceStateSource | None = None,
        new_id: Callable[[str], str] = _id,
        new_code: Callable[[], str] = _code,
    ) -> None:
        self.store = store
        self.directory = directory
        self.ephemeral = ephemeral
        self._descriptors = SightingDescriptors()
        self.presence = presence
        self.rules = rules or Rules()
        self._new_id = new_id
        self._new_code = new_code
        self._device_state = device_state
        # Deadlines of what this node started: (when, "pair" | "join", id).
        self._deadlines: list[tuple[float, str, str]] = []
        self._handlers: dict[str, Handler] = {**handlers_of(self), **(handlers or {})}
        require_handlers(wire.REQUESTS, self._handlers, "the relay service")

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
            if device is None or device.state == "waiting_for_activation":
                return None
            return DevicePrincipal(device.tenant_id, device.id, credential.id, device.user_id)
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

    async def session_verdict(self, principal: Principal, now: float) -> CloseCode | None:
        """None while the principal still stands; else how its connection must close:
        :attr:`CloseCode.REVOKED` (credential revoked, subject removed or reset) or
        :attr:`CloseCode.SESSION_CHANGED` (the device's account changed)."""
        credential = await self.directory.credential(principal.credential_id, now)
        if credential is None or credential.revoked_at is not None:
            return CloseCode.REVOKED
        if isinstance(principal, DevicePrincipal):
            device = await self.directory.device(principal.device_id, now)
            if device is None or device.state == "waiting_for_activation":
                return CloseCode.REVOKED
            if device.user_id != principal.user_id:
                return CloseCode.SESSION_CHANGED
            return None
        if await self.directory.user(principal.user_id, now) is None:
            return CloseCode.REVOKED
        return None

    async def welcome(self, principal: Principal, now: float) -> list[wire.Event]:
        """What a connection is sent first: the welcome, then anything it missed while away."""
        if isinstance(principal, LaptopPrincipal):
            handoff_id = await self.ephemeral.get(_laptop_handoff_key(principal), now)
            return [
                wire.Welcome(
                    principal=principal.info(),
                    server_time=now,
                    handoffs=[handoff_id] if handoff_id else [],
                )
            ]
        device = await self.directory.device(principal.device_id, now)
        info = wire.PrincipalInfo(
            role="device",
            tenant_id=principal.tenant_id,
            user_id=device.user_id if device else None,
            device_id=principal.device_id,
        )
        events: list[wire.Event] = [wire.Welcome(principal=info, server_time=now)]
        if self._device_state is not None:
            state = await self._device_state(principal.device_id, now)
            if state is not None:
                events.append(state)
        command = await self.pending_lock(principal.device_id, now)
        if command is not None:
            events.append(command)
        pending = await self._pending_pair_of_phone(principal.device_id, now)
        if pending is not None and pending.expires_at > now:
            events.append(self._pair_prompt(pending))
        return events

    async def pending_lock(self, device_id: str, now: float) -> wire.LockCommand | None:
        """The lock command a device has not acknowledged yet, if it is still for the
        account signed in to it: sent in its welcome, and again by the node holding its
        connection when deliveries may have been lost (a cluster's Redis came back)."""
        device = await self.directory.device(device_id, now)
        record = await self.store.lock_record(device_id)
        if (
            record is None
            or not record.pending
            or device is None
            or record.user_id != device.user_id
        ):
            return None
        return wire.LockCommand(seq=record.seq, state=record.state, laptop_id=record.laptop_id)

    async def disconnected(self, principal: Principal, now: float) -> list[Delivery]:
        """Release the audio hand-offs the departed connection was part of."""
        if isinstance(principal, LaptopPrincipal):
            handoff = await self._handoff_at(_laptop_handoff_key(principal), now)
            if handoff is None:
                return []
            return await self._end_handoff(handoff, "laptop disconnected", now, tell_laptop=False)
        handoff = await self._handoff_at(_phone_handoff_key(principal.device_id), now)
        if handoff is None:
            return []
        return await self._end_handoff(handoff, "phone disconnected", now, tell_phone=False)

    async def end_phone_handoff(self, phone_id: str, reason: str, now: float) -> list[Delivery]:
        """End the audio hand-off a phone is part of, if any (its account changed, it was
        removed or reset)."""
        handoff = await self._handoff_at(_phone_handoff_key(phone_id), now)
        return await self._end_handoff(handoff, reason, now) if handoff is not None else []

    async def tick(self, now: float) -> list[Delivery]:
        """Announce the pair requests and join prompts this node started that are past
        their deadline; drop expired short-lived state."""
        out: list[Delivery] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, kind, record_id = heapq.heappop(self._deadlines)
            if kind == "pair":
                out += await self._expire_pair(record_id, now)
            else:
                out += await self._expire_join(record_id, now)
        await self.ephemeral.purge(now)
        return out

    async def _expire_pair(self, request_id: str, now: float) -> list[Delivery]:
        text = await self.ephemeral.get(_pair_key(request_id), now)
        if text is None:
            return []
        pending = _pair(text)
        if pending.expires_at > now:  # a restarted deadline; wait for the real one
            heapq.heappush(self._deadlines, (pending.expires_at, "pair", request_id))
            return []
        if not await self.ephemeral.delete(_pair_key(request_id), now, expected=text):
            return []
        await self.ephemeral.delete(
            _phone_pair_key(pending.phone_id), now, expected=pending.request_id
        )
        ended = wire.PairEnded(request_id=pending.request_id, reason="expired")
        return [
            Delivery(device_address(pending.phone_id), ended),
            Delivery(laptop_address(pending.user_id, pending.laptop_id), ended),
        ]

    async def _expire_join(self, join_id: str, now: float) -> list[Delivery]:
        text = await self.ephemeral.get(_join_key(join_id), now)
        if text is None or not await self.ephemeral.delete(_join_key(join_id), now, expected=text):
            return []
        join = _join(text)
        result = wire.JoinResult(join_id=join.join_id, room_id=join.room_id, outcome="expired")
        return [Delivery(laptop_address(join.user_id, join.laptop_id), result)]

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

    async def _fresh(self, laptop: LaptopPrincipal, device_id: str, now: float) -> bool:
        return await self.ephemeral.get(_sighting_key(laptop, device_id), now) is not None

    async def _require_online(self, device: Device) -> None:
        if not await self.presence.is_online(device_address(device.id)):
            raise RelayError(ErrorCode.DEVICE_OFFLINE, f"{device.name!r} is not connected")

    async def _take_push(self, principal: Principal, now: float) -> None:
        """Count a request that pushes to someone else's screen; refuse a flood of them."""
        key = f"push:{principal.credential_id}"
        if await self.ephemeral.incr(key, 60.0, now) > self.rules.pushes_per_minute:
            raise RelayError(
                ErrorCode.RATE_LIMITED,
                f"at most {self.rules.pushes_per_minute} pair or join requests a minute",
            )

    async def _owned_phones(
        self, laptop: LaptopPrincipal, pairings: list[Pairing], now: float
    ) -> list[Device]:
        """The paired phones that are signed in to the laptop's user *now*: a pairing row
        outlives nothing, the phone's current account decides."""
        phones: list[Device] = []
        for pairing in pairings:
            phone = await self.directory.device(pairing.phone_id, now)
            if (
                phone is not None
                and phone.tenant_id == laptop.tenant_id
                and phone.state == "signed_in"
                and phone.user_id == laptop.user_id
            ):
                phones.append(phone)
        return phones

    @staticmethod
    def _laptop(principal: Principal) -> LaptopPrincipal:
        if not isinstance(principal, LaptopPrincipal):  # handle() checked the role
            raise RelayError(ErrorCode.FORBIDDEN, "only a laptop may send this")
        return principal

    @staticmethod
    def _device(principal: Principal) -> DevicePrincipal:
        if not isinstance(principal, DevicePrincipal):
            raise RelayError(ErrorCode.FORBIDDEN, "only a device may send this")
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
    @handles(wire.Ping)
    async def _ping(self, principal: Principal, request: wire.Ping, now: float) -> Outcome:
        return Outcome(wire.Pong(server_time=now))

    @handles(wire.SightingsReport)
    async def _sightings_report(
        self, principal: Principal, request: wire.SightingsReport, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        tenant_id, user_id = laptop.tenant_id, laptop.user_id
        sightings = request.sightings
        devices = await self.directory.resolve_many([bytes.fromhex(s.eid) for s in sightings], now)
        found: list[wire.DeviceDescriptor] = []
        fresh: list[tuple[str, str]] = []
        key_prefix = _sighting_key(laptop, "")
        descriptor = wire.DeviceDescriptor.trusted
        fields = self._descriptors.fields
        for sighting, device in zip(sightings, devices, strict=True):
            if device is None or device.tenant_id != tenant_id:
                continue  # unknown, stale, or another tenant's: all look the same
            own = device.user_id == user_id
            if device.mode == "personal" and not own:
                continue  # a personal device is visible to its own user only
            fresh.append((key_prefix + device.id, "1"))
            # Every value comes from the directory (validated when stored) or from the
            # request (validated by the wire model), so the descriptor is not validated
            # again: that was half the cost of a sighting of one's own tenant.
            found.append(descriptor(fields(device, sighting.eid.lower(), own, sighting.rssi)))
        if fresh:
            await self.ephemeral.set_many(fresh, self.rules.sighting_freshness, now)
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

    async def _pending_pair_of_phone(self, phone_id: str, now: float) -> PendingPair | None:
        request_id = await self.ephemeral.get(_phone_pair_key(phone_id), now)
        if request_id is None:
            return None
        text = await self.ephemeral.get(_pair_key(request_id), now)
        return _pair(text) if text is not None else None

    @handles(wire.PairRequest)
    async def _pair_request(
        self, principal: Principal, request: wire.PairRequest, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        phone = await self._device_in_tenant(request.phone_id, laptop.tenant_id, now)
        if not phone.is_personal_phone:
            raise RelayError(ErrorCode.FORBIDDEN, "only personal desk phones pair with laptops")
        if phone.state != "signed_in" or phone.user_id != laptop.user_id:
            raise RelayError(ErrorCode.WRONG_ACCOUNT, "the phone is signed in to another account")
        await self._check_better_together(laptop, now)
        if not await self._fresh(laptop, phone.id, now):
            raise RelayError(
                ErrorCode.NO_FRESH_SIGHTING,
                f"report a sighting of the phone in the last {self.rules.sighting_freshness:.0f} s",
            )
        existing = await self.directory.laptop_pairings(laptop.user_id, laptop.laptop_id, now)
        if any(p.phone_id == phone.id for p in existing):
            raise RelayError(ErrorCode.WRONG_STATE, "this laptop and phone are already paired")
        await self._require_online(phone)
        await self._take_push(laptop, now)
        out: list[Delivery] = []
        old = await self._pending_pair_of_phone(phone.id, now)
        if old is not None and await self.ephemeral.delete(_pair_key(old.request_id), now):
            # One request per phone at a time: a new one supersedes the old.
            ended = wire.PairEnded(request_id=old.request_id, reason="expired")
            out.append(Delivery(device_address(phone.id), ended))
            if (old.user_id, old.laptop_id) != (laptop.user_id, laptop.laptop_id):
                out.append(Delivery(laptop_address(old.user_id, old.laptop_id), ended))
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
        ttl = self.rules.pair_request_ttl + GRACE_S
        await self.ephemeral.set(_pair_key(pending.request_id), _dump(pending), ttl, now)
        await self.ephemeral.set(_phone_pair_key(phone.id), pending.request_id, ttl, now)
        heapq.heappush(self._deadlines, (pending.expires_at, "pair", pending.request_id))
        prompt = self._pair_prompt(pending)
        out.append(Delivery(device_address(phone.id), prompt))
        out.append(Delivery(laptop.address, prompt))
        return Outcome(
            wire.PairRequestResult(
                request_id=pending.request_id, code=pending.code, expires_at=pending.expires_at
            ),
            out,
        )

    @handles(wire.PairConfirm)
    async def _pair_confirm(
        self, principal: Principal, request: wire.PairConfirm, now: float
    ) -> Outcome:
        key = _pair_key(request.request_id)
        text = await self.ephemeral.get(key, now)
        pending = _pair(text) if text is not None else None
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
        if pending is None or text is None:
            raise RelayError(ErrorCode.NOT_FOUND, f"no pair request {request.request_id!r}")
        advanced = pending.advance(confirmation_event(is_phone, request.accept), now)
        if advanced.state is PairState.EXPIRED:
            raise RelayError(ErrorCode.EXPIRED, "the pair request has expired")
        phone_addr = device_address(pending.phone_id)
        laptop_addr = laptop_address(pending.user_id, pending.laptop_id)
        other = laptop_addr if is_phone else phone_addr
        if advanced.state is PairState.DECLINED:
            if not await self.ephemeral.delete(key, now, expected=text):
                raise RelayError(ErrorCode.WRONG_STATE, "the pair request changed meanwhile")
            await self.ephemeral.delete(
                _phone_pair_key(pending.phone_id), now, expected=pending.request_id
            )
            ended = wire.PairEnded(request_id=pending.request_id, reason="declined")
            return Outcome(wire.PairConfirmResult(state=advanced.state), [Delivery(other, ended)])
        if advanced.state is PairState.PAIRED:
            # Re-check what may have changed while the request was pending.
            phone = await self.directory.device(pending.phone_id, now)
            if phone is None or phone.state != "signed_in" or phone.user_id != pending.user_id:
                raise RelayError(ErrorCode.WRONG_ACCOUNT, "the phone is now signed in elsewhere")
            user = await self.directory.user(pending.user_id, now)
            policy = await self.directory.effective_policy(
                pending.tenant_id, user.policy_id if user else None, now
            )
            if policy.allow_better_together != "Enabled":
                raise RelayError(ErrorCode.POLICY_DENIED, "Better Together is now Disabled")
            if not await self.ephemeral.delete(key, now, expected=text):
                raise RelayError(ErrorCode.WRONG_STATE, "the pair request changed meanwhile")
            await self.ephemeral.delete(
                _phone_pair_key(pending.phone_id), now, expected=pending.request_id
            )
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
            completed = wire.PairCompleted(
                request_id=pending.request_id, pairing=await self._pairing_info(pairing, now)
            )
            return Outcome(
                wire.PairConfirmResult(state=advanced.state),
                [Delivery(phone_addr, completed), Delivery(laptop_addr, completed)],
            )
        ttl = max(1.0, pending.expires_at + GRACE_S - now)
        if not await self.ephemeral.replace(key, text, _dump(advanced), ttl, now):
            raise RelayError(ErrorCode.WRONG_STATE, "the pair request changed meanwhile")
        return Outcome(wire.PairConfirmResult(state=advanced.state))

    @handles(wire.PairRemove)
    async def _pair_remove(
        self, principal: Principal, request: wire.PairRemove, now: float
    ) -> Outcome:
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
        handoff = await self._handoff_at(_phone_handoff_key(phone_id), now)
        if handoff is not None and (handoff.user_id, handoff.laptop_id) == (user_id, laptop_id):
            out += await self._end_handoff(handoff, "unpaired", now)
        return Outcome(wire.Done(), out)

    @handles(wire.PairingsList)
    async def _pairings_list(
        self, principal: Principal, request: wire.PairingsList, now: float
    ) -> Outcome:
        if isinstance(principal, LaptopPrincipal):
            pairings = await self.store.pairings_of_laptop(principal.user_id, principal.laptop_id)
        else:
            pairings = await self.store.pairings_of_phone(principal.device_id)
        return Outcome(
            wire.PairingsResult(pairings=[await self._pairing_info(p, now) for p in pairings])
        )

    @handles(wire.LockSet)
    async def _lock_set(self, principal: Principal, request: wire.LockSet, now: float) -> Outcome:
        laptop = self._laptop(principal)
        pairings = await self.directory.laptop_pairings(laptop.user_id, laptop.laptop_id, now)
        phones = await self._owned_phones(laptop, pairings, now)
        if not phones:
            raise RelayError(ErrorCode.NOT_PAIRED, "this laptop is not paired with a phone")
        await self._check_better_together(laptop, now)
        records = await self.store.set_desired_lock(
            [p.id for p in phones], request.state, laptop.user_id, laptop.laptop_id, now
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

    @handles(wire.LockAck)
    async def _lock_ack(self, principal: Principal, request: wire.LockAck, now: float) -> Outcome:
        phone = self._device(principal)
        ack = await self.store.ack_lock(phone.device_id, request.seq)
        if ack is None:
            raise RelayError(ErrorCode.WRONG_STATE, f"no lock command with seq {request.seq}")
        if not ack.news:
            return Outcome(wire.Done())  # a repeated ack changes nothing
        record = ack.record
        if request.seq != record.seq:
            return Outcome(wire.Done())  # acked a superseded command; the newer one is pending
        applied = wire.LockApplied(phone_id=phone.device_id, seq=record.seq, state=record.state)
        return Outcome(
            wire.Done(), [Delivery(laptop_address(record.user_id, record.laptop_id), applied)]
        )

    async def _handoff_at(self, index_key: str, now: float) -> Handoff | None:
        handoff_id = await self.ephemeral.get(index_key, now)
        if handoff_id is None:
            return None
        text = await self.ephemeral.get(_handoff_key(handoff_id), now)
        return _handoff(text) if text is not None else None

    async def _end_handoff(
        self,
        handoff: Handoff,
        reason: str,
        now: float,
        *,
        tell_phone: bool = True,
        tell_laptop: bool = True,
    ) -> list[Delivery]:
        """Release a hand-off: the phone is told to give the audio back, the laptop that it did."""
        out: list[Delivery] = []
        await self.ephemeral.delete(
            _phone_handoff_key(handoff.phone_id), now, expected=handoff.handoff_id
        )
        await self.ephemeral.delete(
            f"handoff-laptop:{handoff.user_id}:{handoff.laptop_id}",
            now,
            expected=handoff.handoff_id,
        )
        ended = handoff.after(HandoffEvent.RELEASE if tell_phone else HandoffEvent.PARTY_GONE)
        if ended.state not in HANDOFF_TERMINAL_STATES:
            await self.ephemeral.set(_handoff_key(handoff.handoff_id), _dump(ended), 300.0, now)
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
            await self.ephemeral.delete(_handoff_key(handoff.handoff_id), now)
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

    @handles(wire.AudioSelect)
    async def _audio_select(
        self, principal: Principal, request: wire.AudioSelect, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        phone = await self._device_in_tenant(request.phone_id, laptop.tenant_id, now)
        pairings = await self.directory.laptop_pairings(laptop.user_id, laptop.laptop_id, now)
        paired = [p for p in pairings if p.phone_id == phone.id]
        if not await self._owned_phones(laptop, paired, now):
            raise RelayError(ErrorCode.NOT_PAIRED, "this laptop is not paired with that phone")
        await self._check_better_together(laptop, now)
        await self._require_online(phone)
        handoff = Handoff(
            handoff_id=self._new_id("ho_"),
            phone_id=phone.id,
            user_id=laptop.user_id,
            laptop_id=laptop.laptop_id,
            meeting_id=request.meeting_id,
        )
        ttl = self.rules.handoff_ttl
        if not await self.ephemeral.add(
            _phone_handoff_key(phone.id), handoff.handoff_id, ttl, now
        ):
            raise RelayError(ErrorCode.BUSY, "the phone is already handling a meeting's audio")
        previous = await self._handoff_at(_laptop_handoff_key(laptop), now)
        out: list[Delivery] = []
        if previous is not None:
            out += await self._end_handoff(previous, "the laptop chose another phone", now)
        await self.ephemeral.set(_handoff_key(handoff.handoff_id), _dump(handoff), ttl, now)
        await self.ephemeral.set(_laptop_handoff_key(laptop), handoff.handoff_id, ttl, now)
        command = wire.AudioCommand(
            handoff_id=handoff.handoff_id,
            action="take",
            meeting_id=handoff.meeting_id,
            laptop_id=laptop.laptop_id,
        )
        out.append(Delivery(device_address(phone.id), command))
        return Outcome(wire.AudioSelectResult(handoff_id=handoff.handoff_id), out)

    @handles(wire.AudioRelease)
    async def _audio_release(
        self, principal: Principal, request: wire.AudioRelease, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        text = await self.ephemeral.get(_handoff_key(request.handoff_id), now)
        handoff = _handoff(text) if text is not None else None
        if (
            handoff is None
            or (handoff.user_id, handoff.laptop_id) != (laptop.user_id, laptop.laptop_id)
            or handoff.state is HandoffState.RELEASING
        ):
            raise RelayError(ErrorCode.NOT_FOUND, f"no active hand-off {request.handoff_id!r}")
        return Outcome(wire.Done(), await self._end_handoff(handoff, "released by the laptop", now))

    @handles(wire.AudioAck)
    async def _audio_ack(self, principal: Principal, request: wire.AudioAck, now: float) -> Outcome:
        phone = self._device(principal)
        key = _handoff_key(request.handoff_id)
        text = await self.ephemeral.get(key, now)
        handoff = _handoff(text) if text is not None else None
        if handoff is None or text is None or handoff.phone_id != phone.device_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no hand-off {request.handoff_id!r}")
        if handoff.state is HandoffState.RELEASING:
            handoff.after(HandoffEvent.PHONE_RELEASED)
            await self.ephemeral.delete(key, now, expected=text)
            return Outcome(wire.Done())
        done = handoff.after(HandoffEvent.PHONE_TOOK if request.ok else HandoffEvent.PHONE_FAILED)
        laptop_addr = laptop_address(handoff.user_id, handoff.laptop_id)
        if done.state is HandoffState.ACTIVE:
            if not await self.ephemeral.replace(
                key, text, _dump(done), self.rules.handoff_ttl, now
            ):
                raise RelayError(ErrorCode.WRONG_STATE, "the hand-off changed meanwhile")
            state = wire.AudioState(
                handoff_id=handoff.handoff_id, phone_id=handoff.phone_id, state="active"
            )
        else:
            await self.ephemeral.delete(key, now, expected=text)
            await self.ephemeral.delete(
                _phone_handoff_key(handoff.phone_id), now, expected=handoff.handoff_id
            )
            await self.ephemeral.delete(
                f"handoff-laptop:{handoff.user_id}:{handoff.laptop_id}",
                now,
                expected=handoff.handoff_id,
            )
            state = wire.AudioState(
                handoff_id=handoff.handoff_id,
                phone_id=handoff.phone_id,
                state="failed",
                reason=request.detail,
            )
        return Outcome(wire.Done(), [Delivery(laptop_addr, state)])

    @handles(wire.JoinRequest)
    async def _join_request(
        self, principal: Principal, request: wire.JoinRequest, now: float
    ) -> Outcome:
        laptop = self._laptop(principal)
        room = await self._device_in_tenant(request.room_id, laptop.tenant_id, now)
        if room.mode != "meeting_room" and room.kind != "room_system":
            raise RelayError(ErrorCode.FORBIDDEN, f"{room.name!r} is not a meeting room")
        if room.state != "signed_in":
            raise RelayError(ErrorCode.WRONG_STATE, f"{room.name!r} is not signed in")
        if not await self._fresh(laptop, room.id, now):
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
        await self._require_online(room)
        await self._take_push(laptop, now)
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
        await self.ephemeral.set(
            _join_key(join_id), _dump(join), self.rules.join_prompt_ttl + GRACE_S, now
        )
        heapq.heappush(self._deadlines, (join.expires_at, "join", join_id))
        prompt = wire.JoinPrompt(
            join_id=join_id,
            meeting_id=request.meeting_id,
            user_name=laptop.user_name,
            expires_at=join.expires_at,
        )
        return Outcome(
            wire.JoinRequestResult(join_id=join_id, outcome="pending"), [Delivery(address, prompt)]
        )

    @handles(wire.JoinRespond)
    async def _join_respond(
        self, principal: Principal, request: wire.JoinRespond, now: float
    ) -> Outcome:
        room = self._device(principal)
        key = _join_key(request.join_id)
        text = await self.ephemeral.get(key, now)
        join = _join(text) if text is not None else None
        if join is None or text is None or join.room_id != room.device_id:
            raise RelayError(ErrorCode.NOT_FOUND, f"no join prompt {request.join_id!r}")
        if now >= join.expires_at:
            raise RelayError(ErrorCode.EXPIRED, "the join prompt has expired")
        if not await self.ephemeral.delete(key, now, expected=text):
            raise RelayError(ErrorCode.NOT_FOUND, f"no join prompt {request.join_id!r}")
        result = wire.JoinResult(
            join_id=join.join_id,
            room_id=join.room_id,
            outcome="accepted" if request.accept else "declined",
        )
        return Outcome(
            wire.Done(), [Delivery(laptop_address(join.user_id, join.laptop_id), result)]
        )


def _pair_key(request_id: str) -> str:
    return f"pair:{request_id}"


def _phone_pair_key(phone_id: str) -> str:
    return f"pair-phone:{phone_id}"


def _join_key(join_id: str) -> str:
    return f"join:{join_id}"


def _sighting_key(laptop: LaptopPrincipal, device_id: str) -> str:
    return f"sight:{laptop.user_id}:{laptop.laptop_id}:{device_id}"


def _handoff_key(handoff_id: str) -> str:
    return f"handoff:{handoff_id}"


def _phone_handoff_key(phone_id: str) -> str:
    return f"handoff-phone:{phone_id}"


def _laptop_handoff_key(laptop: LaptopPrincipal) -> str:
    return f"handoff-laptop:{laptop.user_id}:{laptop.laptop_id}"


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
    "ServiceStore",
    "device_address",
    "laptop_address",
]
