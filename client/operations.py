"""What can be asked of the running laptop client: one declaration per operation.

Each operation is a command class: its fields are the operation's arguments (checked
with pydantic: they come from another process), its ``op`` the name on the control
socket, and the view it is answered with is its type parameter, ``Connect(Command[
PairStarted])``. The core (:mod:`client.core`) takes the commands as input; the control
socket (:mod:`client.api`) validates arguments into them and sends their answers; the
command line and the tray read the answers back with the same types. :data:`COMMANDS`,
the table of operations, derives from the classes. Pure data, no I/O.

Adding an operation: declare its command here (with its view in :mod:`client.views`),
answer it in :meth:`client.core.ClientCore.on_command`, and call it from the command line
or the tray.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from client.views import (
    ConnectedView,
    HandoffView,
    JoinView,
    LockSyncView,
    MeetingView,
    NearbyEntry,
    PairConfirmed,
    PairOutcome,
    PairStarted,
    ReloginView,
    Status,
    Stopping,
    TrayState,
    Unpaired,
)
from relay.protocol import wire

R = TypeVar("R")
Name = Annotated[str, Field(min_length=1, max_length=128)]
Wait = Annotated[float, Field(ge=0, le=600)]


class Command(BaseModel, Generic[R]):
    """An operation of the running client; ``R`` is the view it is answered with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    op: ClassVar[str] = ""
    answer: ClassVar[TypeAdapter[Any]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "op" not in cls.__dict__:
            return  # pydantic's own Command[X] in between, or an abstract base
        for base in cls.__bases__:
            args = getattr(base, "__pydantic_generic_metadata__", {}).get("args")
            if args:
                cls.answer = TypeAdapter(args[0])
                return
        raise TypeError(f"{cls.__name__} must name its answer: class {cls.__name__}(Command[View])")

    @classmethod
    def read_answer(cls, data: object) -> R:
        """The answer as the daemon sent it (JSON data), back as its view."""
        return cls.answer.validate_python(data)  # type: ignore[no-any-return]

    @classmethod
    def dump_answer(cls, answer: object) -> object:
        return cls.answer.dump_python(answer, mode="json")


class GetStatus(Command[Status]):
    op = "status"


class GetNearby(Command[list[NearbyEntry]]):
    op = "nearby"


class Connect(Command[PairStarted]):
    """Ask the relay to pair with my desk phone (the nearest one if not named)."""

    op = "connect"
    phone: Name | None = None


class Confirm(Command[PairConfirmed]):
    """Confirm (or decline) a pair request on the laptop's side (default: the pending one)."""

    op = "confirm"
    request_id: Name | None = None
    accept: bool = True


class WaitPair(Command[PairOutcome]):
    """Wait for a pair request to complete or end; outcome ``pending`` if it did not."""

    op = "wait_pair"
    request_id: Name
    timeout: Wait = 60.0


class ListPairings(Command[list[wire.PairingInfo]]):
    op = "pairings"


class Unpair(Command[Unpaired]):
    op = "unpair"
    phone: Name


class AudioOn(Command[HandoffView]):
    """Make my paired phone the audio device of a meeting; waits for it to take over."""

    op = "audio_on"
    phone: Name | None = None
    meeting: Name | None = None
    wait: Wait = 10.0


class AudioOff(Command[HandoffView]):
    op = "audio_off"
    phone: Name | None = None
    wait: Wait = 10.0


class SetLockSync(Command[LockSyncView]):
    op = "lock_sync"
    enabled: bool


class Join(Command[JoinView]):
    """Add a nearby room to a meeting (proximity join); waits for a prompted room."""

    op = "join"
    room: Name | None = None
    meeting: Name | None = None
    wait: Wait = 30.0


class SetMeeting(Command[MeetingView]):
    op = "meeting"
    meeting: Name | None = None


class WaitConnected(Command[ConnectedView]):
    op = "wait_connected"
    timeout: Wait = 10.0


class GetTrayState(Command[TrayState]):
    op = "tray_state"


class Relogin(Command[ReloginView]):
    """Re-read the stored login and reconnect with it (``client login`` asks for this)."""

    op = "relogin"


class Stop(Command[Stopping]):
    op = "stop"


def _declared(base: type[Command[Any]]) -> list[type[Command[Any]]]:
    """Every command class below ``base`` (pydantic's ``Command[X]`` classes in between)."""
    found: list[type[Command[Any]]] = []
    for sub in base.__subclasses__():
        if "op" in sub.__dict__:
            found.append(sub)
        found += _declared(sub)
    return found


COMMANDS: dict[str, type[Command[Any]]] = {kind.op: kind for kind in _declared(Command)}
