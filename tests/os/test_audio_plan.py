"""The pure rules of audio hand-off: what moves where, and what release restores."""

from __future__ import annotations

import pytest

from hw.audio import AudioDeviceNotFound
from hw.audio.plan import AudioSnapshot, Source, plan_activation, plan_release

SOURCES = (Source("mic"), Source("phone_mic"), Source("other_mic"), Source("spk.monitor", True))


def _snapshot(**overrides: object) -> AudioSnapshot:
    values: dict[str, object] = {
        "sinks": ("spk", "phone", "other"),
        "sources": SOURCES,
        "default_sink": "spk",
        "default_source": "mic",
        "sink_inputs": {1: "spk", 2: "other"},
        "source_outputs": {5: "mic", 6: "spk.monitor"},
    }
    values.update(overrides)
    return AudioSnapshot(**values)  # type: ignore[arg-type]


def test_activation_moves_streams_except_monitor_recordings() -> None:
    plan, activation = plan_activation(_snapshot(), "phone", "phone_mic")
    assert plan.sink_input_moves == {1: "phone", 2: "phone"}
    assert plan.source_output_moves == {5: "phone_mic"}
    assert (activation.previous_sink, activation.previous_source) == ("spk", "mic")
    assert activation.sink_inputs_from == {1: "spk", 2: "other"}


def test_second_activation_keeps_the_state_from_before_the_first() -> None:
    _, first = plan_activation(_snapshot(), "phone", "phone_mic")
    moved = _snapshot(
        default_sink="phone",
        default_source="phone_mic",
        sink_inputs={1: "phone", 2: "phone"},
        source_outputs={5: "phone_mic"},
    )
    plan, second = plan_activation(moved, "other", "other_mic", first)
    assert plan.sink_input_moves == {1: "other", 2: "other"}
    assert (second.previous_sink, second.previous_source) == ("spk", "mic")
    assert second.sink_inputs_from == {1: "spk", 2: "other"}
    back = plan_release(
        _snapshot(sink_inputs={1: "other", 2: "other"}, source_outputs={5: "other_mic"}), second
    )
    assert back.sink_input_moves == {1: "spk"}  # stream 2 is already back on its origin
    assert back.source_output_moves == {5: "mic"}


def test_release_falls_back_to_previous_default_when_origin_is_gone() -> None:
    _, activation = plan_activation(_snapshot(), "phone", "phone_mic")
    gone = _snapshot(sinks=("spk", "phone"), sink_inputs={1: "phone", 2: "phone", 9: "phone"})
    plan = plan_release(gone, activation)
    assert plan.sink_input_moves == {1: "spk", 2: "spk", 9: "spk"}
    assert plan.default_sink == "spk"


def test_release_leaves_defaults_alone_when_previous_devices_vanished() -> None:
    _, activation = plan_activation(_snapshot(), "phone", "phone_mic")
    plan = plan_release(
        _snapshot(sinks=("phone",), sources=(Source("phone_mic"),), sink_inputs={1: "phone"}),
        activation,
    )
    assert (plan.default_sink, plan.default_source) == (None, None)
    assert plan.sink_input_moves == {}


def test_release_does_not_touch_streams_the_user_moved_elsewhere() -> None:
    _, activation = plan_activation(_snapshot(), "phone", "phone_mic")
    plan = plan_release(_snapshot(sink_inputs={1: "other", 2: "phone"}), activation)
    assert plan.sink_input_moves == {2: "other"}


@pytest.mark.parametrize(("sink", "source"), [("nope", "phone_mic"), ("phone", "nope")])
def test_unknown_devices_are_rejected(sink: str, source: str) -> None:
    with pytest.raises(AudioDeviceNotFound, match="nope"):
        plan_activation(_snapshot(), sink, source)
