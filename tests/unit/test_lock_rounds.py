"""How a node groups the lock changes of one loop iteration into PostgreSQL statements
(``relay.storage.postgres_store._lock_rounds``): as few as can be, a phone at most once per
statement, a phone's changes in call order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.storage.postgres_store import _lock_rounds, _lock_upsert, _LockChange


def change(*phones: str, state: str = "locked") -> _LockChange:
    return _LockChange(list(phones), state, "alice", "L1", 1.0)  # type: ignore[arg-type]


def test_changes_of_different_phones_share_one_statement() -> None:
    assert _lock_rounds([["a"], ["b", "c"], ["d"]]) == [[0, 1, 2]]


def test_a_phone_changed_twice_is_changed_in_call_order_in_a_later_statement() -> None:
    assert _lock_rounds([["a"], ["b"], ["a", "c"], ["c"]]) == [[0, 1], [2], [3]]


def test_one_statement_carries_each_phone_of_each_change_with_its_own_values() -> None:
    stmt = _lock_upsert([change("a", "b"), change("c", state="unlocked")])
    assert stmt.rows
    assert stmt.params == (
        ["a", "b", "c"],
        ["locked", "locked", "unlocked"],
        ["alice"] * 3,
        ["L1"] * 3,
        [1.0] * 3,
    )


@given(st.lists(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4, unique=True),
                max_size=12))
def test_rounds_cover_every_change_once_and_keep_each_phones_order(
    phone_lists: list[list[str]],
) -> None:
    changes = [change(*phones) for phones in phone_lists]
    rounds = _lock_rounds(phone_lists)
    assert sorted(i for indexes in rounds for i in indexes) == list(range(len(changes)))
    round_of = {i: r for r, indexes in enumerate(rounds) for i in indexes}
    for indexes in rounds:
        phones = [p for i in indexes for p in changes[i].phones]
        assert len(phones) == len(set(phones))  # ON CONFLICT DO UPDATE: a row once
        assert indexes == sorted(indexes)
    for phone in "abcdef":
        naming = [i for i, c in enumerate(changes) if phone in c.phones]
        assert [round_of[i] for i in naming] == sorted({round_of[i] for i in naming})
    # Each change as early as that allows: right after the last earlier change sharing a
    # phone with it (so no more statements than the longest such chain).
    for i, c in enumerate(changes):
        before = [round_of[j] for j in range(i) if set(changes[j].phones) & set(c.phones)]
        assert round_of[i] == 1 + max(before, default=-1)
