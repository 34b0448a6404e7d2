"""The macOS and Windows advertisers refuse every use with a reason a user can act on."""

from __future__ import annotations

import pytest

from hw.advertiser import (
    AdvertiserUnavailable,
    AdvertPayload,
    Backend,
    UnavailableReason,
    create_advertiser,
)


@pytest.mark.parametrize(
    ("backend", "platform"), [(Backend.CORE_BLUETOOTH, "macOS"), (Backend.WINRT, "Windows")]
)
async def test_advertising_on_a_platform_without_a_backend_is_not_supported(
    backend: Backend, platform: str
) -> None:
    advertiser = create_advertiser(backend)
    payload = AdvertPayload({0xFFFF: b"\x00"})
    for use in (advertiser.start, advertiser.replace):
        with pytest.raises(AdvertiserUnavailable, match=f"advertising on {platform}") as caught:
            await use(payload)
        assert caught.value.reason is UnavailableReason.NOT_SUPPORTED
        assert "run the beacon on Linux with BlueZ" in str(caught.value)
    await advertiser.stop()
