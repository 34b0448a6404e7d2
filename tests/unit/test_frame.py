"""The advert frame codec: round trips, rejection of malformed frames, and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.protocol.frame import (
    FRAME_LEN,
    Frame,
    decode_frame,
    decode_manufacturer_data,
    encode_frame,
)

frames = st.builds(
    Frame,
    eid=st.binary(min_size=8, max_size=8),
    tx_power=st.integers(-127, 20),
    rotation_exponent=st.integers(0, 15),
)


@given(frames)
def test_encoded_frames_decode_to_themselves(frame: Frame) -> None:
    data = encode_frame(frame)
    assert len(data) == FRAME_LEN
    assert decode_frame(data) == frame


def test_frame_layout_is_version_flags_power_eid() -> None:
    frame = Frame(eid=bytes(range(8)), tx_power=-59, rotation_exponent=10)
    assert encode_frame(frame).hex() == "010ac5" + "0001020304050607"


@given(st.binary(max_size=64))
def test_decoder_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    result = decode_frame(data)
    assert result is None or encode_frame(result)[0] == 1


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()), st.binary()))
def test_decoder_never_raises_on_values_of_the_wrong_type(value: Any) -> None:
    decode_frame(value)


@given(st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40)))
def test_manufacturer_data_decoding_never_raises(mapping: dict[int, bytes]) -> None:
    result = decode_manufacturer_data(mapping)
    if 0xFFFF not in mapping:
        assert result is None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (bytes.fromhex("010ac5") + bytes(7), "short"),
        (bytes.fromhex("010ac5") + bytes(9), "long"),
        (bytes.fromhex("020ac5") + bytes(8), "unknown version"),
        (bytes.fromhex("010a7f") + bytes(8), "tx power above +20 dBm"),
    ],
)
def test_malformed_frames_decode_to_none(data: bytes, why: str) -> None:
    assert decode_frame(data) is None, why


def test_frame_under_another_company_id_is_ignored() -> None:
    data = encode_frame(Frame(eid=bytes(8), tx_power=-59, rotation_exponent=10))
    assert decode_manufacturer_data({0x004C: data}) is None
    assert decode_manufacturer_data({0x004C: data}, company_id=0x004C) is not None


def test_reserved_flag_bits_are_ignored() -> None:
    data = bytearray(encode_frame(Frame(eid=bytes(8), tx_power=-59, rotation_exponent=3)))
    data[1] |= 0xF0
    decoded = decode_frame(bytes(data))
    assert decoded is not None and decoded.rotation_exponent == 3


def test_hostile_mapping_does_not_raise() -> None:
    class Hostile(dict[int, bytes]):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    assert decode_manufacturer_data(Hostile()) is None
