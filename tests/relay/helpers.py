"""Shared steps for the relay tests (sight a device, pair a laptop with its phone)."""

from __future__ import annotations

from relay.model import Device
from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.relay.conftest import RelayHarness


async def sight(
    relay: RelayHarness, laptop: RelayLink, device: Device, rssi: int = -60
) -> list[wire.DeviceDescriptor]:
    return (await laptop.report_sightings([(relay.eid(device), rssi)])).devices


async def pair(
    relay: RelayHarness, laptop: RelayLink, phone_link: RelayLink, phone: Device
) -> None:
    await sight(relay, laptop, phone)
    request = await laptop.pair_request(phone.id)
    prompt = await phone_link.next_event("pair.prompt")
    assert isinstance(prompt, wire.PairPrompt) and prompt.request_id == request.request_id
    await phone_link.pair_confirm(request.request_id, True)
    await laptop.pair_confirm(request.request_id, True)
    await laptop.next_event("pair.completed")
    await phone_link.next_event("pair.completed")
