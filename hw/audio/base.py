"""What the audio backends promise: the router interface and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class AudioError(RuntimeError):
    """Audio routing failed; the message says why."""


class AudioServerUnavailable(AudioError):
    """No sound server could be reached."""


class AudioDeviceNotFound(AudioError):
    """The named sink or source does not exist on the sound server."""


class UnsupportedPlatformError(AudioError):
    """No audio backend exists for this platform yet."""


@dataclass(frozen=True)
class AudioResult:
    """What an activation or release did: the defaults now, and which streams moved."""

    sink: str | None
    source: str | None
    moved_playback: tuple[int, ...]
    moved_recording: tuple[int, ...]


class AudioRouter(Protocol):
    """Makes a device the audio device for a meeting and gives it back."""

    @property
    def active(self) -> bool: ...

    async def activate(self, sink_name: str, source_name: str) -> AudioResult: ...

    async def release(self) -> AudioResult | None: ...
