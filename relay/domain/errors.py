"""The one exception the relay's domain logic raises; the wire handler makes it an error reply."""

from __future__ import annotations

from relay.protocol.wire import ErrorCode


class RelayError(Exception):
    """A refusal with a stable wire ``code`` and a human message. Nothing was changed."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
