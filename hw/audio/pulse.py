"""Audio routing on PulseAudio or PipeWire (pipewire-pulse) through pulsectl.

pulsectl blocks, so every operation runs in a worker thread on its own short-lived
connection (a restarted server is simply reconnected to); an asyncio lock keeps operations
in order. The decisions are made by :mod:`hw.audio.plan`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from hw.audio.base import AudioError, AudioResult, AudioServerUnavailable
from hw.audio.plan import (
    Activation,
    AudioPlan,
    AudioSnapshot,
    Source,
    plan_activation,
    plan_release,
)

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")
_INVALID_INDEX = 2**32 - 1


def _snapshot(pulse: Any) -> AudioSnapshot:
    info = pulse.server_info()
    sinks = pulse.sink_list()
    sources = pulse.source_list()
    sink_names = {s.index: s.name for s in sinks}
    source_names = {s.index: s.name for s in sources}
    return AudioSnapshot(
        sinks=tuple(s.name for s in sinks),
        sources=tuple(
            Source(s.name, is_monitor=s.monitor_of_sink not in (None, _INVALID_INDEX))
            for s in sources
        ),
        default_sink=info.default_sink_name or None,
        default_source=info.default_source_name or None,
        sink_inputs={
            i.index: sink_names[i.sink] for i in pulse.sink_input_list() if i.sink in sink_names
        },
        source_outputs={
            o.index: source_names[o.source]
            for o in pulse.source_output_list()
            if o.source in source_names
        },
    )


def _apply(pulse: Any, plan: AudioPlan) -> AudioResult:
    import pulsectl

    sinks = {s.name: s.index for s in pulse.sink_list()}
    sources = {s.name: s.index for s in pulse.source_list()}
    if plan.default_sink is not None:
        pulse.sink_default_set(plan.default_sink)
    if plan.default_source is not None:
        pulse.source_default_set(plan.default_source)
    moved_playback = []
    for index, sink in plan.sink_input_moves.items():
        try:
            pulse.sink_input_move(index, sinks[sink])
            moved_playback.append(index)
        except (pulsectl.PulseError, KeyError) as exc:  # the stream ended meanwhile
            _log.info("audio_stream_not_moved", stream=index, to=sink, error=repr(exc))
    moved_recording = []
    for index, source in plan.source_output_moves.items():
        try:
            pulse.source_output_move(index, sources[source])
            moved_recording.append(index)
        except (pulsectl.PulseError, KeyError) as exc:
            _log.info("audio_stream_not_moved", stream=index, to=source, error=repr(exc))
    info = pulse.server_info()
    return AudioResult(
        sink=info.default_sink_name or None,
        source=info.default_source_name or None,
        moved_playback=tuple(moved_playback),
        moved_recording=tuple(moved_recording),
    )


class PulseAudioRouter:
    """Hands the meeting's audio to a device's sink and source, and back.

    ``server`` is a PulseAudio server string (``unix:/run/user/1000/pulse/native``); None
    uses libpulse's usual lookup (PULSE_SERVER, then the user's runtime directory).
    """

    def __init__(self, server: str | None = None, *, client_name: str = "btogether") -> None:
        self._server = server
        self._client_name = client_name
        self._activation: Activation | None = None
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return self._activation is not None

    @property
    def activation(self) -> Activation | None:
        return self._activation

    async def snapshot(self) -> AudioSnapshot:
        """The sinks, sources, defaults and streams the server has now."""
        async with self._lock:
            return await asyncio.to_thread(self._with_pulse, _snapshot)

    async def activate(self, sink_name: str, source_name: str) -> AudioResult:
        """Make the sink and source the defaults and move every running stream to them."""
        async with self._lock:
            current = self._activation

            def run(pulse: Any) -> tuple[AudioResult, Activation]:
                plan, activation = plan_activation(
                    _snapshot(pulse), sink_name, source_name, current
                )
                return _apply(pulse, plan), activation

            result, activation = await asyncio.to_thread(self._with_pulse, run)
            self._activation = activation
        _log.info(
            "audio_activated",
            sink=sink_name,
            source=source_name,
            previous_sink=activation.previous_sink,
            previous_source=activation.previous_source,
            moved_playback=len(result.moved_playback),
            moved_recording=len(result.moved_recording),
        )
        return result

    async def release(self) -> AudioResult | None:
        """Restore the previous defaults and move the streams back; None if not active."""
        async with self._lock:
            activation = self._activation
            if activation is None:
                return None

            def run(pulse: Any) -> AudioResult:
                return _apply(pulse, plan_release(_snapshot(pulse), activation))

            result = await asyncio.to_thread(self._with_pulse, run)
            self._activation = None
        _log.info(
            "audio_released",
            sink=result.sink,
            source=result.source,
            moved_playback=len(result.moved_playback),
            moved_recording=len(result.moved_recording),
        )
        return result

    def _with_pulse(self, operation: Callable[[Any], _T]) -> _T:
        try:
            import pulsectl
        except ImportError as exc:  # pragma: no cover - pulsectl is in the desktop extra
            raise AudioError(
                "pulsectl is not installed (pip install 'btogether[desktop]')"
            ) from exc
        where = self._server or "the default PulseAudio/PipeWire server"
        try:
            pulse = pulsectl.Pulse(self._client_name, server=self._server)
        except pulsectl.PulseError as exc:
            raise AudioServerUnavailable(f"cannot reach {where}: {exc}") from exc
        try:
            return operation(pulse)
        except pulsectl.PulseDisconnected as exc:
            raise AudioServerUnavailable(f"lost {where}: {exc}") from exc
        except pulsectl.PulseError as exc:
            raise AudioError(f"{where} refused: {exc}") from exc
        finally:
            pulse.close()
