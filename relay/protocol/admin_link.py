"""Client side of the ``/admin`` and ``/provision`` endpoints.

* :func:`provision` — what ``btogether beacon provision`` sends: the device's MAC and
  the verification code typed on it; returns the credential and identity key.
* :func:`give_back_credential` — what ``btogether beacon reset`` sends if the relay is
  reachable, so the credential stops working at once.
* :class:`AdminLink` — an administrator's connection (``btogether admin``, tests)::

      async with await AdminLink.connect(url, token) as admin:
          code = await admin.call(aw.CodeCreate, device_id="d_…")

A reply that is an ``error`` raises :class:`~relay.protocol.link.RequestFailed`
with the wire code, as on the device protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from relay.protocol import admin_wire as aw
from relay.protocol import wire
from relay.protocol.link import LinkError, RequestFailed, tls_option

M = TypeVar("M", bound=wire.Message)


def endpoint_url(relay_url: str, path: str) -> str:
    """The relay's URL (``ws://host:port/``) with the endpoint's path."""
    parts = urlsplit(relay_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"{relay_url!r} is not a relay URL (expected ws://host:port/)")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


async def _exchange(conn: ClientConnection, request: aw.AdminRequest, wait_s: float) -> Any:
    await conn.send(request.model_dump_json())
    async with asyncio.timeout(wait_s):
        while True:
            raw = await conn.recv()
            try:
                reply = wire.SERVER_MESSAGE_ADAPTER.validate_json(raw)
            except ValidationError as exc:
                raise LinkError(f"the relay sent something unreadable: {exc}") from None
            if isinstance(reply, (wire.Result, wire.Error)) and reply.id in (request.id, None):
                break
    if isinstance(reply, wire.Error):
        raise RequestFailed(reply.code, reply.message)
    return type(request).result.model_validate(reply.result)


async def _one_shot(
    relay_url: str, request: aw.AdminRequest, wait_s: float, tls: ssl.SSLContext | None
) -> Any:
    async with connect(
        endpoint_url(relay_url, aw.PROVISION_PATH),
        subprotocols=[Subprotocol(aw.PROVISION_SUBPROTOCOL)],
        compression=None,
        open_timeout=wait_s,
        **tls_option(tls),
    ) as conn:
        return await _exchange(conn, request, wait_s)


async def provision(
    relay_url: str, mac: str, code: str, wait_s: float = 10.0, tls: ssl.SSLContext | None = None
) -> aw.ProvisionResult:
    """Present the MAC and verification code; raises RequestFailed if refused."""
    result = await _one_shot(relay_url, aw.Provision(id=1, mac=mac, code=code), wait_s, tls)
    assert isinstance(result, aw.ProvisionResult)
    return result


async def give_back_credential(
    relay_url: str, credential: str, wait_s: float = 5.0, tls: ssl.SSLContext | None = None
) -> None:
    """Tell the relay a device is being reset: its credential is revoked."""
    await _one_shot(relay_url, aw.Reset(id=1, credential=credential), wait_s, tls)


class AdminLink:
    """One administrator connection; requests are answered in order."""

    def __init__(self, conn: ClientConnection, reply_timeout: float) -> None:
        self.conn = conn
        self.reply_timeout = reply_timeout
        self._ids = itertools.count(1)

    @classmethod
    async def connect(
        cls,
        relay_url: str,
        token: str,
        *,
        open_timeout: float = 10.0,
        reply_timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> AdminLink:
        """Open an authenticated admin connection; websockets' InvalidStatus (401) if refused."""
        conn = await connect(
            endpoint_url(relay_url, aw.ADMIN_PATH),
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=[Subprotocol(aw.ADMIN_SUBPROTOCOL)],
            compression=None,
            open_timeout=open_timeout,
            max_size=8 * 2**20,
            **tls_option(tls),
        )
        return cls(conn, reply_timeout)

    async def call(self, request_type: type[aw.AdminRequest], /, **fields: Any) -> Any:
        """Send a request of ``request_type`` and return its typed result."""
        request = request_type(id=next(self._ids), **fields)
        return await _exchange(self.conn, request, self.reply_timeout)

    async def typed(
        self, result_type: type[M], request_type: type[aw.AdminRequest], /, **fields: Any
    ) -> M:
        result = await self.call(request_type, **fields)
        assert isinstance(result, result_type)
        return result

    async def close(self) -> None:
        await self.conn.close()

    async def __aenter__(self) -> AdminLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
