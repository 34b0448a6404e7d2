"""Which streams go where when a phone becomes the meeting's audio device, and back (pure).

Works on a :class:`AudioSnapshot` of the sound server and returns the moves to make, so the
rules are tested without a server. Activation makes the given sink and source the defaults
and moves every playing stream and every recording stream to them (streams do not always
follow a new default); recordings of a *monitor* (level meters, screen recorders capturing
playback) are left alone, since they record playback, not the microphone. Release moves back
what is on the device: a stream we moved returns to where it was if that still exists, and
anything else (streams started during the meeting) goes to the previous default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hw.audio.base import AudioDeviceNotFound


@dataclass(frozen=True)
class Source:
    name: str
    is_monitor: bool = False


@dataclass(frozen=True)
class AudioSnapshot:
    """What the sound server has now; streams map stream index to device name."""

    sinks: tuple[str, ...]
    sources: tuple[Source, ...]
    default_sink: str | None
    default_source: str | None
    sink_inputs: dict[int, str] = field(default_factory=dict)
    source_outputs: dict[int, str] = field(default_factory=dict)

    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    def is_monitor(self, name: str) -> bool:
        return any(s.name == name and s.is_monitor for s in self.sources)


@dataclass(frozen=True)
class AudioPlan:
    """Defaults to set (None: leave) and stream moves (stream index -> device name)."""

    default_sink: str | None
    default_source: str | None
    sink_input_moves: dict[int, str]
    source_output_moves: dict[int, str]


@dataclass(frozen=True)
class Activation:
    """An active hand-off: the device in use, what was default before, where moved streams were."""

    sink: str
    source: str
    previous_sink: str | None
    previous_source: str | None
    sink_inputs_from: dict[int, str]
    source_outputs_from: dict[int, str]


def plan_activation(
    snapshot: AudioSnapshot, sink: str, source: str, current: Activation | None = None
) -> tuple[AudioPlan, Activation]:
    """Moves that make ``sink``/``source`` the audio device, and the activation to remember.

    Activating again (the same or another device) keeps the defaults and stream origins of
    the first activation, so one release restores the state from before any hand-off.
    """
    if sink not in snapshot.sinks:
        raise AudioDeviceNotFound(
            f"no sink named {sink!r}; available sinks: {', '.join(snapshot.sinks) or 'none'}"
        )
    if source not in snapshot.source_names():
        names = ", ".join(s.name for s in snapshot.sources if not s.is_monitor)
        raise AudioDeviceNotFound(
            f"no source named {source!r}; available sources: {names or 'none'}"
        )
    sink_moves = {i: sink for i, on in snapshot.sink_inputs.items() if on != sink}
    source_moves = {
        i: source
        for i, on in snapshot.source_outputs.items()
        if on != source and not snapshot.is_monitor(on)
    }
    sink_from = {i: snapshot.sink_inputs[i] for i in sink_moves}
    source_from = {i: snapshot.source_outputs[i] for i in source_moves}
    if current is not None:
        # Keep the first origin of a stream moved twice (device A, then device B).
        sink_from = {**sink_from, **current.sink_inputs_from}
        source_from = {**source_from, **current.source_outputs_from}
    activation = Activation(
        sink=sink,
        source=source,
        previous_sink=snapshot.default_sink if current is None else current.previous_sink,
        previous_source=snapshot.default_source if current is None else current.previous_source,
        sink_inputs_from=sink_from,
        source_outputs_from=source_from,
    )
    plan = AudioPlan(
        default_sink=sink,
        default_source=source,
        sink_input_moves=sink_moves,
        source_output_moves=source_moves,
    )
    return plan, activation


def plan_release(snapshot: AudioSnapshot, activation: Activation) -> AudioPlan:
    """Moves that undo ``activation`` as far as the devices involved still exist."""
    sources = snapshot.source_names()

    def back(origin: str | None, previous: str | None, existing: tuple[str, ...]) -> str | None:
        if origin is not None and origin in existing:
            return origin
        return previous if previous in existing else None

    sink_moves: dict[int, str] = {}
    for index, on in snapshot.sink_inputs.items():
        if on != activation.sink:
            continue
        target = back(
            activation.sink_inputs_from.get(index), activation.previous_sink, snapshot.sinks
        )
        if target is not None and target != on:
            sink_moves[index] = target
    source_moves: dict[int, str] = {}
    for index, on in snapshot.source_outputs.items():
        if on != activation.source:
            continue
        origin = activation.source_outputs_from.get(index)
        target = back(origin, activation.previous_source, sources)
        if target is not None and target != on:
            source_moves[index] = target
    return AudioPlan(
        default_sink=activation.previous_sink
        if activation.previous_sink in snapshot.sinks
        else None,
        default_source=activation.previous_source
        if activation.previous_source in sources
        else None,
        sink_input_moves=sink_moves,
        source_output_moves=source_moves,
    )
