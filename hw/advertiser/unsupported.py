"""An advertiser for a platform we have no backend for yet: every use says so, clearly."""

from __future__ import annotations

from hw.advertiser import AdvertiserUnavailable, AdvertPayload, UnavailableReason


class UnsupportedAdvertiser:
    """Raises :class:`AdvertiserUnavailable` (``NOT_SUPPORTED``) with ``message`` on use."""

    def __init__(self, message: str) -> None:
        self._message = message

    async def start(self, payload: AdvertPayload) -> None:
        raise AdvertiserUnavailable(UnavailableReason.NOT_SUPPORTED, self._message)

    async def replace(self, payload: AdvertPayload) -> None:
        raise AdvertiserUnavailable(UnavailableReason.NOT_SUPPORTED, self._message)

    async def stop(self) -> None:
        return None
