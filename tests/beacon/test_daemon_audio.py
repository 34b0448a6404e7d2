"""Audio hand-off through the real daemon against a real headless PulseAudio."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest

from beacon.config import AudioSettings, BeaconSettings
from hw.audio.pulse import PulseAudioRouter
from hw.standin.pulseaudio import (
    HeadlessPulseAudio,
    PulseAudioUnavailable,
    start_headless_pulseaudio,
)
from relay.protocol import wire
from tests.beacon.conftest import Relay, StartDaemon, World, laptop, provisioned_phone


@pytest.fixture
def pulse() -> Iterator[HeadlessPulseAudio]:
    if shutil.which("pacat") is None:
        pytest.skip("pacat is missing (Debian: pulseaudio-utils); the test needs a running stream")
    try:
        server = start_headless_pulseaudio(
            sinks=("laptop_speaker", "phone_speaker"), sources=("laptop_mic", "phone_mic")
        )
    except PulseAudioUnavailable as exc:
        pytest.skip(f"this machine cannot run PulseAudio: {exc}")
    with server:
        yield server


async def _sink_of_streams(router: PulseAudioRouter, sink: str, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            snapshot = await router.snapshot()
            if snapshot.sink_inputs and all(s == sink for s in snapshot.sink_inputs.values()):
                return
            await asyncio.sleep(0.05)


async def test_audio_take_and_release_move_the_running_stream_to_the_phone_and_back(
    relay: Relay, world: World, pulse: HeadlessPulseAudio, start_daemon: StartDaemon
) -> None:
    await relay.admin.pair(world.alice.id, "laptop-1", world.phone.id)
    state_dir = provisioned_phone(relay, world)
    settings = BeaconSettings(audio=AudioSettings(sink="phone_speaker", source="phone_mic",
                                                  server=pulse.server))
    running = await start_daemon(state_dir, settings=settings)
    observer = PulseAudioRouter(pulse.server, client_name="observer")
    pulse.play("laptop_speaker")
    await _sink_of_streams(observer, "laptop_speaker")
    link = await laptop(relay, world)

    selected = await link.audio_select(world.phone.id, "standup")
    state = await link.next_event("audio.state")
    assert state == wire.AudioState(handoff_id=selected.handoff_id, phone_id=world.phone.id,
                                    state="active")
    snapshot = await observer.snapshot()
    assert (snapshot.default_sink, snapshot.default_source) == ("phone_speaker", "phone_mic")
    assert set(snapshot.sink_inputs.values()) == {"phone_speaker"}
    await running.console.wait_for("audio-take")

    await link.audio_release(selected.handoff_id)
    released = await link.next_event("audio.state")
    assert isinstance(released, wire.AudioState) and released.state == "released"
    await running.console.wait_for("audio-release")
    await _sink_of_streams(observer, "laptop_speaker")
    snapshot = await observer.snapshot()
    assert snapshot.default_sink == "laptop_speaker"
    await link.close()


async def test_audio_take_without_a_reachable_sound_server_fails_with_the_reason(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    await relay.admin.pair(world.alice.id, "laptop-1", world.phone.id)
    state_dir = provisioned_phone(relay, world)
    settings = BeaconSettings(audio=AudioSettings(
        sink="phone_speaker", source="phone_mic", server=f"unix:{state_dir}/no-pulse.sock"))
    await start_daemon(state_dir, settings=settings)
    link = await laptop(relay, world)
    selected = await link.audio_select(world.phone.id, "standup")
    state = await link.next_event("audio.state")
    assert isinstance(state, wire.AudioState) and state.handoff_id == selected.handoff_id
    assert state.state == "failed" and "cannot reach" in state.reason
    await link.close()


async def test_audio_take_with_no_speakerphone_configured_fails_with_the_reason(
    relay: Relay, world: World, start_daemon: StartDaemon
) -> None:
    await relay.admin.pair(world.alice.id, "laptop-1", world.phone.id)
    state_dir = provisioned_phone(relay, world)
    await start_daemon(state_dir)
    link = await laptop(relay, world)
    await link.audio_select(world.phone.id, "standup")
    state = await link.next_event("audio.state")
    assert isinstance(state, wire.AudioState) and state.state == "failed"
    assert "[audio] sink and source" in state.reason
    await link.close()
