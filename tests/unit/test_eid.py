"""Known-answer and property tests for the EID computation.

The vectors were computed with the openssl command line, following the
Eddystone-EID computation step by step (temporary key from 11×00‖FF‖0000‖counter[31:16],
then AES over 11×00‖K‖counter with its low K bits cleared), not with this code:

    tk=$(printf "0000000000000000000000ff0000$HI" | xxd -r -p \
         | openssl enc -aes-128-ecb -nopad -K $KEY | xxd -p)
    printf "0000000000000000000000${K}${WINDOW}" | xxd -r -p \
         | openssl enc -aes-128-ecb -nopad -K $tk | xxd -p | cut -c1-16
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.protocol import eid

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


@pytest.mark.parametrize(
    ("counter", "k", "expected"),
    [
        (0, 0, "2ba6a87acf88d21c"),
        (0, 10, "df8e76bbfec4efc5"),
        (0, 15, "b7732a4c0eabe479"),
        (1234567890, 0, "e4d65f9920427355"),
        (1234567890, 10, "97bf401b463c8e8c"),
        (1234567890, 15, "47f9fb68bc2c618e"),
        (4294967295, 0, "ce8b1fbf76c53f8c"),
        (4294967295, 10, "010fa535fd5f9d26"),
        (4294967295, 15, "2b0a5389efad8131"),
    ],
)
def test_eid_matches_independently_computed_vectors(counter: int, k: int, expected: str) -> None:
    assert eid.compute_eid(KEY, counter, k).hex() == expected


@given(counter=st.integers(0, 2**32 - 1), k=st.integers(0, 15))
def test_eid_is_constant_within_a_window(counter: int, k: int) -> None:
    start = eid.window_start(counter, k)
    assert eid.compute_eid(KEY, counter, k) == eid.compute_eid(KEY, start, k)
    assert start <= counter < start + (1 << k)


def test_eid_changes_when_the_window_rotates() -> None:
    k = 10
    assert eid.compute_eid(KEY, 1023, k) != eid.compute_eid(KEY, 1024, k)


def test_different_keys_give_different_eids() -> None:
    other = bytes(16)
    assert eid.compute_eid(KEY, 5000, 10) != eid.compute_eid(other, 5000, 10)


def test_eids_around_cover_the_current_window_and_its_neighbours() -> None:
    k = 4
    t = 1_000_000.5
    windows = eid.eids_around(KEY, t, k, neighbours=1)
    assert [w.window_start for w in windows] == [999_984, 1_000_000, 1_000_016]
    assert windows[0].eid == eid.eid_at(KEY, t - 16, k)
    assert windows[1].eid == eid.eid_at(KEY, t, k)
    assert windows[2].eid == eid.eid_at(KEY, t + 16, k)
    assert all(w.window_end - w.window_start == 16 for w in windows)


def test_seconds_until_rotation_counts_down_to_the_window_edge() -> None:
    assert eid.seconds_until_rotation(1024.25, 10) == pytest.approx(1023.75)
    assert eid.seconds_until_rotation(2047.0, 10) == pytest.approx(1.0)


@pytest.mark.parametrize("k", [-1, 16])
def test_rotation_exponent_out_of_range_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match="rotation exponent"):
        eid.compute_eid(KEY, 0, k)


@pytest.mark.parametrize("text", ["", "zz" * 16, "00" * 15, "00" * 17])
def test_bad_identity_key_text_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="32 hexadecimal digits"):
        eid.parse_identity_key(text)


def test_identity_key_text_may_use_separators() -> None:
    assert eid.parse_identity_key("00010203-04050607:08090a0b0c0d0e0f") == KEY
