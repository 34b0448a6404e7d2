"""The session index: every session found by each key it holds, whether it holds the key
alone or shares it, and forgotten completely once removed."""

from __future__ import annotations

from relay.domain.sessions import SessionIndex, SessionKeys


class _Session:
    """A session as the index sees it: keys, and a peer that is never written to here."""

    def __init__(self, keys: SessionKeys) -> None:
        self.keys = keys

    def push(self, message: str) -> bool:
        return True

    def end(self, code: int, reason: str) -> None:
        pass


def _laptop(user: str, credential: str) -> _Session:
    return _Session(SessionKeys(credential, "tenant", user_id=user))


def test_a_key_held_alone_and_then_shared_finds_every_holder() -> None:
    index = SessionIndex()
    first = _laptop("alice", "c1")
    second = _laptop("alice", "c1")
    index.add("laptop/alice/1", first)
    assert index.matching(("user", "alice")) == [first]
    assert index.count(("credential", "c1")) == 1
    index.add("laptop/alice/2", second)
    assert set(index.matching(("user", "alice"))) == {first, second}
    assert index.count(("user", "alice")) == 2
    assert index.count(("tenant", "tenant")) == 2


def test_removing_one_of_two_leaves_the_other_found_alone() -> None:
    index = SessionIndex()
    first, second = _laptop("alice", "c1"), _laptop("alice", "c1")
    index.add("a", first)
    index.add("b", second)
    assert index.remove("a", first)
    assert index.matching(("user", "alice")) == [second]
    assert index.count(("credential", "c1")) == 1
    assert index.remove("b", second)
    assert index.matching(("user", "alice")) == []
    assert index.count(("tenant", "tenant")) == 0
    assert len(index) == 0 and not index._by_key


def test_three_holders_then_one_by_one_gone() -> None:
    index = SessionIndex()
    sessions = [_laptop("bob", "c2") for _ in range(3)]
    for n, session in enumerate(sessions):
        index.add(str(n), session)
    for n, session in enumerate(sessions):
        assert index.remove(str(n), session)
        assert set(index.matching(("user", "bob"))) == set(sessions[n + 1 :])
        assert index.count(("user", "bob")) == 2 - n
    assert not index._by_key


def test_a_replaced_session_is_found_no_more_and_its_replacement_is() -> None:
    index = SessionIndex()
    old, new = _laptop("carol", "c3"), _laptop("carol", "c4")
    index.add("laptop/carol/1", old)
    assert index.add("laptop/carol/1", new) is old
    assert index.matching(("user", "carol")) == [new]
    assert index.matching(("credential", "c3")) == []
    assert index.matching(("credential", "c4")) == [new]
    assert not index.remove("laptop/carol/1", old)  # no longer the one there
    assert index.add("laptop/carol/1", new) is None  # the same session again: nothing


def test_a_session_added_twice_under_one_key_is_held_once() -> None:
    index = SessionIndex()
    session = _laptop("dave", "c5")
    index.add("x", session)
    index.add("y", session)  # one session at two addresses (the index does not forbid it)
    assert index.matching(("user", "dave")) == [session]
