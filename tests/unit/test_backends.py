"""Every piece of hw/ picks its backend one way: argument, then environment, then platform."""

from __future__ import annotations

import enum

import pytest

from hw.backends import NoBackendForPlatform, UnknownBackend, choose_backend


class Pick(enum.StrEnum):
    ONE = "one"
    TWO = "two"


def test_the_argument_wins_then_the_environment_then_the_platform() -> None:
    table = {"Linux": Pick.ONE, "Darwin": Pick.TWO}
    env = {"X_BACKEND": "TWO"}
    common = {"what": "thing", "env_var": "X_BACKEND"}
    assert choose_backend(Pick, table, chosen="one", environ=env, system="Linux", **common) is Pick.ONE
    assert choose_backend(Pick, table, environ=env, system="Linux", **common) is Pick.TWO
    assert choose_backend(Pick, table, environ={}, system="Darwin", **common) is Pick.TWO


def test_a_wrong_name_or_an_unknown_platform_is_said_in_words() -> None:
    with pytest.raises(UnknownBackend, match=r"X_BACKEND='three' is not a thing backend \(choose from one, two\)"):
        choose_backend(Pick, {}, what="thing", env_var="X_BACKEND", environ={"X_BACKEND": "three"})
    with pytest.raises(NoBackendForPlatform, match="thing is not supported on Plan9 yet"):
        choose_backend(Pick, {}, what="thing", env_var="X_BACKEND", environ={}, system="Plan9")
