"""The lock round trip's messages write their own JSON text: it must be exactly the text
pydantic writes for them (``model_dump_json``), for any values they can hold."""

from __future__ import annotations

import inspect

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.protocol import wire

# Any text a peer or the database can give (lone surrogates cannot be written as UTF-8 by
# either encoder: pydantic refuses them, the socket's encode() does).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
STATE = st.sampled_from(["locked", "unlocked"])
SEQ = st.integers(min_value=-(2**70), max_value=2**70)


def test_only_the_lock_messages_write_their_own_text() -> None:
    own = {
        name
        for name, cls in inspect.getmembers(wire, inspect.isclass)
        if issubclass(cls, wire.Message) and "to_wire" in vars(cls) and cls is not wire.Message
    }
    # Each of these has a test below; a new one needs its own.
    assert own == {"LockCommand", "LockApplied", "LockSetResult"}


@settings(max_examples=300)
@given(seq=SEQ, state=STATE, laptop_id=TEXT)
def test_lock_command_text_is_pydantics(seq: int, state: str, laptop_id: str) -> None:
    command = wire.LockCommand(seq=seq, state=state, laptop_id=laptop_id)  # type: ignore[arg-type]
    assert command.to_wire() == command.model_dump_json()


@settings(max_examples=300)
@given(phone_id=TEXT, seq=SEQ, state=STATE)
def test_lock_applied_text_is_pydantics(phone_id: str, seq: int, state: str) -> None:
    applied = wire.LockApplied(phone_id=phone_id, seq=seq, state=state)  # type: ignore[arg-type]
    assert applied.to_wire() == applied.model_dump_json()


@settings(max_examples=300)
@given(state=STATE, phones=st.lists(st.tuples(TEXT, SEQ), max_size=4))
def test_lock_set_result_text_is_pydantics(state: str, phones: list[tuple[str, int]]) -> None:
    result = wire.LockSetResult(
        state=state,  # type: ignore[arg-type]
        phones=[wire.PhoneLockSeq(phone_id=p, seq=s) for p, s in phones],
    )
    assert result.to_wire() == result.model_dump_json()
    reply = wire.encode_result(7, result)
    assert wire.SERVER_MESSAGE_ADAPTER.validate_json(reply).result == result.model_dump()  # type: ignore[union-attr]


def test_every_other_message_is_written_by_pydantic() -> None:
    done = wire.Done()
    assert done.to_wire() == done.model_dump_json() == "{}"
