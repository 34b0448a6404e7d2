"""The relay's wire protocol: every message a client and the relay exchange, as pydantic models.

One JSON object per websocket text message, discriminated by ``type``.

* A client sends **requests**. Each carries an ``id`` (a non-negative integer the
  client chooses, unique among its requests in flight) and gets exactly one reply
  with the same ``id``: a ``result`` or an ``error`` (a stable machine-readable
  ``code`` from :class:`ErrorCode` and a human ``message``).
* The relay pushes **events** (no ``id``): the ``welcome`` on connect, pair prompts,
  lock and audio commands, join prompts and outcomes.

The protocol version is negotiated as the websocket subprotocol (:data:`SUBPROTOCOL`,
the newest; every name in :data:`SUBPROTOCOLS` is still served); the ``welcome`` event
repeats it. A new incompatible version gets a new subprotocol name, so old and new
clients are served side by side. Version 2 differs from 1 in one thing: a request
declared ``unanswered_from = 2`` (``lock.ack``) gets no ``result`` once it succeeded —
only an ``error`` if it failed — which saves the relay a message per lock round trip.

This module is shared by the relay and its clients (beacon daemon, laptop client,
admin tools); it is pure data and holds no I/O.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from json.encoder import encode_basestring as _json_string
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 2  # the newest
SUBPROTOCOLS: dict[str, int] = {"btogether.v2": 2, "btogether.v1": 1}  # served, newest first
SUBPROTOCOL = "btogether.v2"
SUBPROTOCOL_V1 = "btogether.v1"
CLIENT_ID_HEADER = "Btogether-Client-Id"
CLIENT_NAME_HEADER = "Btogether-Client-Name"
MAX_REQUEST_ID = 2**53 - 1  # the largest integer a JavaScript client can hold exactly
MAX_SIGHTINGS_PER_REPORT = 64

Role = Literal["laptop", "device"]
LockState = Literal["locked", "unlocked"]
DeviceKind = Literal["room_system", "conference_phone", "desk_phone"]
DeviceMode = Literal["personal", "common_area", "meeting_room"]
ShortText = Annotated[str, Field(min_length=1, max_length=128)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
RequestId = Annotated[int, Field(ge=0, le=MAX_REQUEST_ID)]


class ErrorCode(StrEnum):
    """Stable machine-readable error codes; the human message may change, these do not."""

    BAD_JSON = "bad_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_REQUEST = "invalid_request"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    WRONG_ACCOUNT = "wrong_account"
    POLICY_DENIED = "policy_denied"
    NO_FRESH_SIGHTING = "no_fresh_sighting"
    NOT_PAIRED = "not_paired"
    WRONG_STATE = "wrong_state"
    EXPIRED = "expired"
    DEVICE_OFFLINE = "device_offline"
    BUSY = "busy"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal_error"


ERROR_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.BAD_JSON: "The message is not a JSON object (``id`` is null in the reply).",
    ErrorCode.UNKNOWN_TYPE: "The ``type`` is missing or not one this protocol version knows.",
    ErrorCode.INVALID_REQUEST: "A field is missing, of the wrong type, or out of range.",
    ErrorCode.FORBIDDEN: "This kind of connection (laptop or device) may not send this request.",
    ErrorCode.NOT_FOUND: (
        "No such device, request, pairing or hand-off that the caller may know about. "
        "Ids of another tenant get this too, so nothing leaks across tenants."
    ),
    ErrorCode.WRONG_ACCOUNT: (
        "The phone is in the caller's tenant but signed in to another account."
    ),
    ErrorCode.POLICY_DENIED: "The account's or the device's policy does not allow this.",
    ErrorCode.NO_FRESH_SIGHTING: "The caller has not reported a recent sighting of the device.",
    ErrorCode.NOT_PAIRED: "The laptop and the phone are not paired.",
    ErrorCode.WRONG_STATE: "The request does not fit the current state (e.g. confirming twice).",
    ErrorCode.EXPIRED: "The pair request or join prompt has expired.",
    ErrorCode.DEVICE_OFFLINE: "The device is not connected to the relay.",
    ErrorCode.BUSY: "The phone is already the audio device of another laptop.",
    ErrorCode.RATE_LIMITED: (
        "Too many requests (on this connection, or of this kind for this credential); "
        "this one was dropped unprocessed. Slow down."
    ),
    ErrorCode.UNAVAILABLE: (
        "The relay cannot reach its database (or, in a cluster, Redis) just now; nothing "
        "was changed. Retry later."
    ),
    ErrorCode.INTERNAL: "The relay failed; nothing was changed. Retrying may help.",
}


class CloseCode(IntEnum):
    """Websocket close codes the relay uses."""

    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    REPLACED = 4000
    REVOKED = 4001
    SESSION_CHANGED = 4002
    TOO_SLOW = 4003
    IDLE = 4004


CLOSE_DESCRIPTIONS: dict[CloseCode, str] = {
    CloseCode.GOING_AWAY: "The relay is shutting down (SIGTERM); reconnect with backoff.",
    CloseCode.POLICY_VIOLATION: (
        "Flood: the connection kept sending after ``rate_limited`` errors, or sent binary frames."
    ),
    CloseCode.MESSAGE_TOO_BIG: "A message exceeded the relay's ``max_message_bytes``.",
    CloseCode.INTERNAL_ERROR: "Unexpected relay failure.",
    CloseCode.REPLACED: (
        "The same device or laptop connected again; the older connection is closed."
    ),
    CloseCode.REVOKED: (
        "The credential was revoked, or the device was removed or factory-reset, or the "
        "account deleted: this credential will not be accepted again."
    ),
    CloseCode.SESSION_CHANGED: (
        "The device was signed in to another account or signed out: reconnect to get its "
        "new state."
    ),
    CloseCode.TOO_SLOW: (
        "The connection did not read its messages fast enough (its outbox overflowed); "
        "reconnect: durable state (lock commands, device state) is sent again."
    ),
    CloseCode.IDLE: (
        "An unauthenticated provisioning connection was idle too long, or already made its "
        "one request."
    ),
}

HANDSHAKE_REFUSALS: dict[int, str] = {
    400: (
        f"Missing or unsupported subprotocol (offer ``{SUBPROTOCOL}`` or "
        f"``{SUBPROTOCOL_V1}``), or a laptop "
        f"connection without a valid ``{CLIENT_ID_HEADER}`` header."
    ),
    401: (
        "No ``Authorization: Bearer <credential>`` header, or the credential is unknown or revoked."
    ),
    429: (
        "Too many connections: for this credential, or unauthenticated ones from this "
        "address. Close some, or wait."
    ),
    503: "The relay is starting or shutting down, or has too many unauthenticated connections.",
}


M = TypeVar("M", bound=BaseModel)


def declared(base: type[M]) -> tuple[type[M], ...]:
    """The request classes declared on ``base`` (those with a fixed ``type``), in the order
    they were written, at any depth."""
    out: list[type[M]] = []
    for cls in base.__subclasses__():
        field = cls.model_fields.get("type")
        if field is not None and isinstance(field.default, str):
            out.append(cls)
        out.extend(declared(cls))
    return tuple(out)


def kind_of(cls: type[BaseModel]) -> str:
    """A declared message's ``type``."""
    return str(cls.model_fields["type"].default)


# What Message.trusted writes, fetched once: the frozen model's own __setattr__ refuses.
_new_object = object.__new__
_object_setattr = object.__setattr__
_model_slots: dict[str, Any] = dict(vars(BaseModel))
_set_fields_set = _model_slots["__pydantic_fields_set__"].__set__
_set_extra = _model_slots["__pydantic_extra__"].__set__
_set_private = _model_slots["__pydantic_private__"].__set__
_M = TypeVar("_M", bound="Message")


class Message(BaseModel):
    """Base of every wire message: unknown fields are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def trusted(cls: type[_M], fields: dict[str, Any]) -> _M:
        """An instance from values the relay assembled itself out of already-validated
        data — every field given, in declaration order, of its declared type — without
        validating them again (what ``model_construct`` does, minus its per-field
        defaulting, which made it slower than validating). ``fields`` becomes the
        instance's own: do not touch it afterwards. The sighting reply builds one
        descriptor per device sighted and validation was half its cost. Never for
        anything a peer sent."""
        message = _new_object(cls)
        _object_setattr(message, "__dict__", fields)
        _set_fields_set(message, set(fields))
        _set_extra(message, None)
        _set_private(message, None)
        return message

    def to_wire(self) -> str:
        """This message's JSON text as sent: ``model_dump_json()``. The messages of every
        lock round trip assemble the same text themselves (a test holds each to
        ``model_dump_json``'s for any value), which costs a fraction of pydantic's."""
        return self.model_dump_json()


# What a request is answered with (a name, because ``type`` is every request's field).
ResultType = type[Message]


# --- shared descriptors --------------------------------------------------------------


class Sighting(Message):
    """One advert a laptop heard."""

    eid: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16}$", description="8-byte EID, hex")]
    rssi: Annotated[int, Field(ge=-127, le=20, description="received power, dBm")]


class DeviceDescriptor(Message):
    """What a laptop may know about a device it sighted."""

    device_id: str
    eid: str = Field(description="the sighted EID this descriptor answers")
    name: str
    kind: DeviceKind
    mode: DeviceMode
    location: str
    capabilities: list[str]
    own: bool = Field(description="true when this is the caller's own personal phone")
    rssi: int


class PairingInfo(Message):
    """One stored Better Together pairing."""

    laptop_id: str
    laptop_name: str
    phone_id: str
    phone_name: str
    created_at: float


class PrincipalInfo(Message):
    """Who the relay authenticated on this connection."""

    role: Role
    tenant_id: str
    user_id: str | None = Field(description="the account (laptops, and signed-in devices)")
    device_id: str | None = Field(default=None, description="devices only")
    laptop_id: str | None = Field(default=None, description="laptops only: the client id")


class PhoneLockSeq(Message):
    phone_id: str
    seq: int


# --- results (the ``result`` member of a reply, per request type) ----------------------


class Pong(Message):
    server_time: float


class SightingsResult(Message):
    devices: list[DeviceDescriptor]


class PairRequestResult(Message):
    request_id: str
    code: str = Field(description="6 digits shown on both screens, to compare before confirming")
    expires_at: float


class PairConfirmResult(Message):
    state: str = Field(description="the pair request's state after this confirmation")


class Done(Message):
    """Empty result: the request was carried out."""


class PairingsResult(Message):
    pairings: list[PairingInfo]


class LockSetResult(Message):
    """The desired state is durable; each paired phone gets it (now or on reconnect)."""

    state: LockState
    phones: list[PhoneLockSeq]

    def to_wire(self) -> str:
        phones = ",".join(
            f'{{"phone_id":{_json_string(p.phone_id)},"seq":{p.seq:d}}}' for p in self.phones
        )
        return f'{{"state":{_json_string(self.state)},"phones":[{phones}]}}'


class AudioSelectResult(Message):
    handoff_id: str
    state: Literal["pending"] = "pending"


class JoinRequestResult(Message):
    join_id: str
    outcome: Literal["accepted", "pending"] = Field(
        description="accepted: the room was told to join; pending: the room was asked"
    )


# --- requests (client → relay) -----------------------------------------------------


class Request(Message):
    """Base of every request: carries an ``id`` that its one reply repeats.

    Declaring a request is writing its class here: who may send it (``senders``), what
    its result is (``result``), its ``type`` and fields. Every list of requests (the
    union validated on the wire, the type and result tables, the documentation) is
    derived from these declarations; the relay refuses to start if one has no handler.
    """

    senders: ClassVar[tuple[Role, ...]] = ("laptop", "device")
    result: ClassVar[ResultType]
    # From this protocol version on, success is not answered (only a failure is).
    unanswered_from: ClassVar[int | None] = None
    type: str
    id: RequestId

    @classmethod
    def answered(cls, version: int) -> bool:
        """Whether a successful request of this kind gets a ``result`` in ``version``."""
        return cls.unanswered_from is None or version < cls.unanswered_from


class Ping(Request):
    """Liveness check; the result is ``pong`` with the relay's clock."""

    result: ClassVar[ResultType] = Pong
    type: Literal["ping"] = "ping"


class SightingsReport(Request):
    """A batch of adverts the laptop heard; the result describes those it may know about."""

    senders: ClassVar[tuple[Role, ...]] = ("laptop",)
    result: ClassVar[ResultType] = SightingsResult
    type: Literal["sightings.report"] = "sightings.report"
    sightings: list[Sighting] = Field(max_length=MAX_SIGHTINGS_PER_REPORT)


class PairRequest(Request):
    """Laptop asks to pair with the caller's phone (Better Together)."""

    senders: ClassVar[tuple[Role, ...]] = ("laptop",)
    result: ClassVar[ResultType] = PairRequestResult
    type: Literal["pair.request"] = "pair.request"
    phone_id: Identifier


class PairConfirm(Request):
    """Phone or laptop accepts or declines a pending pair request."""

    result: ClassVar[ResultType] = PairConfirmResult
    type: Literal["pair.confirm"] = "pair.confirm"
    request_id: Identifier
    accept: bool


class PairRemove(Request):
    """Either side unpairs: a laptop names the phone, a phone names the laptop."""

    result: ClassVar[ResultType] = Done
    type: Literal["pair.remove"] = "pair.remove"
    peer_id: Identifier = Field(description="phone_id (from a laptop) or laptop_id (from a phone)")


class PairingsList(Request):
    """The caller's stored pairings."""

    result: ClassVar[ResultType] = PairingsResult
    type: Literal["pairings.list"] = "pairings.list"


class LockSet(Request):
    """Paired laptop reports it locked or unlocked; replied to only once durable."""

    senders: ClassVar[tuple[Role, ...]] = ("laptop",)
    result: ClassVar[ResultType] = LockSetResult
    type: Literal["lock.set"] = "lock.set"
    state: LockState


class LockAck(Request):
    """Phone acknowledges it applied the ``lock.command`` with this ``seq``. From protocol
    version 2 on, only a failure is answered: the laptop's ``lock.applied`` is what the
    acknowledgement is for, and the phone has nothing to do with a ``done``."""

    senders: ClassVar[tuple[Role, ...]] = ("device",)
    result: ClassVar[ResultType] = Done
    unanswered_from: ClassVar[int | None] = 2
    type: Literal["lock.ack"] = "lock.ack"
    seq: Annotated[int, Field(ge=1)]


class AudioSelect(Request):
    """Paired laptop asks to use the phone as the audio device for a meeting."""

    senders: ClassVar[tuple[Role, ...]] = ("laptop",)
    result: ClassVar[ResultType] = AudioSelectResult
    type: Literal["audio.select"] = "audio.select"
    phone_id: Identifier
    meeting_id: ShortText


class AudioRelease(Request):
    """Laptop gives the phone back."""

    senders: ClassVar[tuple[Role, ...]] = ("laptop",)
    result: ClassVar[ResultType] = Done
    type: Literal["audio.release"] = "audio.release"
    handoff_id: Identifier


class AudioAck(Request):
    """Phone reports whether it took over (or released) the audio of a hand-off."""

    senders: ClassVar[tuple[Role, ...]] = ("device",)
    result: ClassVar[ResultType] = Done
    type: Literal["audio.ack"] = "audio.ack"
    handoff_id: Identifier
    ok: bool
    detail: Annotated[str, Field(max_length=256)] = ""


class JoinRequest(Request):
    """User who sighted a room asks to add it to a meeting (proximity join)."""

    senders: ClassVar[tuple[Role, ...]] = ("laptop",)
    result: ClassVar[ResultType] = JoinRequestResult
    type: Literal["join.request"] = "join.request"
    room_id: Identifier
    meeting_id: ShortText


class JoinRespond(Request):
    """Room answers a ``join.prompt``."""

    senders: ClassVar[tuple[Role, ...]] = ("device",)
    result: ClassVar[ResultType] = Done
    type: Literal["join.respond"] = "join.respond"
    join_id: Identifier
    accept: bool


class ConsoleJoin(Request):
    """A touch console asks the room system it is paired with to join a meeting."""

    senders: ClassVar[tuple[Role, ...]] = ("device",)
    result: ClassVar[ResultType] = JoinRequestResult
    type: Literal["console.join"] = "console.join"
    meeting_id: ShortText


class LoginCodeReport(Request):
    """Device answers a ``login_code.request`` with the login code it shows on its screen."""

    senders: ClassVar[tuple[Role, ...]] = ("device",)
    result: ClassVar[ResultType] = Done
    type: Literal["login_code.report"] = "login_code.report"
    request_id: Identifier
    code: Annotated[
        str,
        Field(
            min_length=1,
            max_length=32,
            description="as the device shows it, e.g. ABCD-EFGH; compared case-insensitively",
        ),
    ]


REQUESTS: tuple[type[Request], ...] = declared(Request)
# The discriminated union pydantic validates with, derived from the declarations above.
AnyRequest: Any = Annotated[Union.__getitem__(REQUESTS), Field(discriminator="type")]
REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(AnyRequest)
REQUEST_TYPES: dict[str, type[Request]] = {kind_of(cls): cls for cls in REQUESTS}
RESULT_TYPES: dict[str, type[Message]] = {kind_of(cls): cls.result for cls in REQUESTS}


# --- replies (relay → client) ------------------------------------------------------


class Result(Message):
    """Successful reply; ``result`` is the request type's result object."""

    type: Literal["result"] = "result"
    id: RequestId
    result: dict[str, object]


class Error(Message):
    """Failed reply; nothing was changed. ``id`` is null when the request had no readable id."""

    type: Literal["error"] = "error"
    id: RequestId | None
    code: ErrorCode
    message: str


# --- events (relay → client, pushed) -----------------------------------------------


class Event(Message):
    """Base of every pushed event."""

    recipients: ClassVar[tuple[Role, ...]] = ("laptop", "device")
    type: str


class Welcome(Event):
    """First message on every connection."""

    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    principal: PrincipalInfo
    server_time: float
    handoffs: list[str] = Field(
        default_factory=list,
        description=(
            "laptop: the ids of its audio hand-offs the relay still holds (pending or "
            "active); any other hand-off the laptop believed in has ended (e.g. the relay "
            "restarted and the phone gave the audio back)"
        ),
    )


class PairPrompt(Event):
    """Asks the phone (and the laptop's user) to confirm a pair request."""

    type: Literal["pair.prompt"] = "pair.prompt"
    request_id: str
    code: str
    laptop_id: str
    laptop_name: str
    phone_id: str
    phone_name: str
    user_name: str
    expires_at: float


class PairCompleted(Event):
    """Both sides confirmed; the pairing is stored."""

    type: Literal["pair.completed"] = "pair.completed"
    request_id: str
    pairing: PairingInfo


class PairEnded(Event):
    """A pair request ended without a pairing."""

    type: Literal["pair.ended"] = "pair.ended"
    request_id: str
    reason: Literal["declined", "expired"]


class PairRemoved(Event):
    """The other side unpaired."""

    type: Literal["pair.removed"] = "pair.removed"
    laptop_id: str
    phone_id: str


class LockCommand(Event):
    """Phone: apply this state unless you have applied a higher ``seq``; then ``lock.ack``."""

    recipients: ClassVar[tuple[Role, ...]] = ("device",)
    type: Literal["lock.command"] = "lock.command"
    seq: int = Field(description="per phone, strictly increasing; ignore seq <= last applied")
    state: LockState
    laptop_id: str

    def to_wire(self) -> str:
        return (
            f'{{"type":"lock.command","seq":{self.seq:d},"state":{_json_string(self.state)},'
            f'"laptop_id":{_json_string(self.laptop_id)}}}'
        )


class LockApplied(Event):
    """Laptop: the phone acknowledged a lock state."""

    recipients: ClassVar[tuple[Role, ...]] = ("laptop",)
    type: Literal["lock.applied"] = "lock.applied"
    phone_id: str
    seq: int
    state: LockState

    def to_wire(self) -> str:
        return (
            f'{{"type":"lock.applied","phone_id":{_json_string(self.phone_id)},'
            f'"seq":{self.seq:d},"state":{_json_string(self.state)}}}'
        )


class AudioCommand(Event):
    """Phone: take over the audio of a meeting, or give it back; then ``audio.ack``."""

    recipients: ClassVar[tuple[Role, ...]] = ("device",)
    type: Literal["audio.command"] = "audio.command"
    handoff_id: str
    action: Literal["take", "release"]
    meeting_id: str
    laptop_id: str
    reason: str = ""


class AudioState(Event):
    """Laptop: where a hand-off stands."""

    recipients: ClassVar[tuple[Role, ...]] = ("laptop",)
    type: Literal["audio.state"] = "audio.state"
    handoff_id: str
    phone_id: str
    state: Literal["active", "failed", "released"]
    reason: str = ""


class JoinPrompt(Event):
    """Room: a user asks to add you to a meeting; answer with ``join.respond``."""

    recipients: ClassVar[tuple[Role, ...]] = ("device",)
    type: Literal["join.prompt"] = "join.prompt"
    join_id: str
    meeting_id: str
    user_name: str
    expires_at: float


class JoinCommand(Event):
    """Room: join this meeting now."""

    recipients: ClassVar[tuple[Role, ...]] = ("device",)
    type: Literal["join.command"] = "join.command"
    join_id: str
    meeting_id: str
    user_name: str


class JoinResult(Event):
    """Laptop: the outcome of a prompted join request."""

    recipients: ClassVar[tuple[Role, ...]] = ("laptop",)
    type: Literal["join.result"] = "join.result"
    join_id: str
    room_id: str
    outcome: Literal["accepted", "declined", "expired"]


class LoginCodeRequest(Event):
    """Device waiting for sign-in: an administrator wants your login code; answer with
    ``login_code.report`` carrying this ``request_id``."""

    recipients: ClassVar[tuple[Role, ...]] = ("device",)
    type: Literal["login_code.request"] = "login_code.request"
    request_id: str


class DeviceStateEvent(Event):
    """Device: where it stands and what its effective policy lets it do. Sent right after
    ``welcome`` and again whenever its state or policy changes (sign-in, sign-out, policy
    assigned or edited)."""

    recipients: ClassVar[tuple[Role, ...]] = ("device",)
    type: Literal["device.state"] = "device.state"
    state: Literal["waiting_for_activation", "waiting_for_sign_in", "signed_in"]
    organisation: str = Field(description="the tenant's name")
    user_name: str | None = Field(description="the account signed in, if any")
    beaconing: bool = Field(description="whether the device should advertise its EID")
    auto_confirm: bool = Field(
        description="unattended device: accept pair and join prompts without asking"
    )


EVENT_TYPES: tuple[type[Event], ...] = (
    Welcome,
    PairPrompt,
    PairCompleted,
    PairEnded,
    PairRemoved,
    LockCommand,
    LockApplied,
    AudioCommand,
    AudioState,
    JoinPrompt,
    JoinCommand,
    JoinResult,
    LoginCodeRequest,
    DeviceStateEvent,
)

AnyServerMessage = Annotated[
    Result
    | Error
    | Welcome
    | PairPrompt
    | PairCompleted
    | PairEnded
    | PairRemoved
    | LockCommand
    | LockApplied
    | AudioCommand
    | AudioState
    | JoinPrompt
    | JoinCommand
    | JoinResult
    | LoginCodeRequest
    | DeviceStateEvent,
    Field(discriminator="type"),
]
SERVER_MESSAGE_ADAPTER: TypeAdapter[AnyServerMessage] = TypeAdapter(AnyServerMessage)


def encode_result(request_id: int, result: Message) -> str:
    """The JSON text of a successful reply (assembled directly: this is the hot path)."""
    return f'{{"type":"result","id":{request_id},"result":{result.to_wire()}}}'


def encode_error(request_id: int | None, code: ErrorCode, message: str) -> str:
    """The JSON text of an error reply."""
    return Error(id=request_id, code=code, message=message).model_dump_json()
