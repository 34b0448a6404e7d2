"""Fakes that implement the relay's real interfaces, for tests that call its decisions directly.

:class:`MemoryStore` is a :class:`relay.domain.store.RelayStore` held in dictionaries (the
store contract suite, ``tests/contract``, holds it to the same behaviour as the SQLite
and PostgreSQL stores); :class:`FakePresence` is a :class:`relay.domain.routing.Presence` whose
online addresses a test sets, and :class:`FakeRouter` a :class:`relay.domain.routing.Router`
that records what it delivers.
"""

from tests.fakes.memory_store import MemoryStore
from tests.fakes.presence import FakePresence, FakeRouter

__all__ = ["FakePresence", "FakeRouter", "MemoryStore"]
