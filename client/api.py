"""The control socket's operations: names, validated arguments, and the core method each calls.

Arguments come from another process and are checked with pydantic before anything
runs; a bad one is a ``bad_request`` error naming the field. Every operation returns
plain JSON data. See :mod:`hw.control_socket` for the framing and
:class:`client.daemon.ClientCore` for what each operation does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from client.daemon import ClientCore
from hw.control_socket import ControlError

Name = Annotated[str, Field(min_length=1, max_length=128)]
Wait = Annotated[float, Field(ge=0, le=600)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(_Args):
    pass


class ConnectArgs(_Args):
    phone: Name | None = None


class ConfirmArgs(_Args):
    request_id: Name | None = None
    accept: bool = True


class WaitPairArgs(_Args):
    request_id: Name
    timeout: Wait = 60.0


class PhoneArgs(_Args):
    phone: Name


class AudioOnArgs(_Args):
    phone: Name | None = None
    meeting: Name | None = None
    wait: Wait = 10.0


class AudioOffArgs(_Args):
    phone: Name | None = None
    wait: Wait = 10.0


class LockSyncArgs(_Args):
    enabled: bool


class JoinArgs(_Args):
    room: Name | None = None
    meeting: Name | None = None
    wait: Wait = 30.0


class MeetingArgs(_Args):
    meeting: Name | None = None


class WaitConnectedArgs(_Args):
    timeout: Wait = 10.0


Relogin = Callable[[ClientCore], Awaitable[object]]


class ControlApi:
    """Dispatches ``(op, args)`` from the control socket to a :class:`ClientCore`.

    ``relogin`` re-reads the stored login and hands it to the core (``client login`` asks
    for it when a client is running); without it the operation says to restart.
    ``settings_file`` is the client.toml the client was started with, shown by ``status``.
    """

    def __init__(
        self,
        core: ClientCore,
        relogin: Relogin | None = None,
        settings_file: Path | None = None,
    ) -> None:
        self.core = core
        self._relogin_with = relogin
        self._settings_file = settings_file
        self._ops: dict[str, tuple[type[_Args], Callable[[Any], Awaitable[object]]]] = {
            "status": (NoArgs, self._status),
            "nearby": (NoArgs, self._nearby),
            "connect": (ConnectArgs, self._connect),
            "confirm": (ConfirmArgs, self._confirm),
            "wait_pair": (WaitPairArgs, self._wait_pair),
            "pairings": (NoArgs, self._pairings),
            "unpair": (PhoneArgs, self._unpair),
            "audio_on": (AudioOnArgs, self._audio_on),
            "audio_off": (AudioOffArgs, self._audio_off),
            "lock_sync": (LockSyncArgs, self._lock_sync),
            "join": (JoinArgs, self._join),
            "meeting": (MeetingArgs, self._meeting),
            "wait_connected": (WaitConnectedArgs, self._wait_connected),
            "tray_state": (NoArgs, self._tray_state),
            "relogin": (NoArgs, self._relogin),
            "stop": (NoArgs, self._stop),
        }

    @property
    def operations(self) -> list[str]:
        return sorted(self._ops)

    async def handle(self, op: str, raw_args: dict[str, Any]) -> object:
        entry = self._ops.get(op)
        if entry is None:
            raise ControlError(
                "unknown_op", f"no operation {op!r}; known: {', '.join(self.operations)}"
            )
        model, call = entry
        try:
            args = model.model_validate(raw_args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise ControlError("bad_request", f"{op}: {problems}") from None
        return await call(args)

    async def _status(self, args: NoArgs) -> object:
        settings = self._settings_file
        in_use = str(settings) if settings is not None and settings.exists() else None
        return {**self.core.status(), "settings_file": in_use}

    async def _nearby(self, args: NoArgs) -> object:
        return self.core.nearby_json()

    async def _connect(self, args: ConnectArgs) -> object:
        return await self.core.pair_start(args.phone)

    async def _confirm(self, args: ConfirmArgs) -> object:
        return await self.core.pair_confirm(args.request_id, args.accept)

    async def _wait_pair(self, args: WaitPairArgs) -> object:
        return await self.core.pair_wait(args.request_id, args.timeout)

    async def _pairings(self, args: NoArgs) -> object:
        return await self.core.list_pairings()

    async def _unpair(self, args: PhoneArgs) -> object:
        return await self.core.unpair(args.phone)

    async def _audio_on(self, args: AudioOnArgs) -> object:
        return await self.core.audio_on(args.phone, args.meeting, args.wait)

    async def _audio_off(self, args: AudioOffArgs) -> object:
        return await self.core.audio_off(args.phone, args.wait)

    async def _lock_sync(self, args: LockSyncArgs) -> object:
        return self.core.set_lock_sync(args.enabled)

    async def _join(self, args: JoinArgs) -> object:
        return await self.core.join(args.room, args.meeting, args.wait)

    async def _meeting(self, args: MeetingArgs) -> object:
        return self.core.set_meeting(args.meeting)

    async def _tray_state(self, args: NoArgs) -> object:
        return dataclasses.asdict(self.core.tray_state())

    async def _relogin(self, args: NoArgs) -> object:
        if self._relogin_with is None:
            raise ControlError(
                "unsupported", "this client cannot reload its login: restart `client run`"
            )
        return await self._relogin_with(self.core)

    async def _stop(self, args: NoArgs) -> object:
        self.core.stop()
        return {"stopping": True}

    async def _wait_connected(self, args: WaitConnectedArgs) -> object:
        connected = await self.core.wait_connected(args.timeout)
        return {"connected": connected, "error": self.core.relay_error}
