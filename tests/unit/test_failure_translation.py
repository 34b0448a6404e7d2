"""Failures become wire errors in one place (relay.pipeline.translate): what each says."""

from __future__ import annotations

from relay.domain.store import SharedStateUnavailable, StoreConflict, StoreUnavailable
from relay.net.pipeline import translate
from relay.protocol.wire import ErrorCode


def test_an_unreachable_database_and_an_unreachable_redis_are_told_apart() -> None:
    database = translate(StoreUnavailable("connection refused"))
    redis = translate(SharedStateUnavailable("cannot reach Redis at 127.0.0.1:6379"))
    assert database == (ErrorCode.UNAVAILABLE, "the relay cannot reach its database; nothing changed")
    assert redis[0] is ErrorCode.UNAVAILABLE
    assert "Redis" in redis[1] and "database" not in redis[1]


def test_an_unexpected_failure_says_nothing_of_its_cause() -> None:
    code, message = translate(ValueError("SELECT secret FROM credentials"))
    assert code is ErrorCode.INTERNAL and "SELECT" not in message
    assert translate(StoreConflict("taken"))[0] is ErrorCode.WRONG_STATE
