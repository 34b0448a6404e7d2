"""One port for both: websocket handshakes stay with ``websockets``, web requests go to the
HTTP application.

The relay's ``websockets`` server answers only bodiless GET requests outside a
handshake, so the pages and their JSON API need a real HTTP server — on the same port.
:class:`FrontDoor` is the connection class ``websockets`` creates for every accepted
socket (its documented ``create_connection`` hook). It reads the head of the first
request; :func:`route` (pure) decides: a websocket handshake, or any request to the
relay's own plain paths (``/healthz`` …), stays with ``websockets`` exactly as before; a
request for a web path is handed to the HTTP server's protocol with the bytes read so
far, and ``websockets`` lets go of that connection. After the decision nothing is in
the way: the hot path pays one flag test per read.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

# What the relay's websocket side answers; everything else that is not a handshake is web.
WEBSOCKET_PATHS = frozenset({"/", "/admin", "/provision", "/healthz", "/readyz", "/metrics"})
MAX_HEAD_BYTES = 16 * 1024  # longer heads go to websockets, which refuses them


class Route(enum.Enum):
    MORE = "more"  # the head is not complete yet
    WEBSOCKET = "websocket"
    WEB = "web"


def route(head: bytes) -> Route:
    """Where a request whose head starts with ``head`` goes."""
    space = head.find(b" ")
    method = head if space < 0 else head[:space]
    if len(method) > 16 or (method and not (method.isalpha() and method.isupper())):
        return Route.WEBSOCKET  # not HTTP (a TLS hello on the plain port…): refused at once
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return Route.WEBSOCKET if len(head) >= MAX_HEAD_BYTES else Route.MORE
    lines = head[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return Route.WEBSOCKET  # not HTTP: websockets answers 400
    method, target, _ = parts
    path = target.split(b"?", 1)[0].decode("latin-1")
    upgrade = any(
        name.strip().lower() == b"upgrade" and b"websocket" in value.lower()
        for name, _, value in (line.partition(b":") for line in lines[1:])
    )
    if method != b"GET":
        return Route.WEB  # forms and the JSON API; websockets refuses every other method
    if upgrade:
        return Route.WEBSOCKET
    if path == "/":
        return Route.WEB  # a browser opening the relay's address gets the pages
    return Route.WEBSOCKET if path in WEBSOCKET_PATHS else Route.WEB


class _LetGo(asyncio.Transport):
    """What the websockets connection holds once the socket is the web server's: closing
    or aborting it does nothing to the socket."""

    def is_closing(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def write(self, data: Any) -> None:
        pass


WebProtocolFactory = Callable[[], asyncio.Protocol]


class FrontDoor(ServerConnection):
    """A websockets server connection that first checks whether the request is for the web
    side. Subclasses set :attr:`web_factory` (see :func:`front_door`)."""

    web_factory: WebProtocolFactory | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deciding = True
        self._head = b""

    def data_received(self, data: bytes) -> None:
        if self._deciding:
            self._head += data
            decision = route(self._head)
            if decision is Route.MORE:
                return
            self._deciding = False
            data, self._head = self._head, b""
            if decision is Route.WEB and self.web_factory is not None:
                self._hand_over(data, self.web_factory)
                return
        super().data_received(data)

    def _hand_over(self, data: bytes, factory: WebProtocolFactory) -> None:
        transport = self.transport
        web = factory()
        transport.set_protocol(web)
        web.connection_made(transport)
        web.data_received(data)
        # websockets' handshake is still waiting for a request: end it as if the peer had
        # gone, with a transport it may close without touching the socket.
        self.transport = _LetGo()
        self.connection_lost(None)


def front_door(web_factory: WebProtocolFactory) -> type[FrontDoor]:
    """The connection class to pass as ``create_connection`` to ``websockets.serve``."""
    return type("WebFrontDoor", (FrontDoor,), {"web_factory": staticmethod(web_factory)})
