"""How the web side reads request bodies and words its refusals (JSON, with HTTP statuses).

Every refusal is ``{"error": {"code", "message"}}``; a :class:`~relay.domain.errors.RelayError`
keeps its wire code and gets the HTTP status that matches it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from relay.domain.errors import RelayError
from relay.protocol.wire import ErrorCode

STATUS = {
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.WRONG_STATE: 409,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.EXPIRED: 410,
    ErrorCode.DEVICE_OFFLINE: 503,
}


def refusal(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def refused(exc: RelayError) -> web.Response:
    return refusal(exc.code.value, exc.message, STATUS.get(exc.code, 400))


def json_error(kind: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    """An exception to raise from deep inside a handler (401, 403 …) with a JSON body."""
    return kind(
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
    )


async def read_json(request: web.BaseRequest) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise json_error(web.HTTPBadRequest, "bad_json", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise json_error(web.HTTPBadRequest, "bad_json", "the body must be a JSON object")
    return data
