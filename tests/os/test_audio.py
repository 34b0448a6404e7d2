"""Audio hand-off against a real headless PulseAudio with null devices and running streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hw.audio import (
    AudioDeviceNotFound,
    AudioServerUnavailable,
    UnsupportedPlatformError,
    create_audio_router,
)
from hw.audio.plan import AudioSnapshot
from hw.audio.pulse import PulseAudioRouter
from hw.standin.pulseaudio import HeadlessPulseAudio


async def _until(
    router: PulseAudioRouter, check: Callable[[AudioSnapshot], bool], timeout: float = 5.0
) -> AudioSnapshot:
    """Poll the server until ``check`` holds (streams take a moment to connect)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        snapshot = await router.snapshot()
        if check(snapshot):
            return snapshot
        if loop.time() > deadline:
            raise AssertionError(f"server never reached the expected state: {snapshot}")
        await asyncio.sleep(0.05)


def _on(mapping: dict[int, str], device: str) -> int:
    return sum(1 for d in mapping.values() if d == device)


async def _streams_running(pulse: HeadlessPulseAudio, router: PulseAudioRouter) -> AudioSnapshot:
    pulse.play("laptop_speaker")
    pulse.play("headset")
    pulse.record("laptop_mic")
    pulse.record("laptop_speaker.monitor")
    return await _until(router, lambda s: len(s.sink_inputs) == 2 and len(s.source_outputs) == 2)


async def test_activation_makes_the_phone_default_and_moves_every_stream(
    pulse: HeadlessPulseAudio,
) -> None:
    router = PulseAudioRouter(pulse.server)
    before = await _streams_running(pulse, router)
    assert (before.default_sink, before.default_source) == ("laptop_speaker", "laptop_mic")

    result = await router.activate("phone_speaker", "phone_mic")

    assert (result.sink, result.source) == ("phone_speaker", "phone_mic")
    assert len(result.moved_playback) == 2 and len(result.moved_recording) == 1
    after = await router.snapshot()
    assert (after.default_sink, after.default_source) == ("phone_speaker", "phone_mic")
    assert _on(after.sink_inputs, "phone_speaker") == 2
    assert _on(after.source_outputs, "phone_mic") == 1
    # A recording of the laptop's playback is not a microphone stream: it stays.
    assert _on(after.source_outputs, "laptop_speaker.monitor") == 1
    assert router.active


async def test_release_restores_defaults_and_moves_streams_back_where_they_were(
    pulse: HeadlessPulseAudio,
) -> None:
    router = PulseAudioRouter(pulse.server)
    await _streams_running(pulse, router)
    await router.activate("phone_speaker", "phone_mic")
    # A stream started during the meeting follows the phone as the new default...
    pulse.play("phone_speaker")
    await _until(router, lambda s: _on(s.sink_inputs, "phone_speaker") == 3)

    result = await router.release()

    assert result is not None
    assert (result.sink, result.source) == ("laptop_speaker", "laptop_mic")
    after = await router.snapshot()
    assert (after.default_sink, after.default_source) == ("laptop_speaker", "laptop_mic")
    assert _on(after.sink_inputs, "phone_speaker") == 0
    # ...and goes to the previous default; the headset stream returns to the headset.
    assert _on(after.sink_inputs, "laptop_speaker") == 2
    assert _on(after.sink_inputs, "headset") == 1
    assert _on(after.source_outputs, "laptop_mic") == 1
    assert not router.active
    assert await router.release() is None


async def test_unknown_device_is_a_clear_error_and_changes_nothing(
    pulse: HeadlessPulseAudio,
) -> None:
    router = PulseAudioRouter(pulse.server)
    before = await _streams_running(pulse, router)
    with pytest.raises(AudioDeviceNotFound, match=r"no sink named 'nope'.*phone_speaker"):
        await router.activate("nope", "phone_mic")
    with pytest.raises(AudioDeviceNotFound, match=r"no source named 'nope'.*phone_mic"):
        await router.activate("phone_speaker", "nope")
    assert await router.snapshot() == before
    assert not router.active


async def test_stream_ending_mid_meeting_does_not_break_release(
    pulse: HeadlessPulseAudio,
) -> None:
    router = PulseAudioRouter(pulse.server)
    stream = pulse.play("laptop_speaker")
    await _until(router, lambda s: len(s.sink_inputs) == 1)
    await router.activate("phone_speaker", "phone_mic")
    stream.terminate()
    stream.wait(timeout=5)
    await _until(router, lambda s: not s.sink_inputs)
    result = await router.release()
    assert result is not None and result.sink == "laptop_speaker"


async def test_no_audio_server_is_a_clear_error(tmp_path: object) -> None:
    router = PulseAudioRouter(f"unix:{tmp_path}/no-pulse.sock")
    with pytest.raises(AudioServerUnavailable, match="cannot reach unix:"):
        await router.activate("phone_speaker", "phone_mic")


async def test_server_gone_after_activation_is_a_clear_error(pulse: HeadlessPulseAudio) -> None:
    router = PulseAudioRouter(pulse.server)
    await router.activate("phone_speaker", "phone_mic")
    pulse.process.terminate()
    pulse.process.wait(timeout=5)
    with pytest.raises(AudioServerUnavailable):
        await router.release()
    assert router.active  # nothing was restored, so the activation is still remembered


def test_other_platforms_say_audio_is_not_supported() -> None:
    with pytest.raises(UnsupportedPlatformError, match="not supported on Darwin"):
        create_audio_router(system="Darwin")
    assert isinstance(create_audio_router("unix:/x", system="Linux"), PulseAudioRouter)
