"""Touch consoles: a device the administrator paired with a room system controls that room.

The pairing is made by the administrator, not by proximity, and a console's commands
travel through the relay like everything else: ``console.join`` from the console
becomes a ``join.command`` to its paired room, and to no other.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Protocol

from relay.domain.errors import RelayError
from relay.domain.handlers import handles
from relay.domain.routing import Presence
from relay.domain.service import Delivery, DevicePrincipal, Outcome, Principal, device_address
from relay.domain.store import AdminStore, DirectoryStore
from relay.protocol import wire
from relay.protocol.wire import ErrorCode


class ConsoleStore(AdminStore, DirectoryStore, Protocol):
    """The roles of the store consoles read."""


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


class Consoles:
    def __init__(
        self, store: ConsoleStore, presence: Presence, new_id: Callable[[str], str] = _id
    ) -> None:
        self.store = store
        self.presence = presence
        self._new_id = new_id

    @handles(wire.ConsoleJoin)
    async def console_join(
        self, principal: Principal, request: wire.ConsoleJoin, now: float
    ) -> Outcome:
        if not isinstance(principal, DevicePrincipal):
            raise RelayError(ErrorCode.FORBIDDEN, "only a console device may send this")
        pairing = await self.store.console_pairing(principal.device_id)
        if pairing is None:
            raise RelayError(ErrorCode.FORBIDDEN, "this device is not a console paired with a room")
        console = await self.store.device(principal.device_id)
        room = await self.store.device(pairing.room_id)
        if console is None or room is None or room.tenant_id != principal.tenant_id:
            raise RelayError(ErrorCode.NOT_FOUND, "the paired room no longer exists")
        if room.state != "signed_in":
            raise RelayError(ErrorCode.WRONG_STATE, f"{room.name!r} is not signed in")
        if not await self.presence.is_online(device_address(room.id)):
            raise RelayError(ErrorCode.DEVICE_OFFLINE, f"{room.name!r} is not connected")
        join_id = self._new_id("jn_")
        command = wire.JoinCommand(
            join_id=join_id, meeting_id=request.meeting_id, user_name=console.name
        )
        return Outcome(
            wire.JoinRequestResult(join_id=join_id, outcome="accepted"),
            [Delivery(device_address(room.id), command)],
        )
