"""The one request pipeline of every endpoint: rate limit → validate → handle → translate
refusal → reply → route events → end sessions → log and count.

The device/laptop endpoint, the administrator endpoint and the provisioning endpoint
differ only in what they accept (a pydantic adapter) and who handles it; everything
else — the per-connection flood control, the diagnosis of bad input, the translation
of every failure into a wire error (here and nowhere else: a refusal's own message, a
store outage as ``unavailable``, anything unexpected as ``internal_error`` with the
traceback in the log and nothing else said), the order in which the reply, the events
and the session ends go out, and the one log event per request — is this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from relay.domain.errors import RelayError
from relay.domain.metrics import RelayMetrics
from relay.domain.routing import Router, route
from relay.domain.service import Delivery
from relay.domain.sessions import SessionEnd
from relay.domain.store import SharedStateUnavailable, StoreConflict, StoreUnavailable
from relay.protocol import wire
from relay.protocol.wire import ErrorCode

P = TypeVar("P", contravariant=True)


class Outcomeish(Protocol):
    """What a handler returns: the caller's result and the events for others."""

    @property
    def result(self) -> wire.Message: ...

    @property
    def deliveries(self) -> Sequence[Delivery]: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """What one message produced: the reply text and what else must happen, in order."""

    text: str | None  # None: a success this connection's protocol version leaves unanswered
    kind: str
    outcome: str
    request_id: int | None
    deliveries: Sequence[Delivery] = ()
    ends: Sequence[SessionEnd] = field(default_factory=tuple)


def translate(exc: BaseException) -> tuple[ErrorCode, str]:
    """The wire error for a failure: the only place failures become error replies."""
    if isinstance(exc, RelayError):
        return exc.code, exc.message
    if isinstance(exc, SharedStateUnavailable):
        return ErrorCode.UNAVAILABLE, "the relay cannot reach Redis; nothing changed"
    if isinstance(exc, StoreUnavailable):
        return ErrorCode.UNAVAILABLE, "the relay cannot reach its database; nothing changed"
    if isinstance(exc, StoreConflict):
        return ErrorCode.WRONG_STATE, f"refused: {exc}"
    return ErrorCode.INTERNAL, "the relay failed; nothing changed"


class RequestPipeline(Generic[P]):
    """Validate and carry out one message for a principal of type ``P``."""

    def __init__(
        self,
        adapter: TypeAdapter[Any],
        known_types: Callable[[str], bool],
        handle: Callable[[P, Any, float], Awaitable[Outcomeish]],
        log: Any,
    ) -> None:
        self._adapter = adapter
        self._known = known_types
        self._handle = handle
        self._log = log

    async def process(
        self, principal: P, raw: str, now: float, clog: Any, version: int | None = None
    ) -> Reply:
        """Judge one message; ``version`` is the connection's protocol version, where its
        requests declare which successes go unanswered (``Request.answered``)."""
        try:
            request = self._adapter.validate_json(raw)
        except ValidationError as exc:
            request_id, code, message, kind = diagnose(raw, exc, self._known)
            return Reply(wire.encode_error(request_id, code, message), kind, code.value, request_id)
        kind = request.type
        try:
            outcome = await self._handle(principal, request, now)
        except Exception as exc:
            code, message = translate(exc)
            if code is ErrorCode.INTERNAL:
                clog.exception("request_failed", type=kind, id=request.id)
            elif code is ErrorCode.UNAVAILABLE:
                clog.warning("store_unavailable", type=kind, id=request.id, error=str(exc))
            return Reply(wire.encode_error(request.id, code, message), kind, code.value, request.id)
        answered = getattr(request, "answered", None)
        silent = version is not None and answered is not None and not answered(version)
        return Reply(
            None if silent else wire.encode_result(request.id, outcome.result),
            kind,
            "ok",
            request.id,
            outcome.deliveries,
            getattr(outcome, "ends", ()),
        )


class Outbound(Protocol):
    def push(self, message: str) -> bool: ...


async def carry_out(reply: Reply, sender: Outbound, router: Router) -> None:
    """Send the reply, then the events for others, then close what must be closed: the
    order every endpoint keeps (a closed session has already seen its last event)."""
    if reply.text is not None:
        sender.push(reply.text)
    await route(router, reply.deliveries, reply.ends)


def rate_limited(raw: str | bytes) -> Reply:
    request_id = peek_id(raw)
    return Reply(
        wire.encode_error(request_id, ErrorCode.RATE_LIMITED, "too many requests; slow down"),
        "-",
        ErrorCode.RATE_LIMITED.value,
        request_id,
    )


def unavailable(raw: str | bytes, exc: StoreUnavailable) -> Reply:
    """The reply to a request that could not even be judged: the database is unreachable."""
    request_id = peek_id(raw)
    code, message = translate(exc)
    return Reply(wire.encode_error(request_id, code, message), "-", code.value, request_id)


class RequestLog:
    """Counts and logs requests of one endpoint (one event per request)."""

    def __init__(self, metrics: RelayMetrics, event: str) -> None:
        self._tally = metrics.requests
        self._event = event

    def record(self, reply: Reply, started: float, clog: Any) -> None:
        elapsed = time.perf_counter() - started
        self._tally.record(reply.kind, reply.outcome, elapsed)
        clog.info(
            self._event,
            type=reply.kind,
            id=reply.request_id,
            outcome=reply.outcome,
            ms=round(elapsed * 1000, 3),
        )


__all__ = [
    "Reply",
    "RequestLog",
    "RequestPipeline",
    "carry_out",
    "diagnose",
    "peek_id",
    "rate_limited",
    "route",
    "translate",
]


def peek_id(raw: str | bytes) -> int | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= wire.MAX_REQUEST_ID:
        return value
    return None


def diagnose(
    raw: str, exc: ValidationError, known: Callable[[str], bool]
) -> tuple[int | None, ErrorCode, str, str]:
    """Why a message failed validation, as (id, code, message, type label)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None, ErrorCode.BAD_JSON, "message is not valid JSON", "-"
    if not isinstance(data, dict):
        return None, ErrorCode.BAD_JSON, "message must be a JSON object", "-"
    request_id = peek_id(raw)
    kind = data.get("type")
    if not isinstance(kind, str) or not known(kind):
        shown = kind if isinstance(kind, str) else None
        return (
            request_id,
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {str(shown)[:64]!r}",
            "?",
        )
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'][1:]) or '(message)'}: {err['msg']}"
        for err in exc.errors()[:3]
    )
    return request_id, ErrorCode.INVALID_REQUEST, f"invalid {kind}: {problems}", kind
