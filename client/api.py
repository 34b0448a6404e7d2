"""The running client's operations over its control socket: both ends.

:class:`ControlApi` is the daemon's side: an operation's name picks its command class
(:data:`client.operations.COMMANDS`), the arguments, which come from another process,
are validated into it (a bad one is a ``bad_request`` error naming the field), the
daemon carries it out, and the answer goes back as the JSON of its view. :func:`ask` is
the other side — the command line and an attached tray — and reads the answer back as
the same view. See :mod:`hw.control_socket` for the framing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from client.operations import COMMANDS, Command
from client.views import Status
from hw.control_socket import ControlError, call

R = TypeVar("R")
Execute = Callable[[Command[Any]], Awaitable[object]]


class ControlApi:
    """Dispatches ``(op, args)`` from the control socket to ``execute`` (the daemon's).

    ``settings_file`` is the client.toml the client was started with, shown by ``status``.
    """

    def __init__(self, execute: Execute, settings_file: Path | None = None) -> None:
        self._execute = execute
        self._settings_file = settings_file

    @property
    def operations(self) -> list[str]:
        return sorted(COMMANDS)

    async def handle(self, op: str, raw_args: dict[str, Any]) -> object:
        kind = COMMANDS.get(op)
        if kind is None:
            raise ControlError(
                "unknown_op", f"no operation {op!r}; known: {', '.join(self.operations)}"
            )
        try:
            command = kind.model_validate(raw_args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise ControlError("bad_request", f"{op}: {problems}") from None
        answer = await self._execute(command)
        if isinstance(answer, Status):
            settings = self._settings_file
            in_use = str(settings) if settings is not None and settings.exists() else None
            answer = answer.model_copy(update={"settings_file": in_use})
        return kind.dump_answer(answer)


async def ask(
    path: Path,
    kind: type[Command[R]],
    args: Mapping[str, object] | None = None,
    within: float | None = 30.0,
) -> R:
    """Ask the running client (its control socket at ``path``); its answer as a view.

    ``args`` go as given (None values left out), for the daemon to validate; raises
    ControlError or DaemonNotRunning.
    """
    payload = {k: v for k, v in (args or {}).items() if v is not None}
    data = await call(path, kind.op, payload, within=within)
    try:
        return kind.read_answer(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise ControlError(
            "bad_reply", f"the client's answer to {kind.op!r} is malformed: {where}: {first['msg']}"
        ) from None
