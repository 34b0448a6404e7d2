"""A request is declared once (its class names who sends it and what it gets back) and
handled once; every list of requests derives from the declarations."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import pytest

from relay.config import RelaySettings
from relay.domain.handlers import MissingHandler, handlers_of, handles, require_handlers
from relay.node import build_node
from relay.protocol import admin_wire as aw
from relay.protocol import wire


def test_the_tables_derive_from_the_declarations() -> None:
    assert [wire.kind_of(r) for r in wire.REQUESTS] == list(wire.REQUEST_TYPES)
    assert all(wire.RESULT_TYPES[wire.kind_of(r)] is r.result for r in wire.REQUESTS)
    assert all(aw.ADMIN_RESULT_TYPES[aw.kind_of(r)] is r.result for r in aw.ALL_REQUESTS)
    assert {aw.kind_of(r) for r in aw.PROVISION_REQUESTS} == {"provision", "reset"}
    parsed = wire.REQUEST_ADAPTER.validate_json('{"type": "lock.set", "id": 3, "state": "locked"}')
    assert isinstance(parsed, wire.LockSet)


def test_every_declared_request_has_a_handler_in_a_relay_node(tmp_path: Path) -> None:
    settings = RelaySettings.model_construct(
        **{**RelaySettings().model_dump(), "db": str(tmp_path / "r.sqlite3")}
    )
    node = build_node(settings)  # it would raise MissingHandler otherwise
    assert node.service is not None and node.admin is not None


def test_a_declared_request_without_a_handler_stops_the_relay_from_being_built() -> None:
    class Wave(wire.Request):
        result: ClassVar[wire.ResultType] = wire.Done
        type: Literal["wave"] = "wave"

    class Waver:
        @handles(wire.Ping)
        async def ping(self) -> None: ...

    handlers = handlers_of(Waver())
    assert set(handlers) == {"ping"}
    with pytest.raises(MissingHandler, match="has no handler for wave"):
        require_handlers([wire.Ping, Wave], handlers, "this relay")
