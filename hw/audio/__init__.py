"""Audio hand-off: make a device's speakerphone and microphone the meeting's audio, and back.

One backend per platform, chosen as every piece of ``hw`` chooses (:mod:`hw.backends`, the
bleak way; ``backend=`` or ``BTOGETHER_AUDIO_BACKEND`` overrides): Linux uses PulseAudio
or PipeWire through pulsectl (:mod:`hw.audio.pulse`).
"""

from __future__ import annotations

import enum

from hw.audio.base import (
    AudioDeviceNotFound,
    AudioError,
    AudioResult,
    AudioRouter,
    AudioServerUnavailable,
    UnsupportedPlatformError,
)
from hw.backends import NoBackendForPlatform, UnknownBackend, choose_backend

__all__ = [
    "AudioBackend",
    "AudioDeviceNotFound",
    "AudioError",
    "AudioResult",
    "AudioRouter",
    "AudioServerUnavailable",
    "UnsupportedPlatformError",
    "create_audio_router",
]


BACKEND_ENV = "BTOGETHER_AUDIO_BACKEND"


class AudioBackend(enum.StrEnum):
    PULSE = "pulse"  # PulseAudio, or PipeWire's pulse server


FOR_SYSTEM = {"Linux": AudioBackend.PULSE}


def create_audio_router(
    server: str | None = None,
    *,
    backend: AudioBackend | str | None = None,
    system: str | None = None,
) -> AudioRouter:
    """The audio router for this platform; ``server`` is a PulseAudio server string or None."""
    try:
        choose_backend(
            AudioBackend,
            FOR_SYSTEM,
            what="audio hand-off",
            env_var=BACKEND_ENV,
            chosen=backend,
            system=system,
        )
    except (UnknownBackend, NoBackendForPlatform) as exc:
        raise UnsupportedPlatformError(str(exc)) from None
    from hw.audio.pulse import PulseAudioRouter

    return PulseAudioRouter(server)
