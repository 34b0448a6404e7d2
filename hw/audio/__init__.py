"""Audio hand-off: make a device's speakerphone and microphone the meeting's audio, and back.

One backend per platform, chosen here; Linux uses PulseAudio or PipeWire through pulsectl
(:mod:`hw.audio.pulse`).
"""

from __future__ import annotations

import sys

from hw.audio.base import (
    AudioDeviceNotFound,
    AudioError,
    AudioResult,
    AudioRouter,
    AudioServerUnavailable,
    UnsupportedPlatformError,
)

__all__ = [
    "AudioDeviceNotFound",
    "AudioError",
    "AudioResult",
    "AudioRouter",
    "AudioServerUnavailable",
    "UnsupportedPlatformError",
    "create_audio_router",
]


def create_audio_router(server: str | None = None, *, platform: str = sys.platform) -> AudioRouter:
    """The audio router for this platform; ``server`` is a PulseAudio server string or None."""
    if platform.startswith("linux"):
        from hw.audio.pulse import PulseAudioRouter

        return PulseAudioRouter(server)
    raise UnsupportedPlatformError(f"audio hand-off is not supported on {platform} yet")
