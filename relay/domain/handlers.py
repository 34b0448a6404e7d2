"""Request handlers declared next to their code, and the check that every request has one.

A handler is a method marked ``@handles(wire.Ping)``; :func:`handlers_of` collects an
object's marked methods by request type. With the request declarations of the protocol
package (a request class names its result), adding a request type is one declaration
and one handler: nothing else lists them. :func:`require_handlers` makes a relay that
cannot answer a declared request refuse to start instead of answering
``unknown_type`` at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from relay.protocol.wire import kind_of

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__handles__"


def handles(*requests: type[BaseModel]) -> Callable[[F], F]:
    """Mark a method as the handler of these request types."""

    def mark(func: F) -> F:
        setattr(func, _MARK, tuple(kind_of(r) for r in requests))
        return func

    return mark


def handlers_of(obj: object) -> dict[str, Callable[..., Any]]:
    """The handlers an object's marked methods make, by request type."""
    out: dict[str, Callable[..., Any]] = {}
    for name in dir(type(obj)):
        kinds = getattr(getattr(type(obj), name, None), _MARK, None)
        if kinds:
            for kind in kinds:
                out[kind] = getattr(obj, name)
    return out


class MissingHandler(RuntimeError):
    """A declared request type that nothing answers."""


def require_handlers(
    declared: Iterable[type[BaseModel]], handlers: Mapping[str, object], what: str
) -> None:
    missing = sorted(kind_of(r) for r in declared if kind_of(r) not in handlers)
    if missing:
        raise MissingHandler(f"{what} has no handler for {', '.join(missing)}")
