"""Shared steps for the relay tests (sight a device, pair a laptop with its phone, refusals)."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from relay.domain.model import Device
from relay.protocol import wire
from relay.protocol.link import RelayLink, RequestFailed
from tests.relay.conftest import RelayHarness, World


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


async def _alice_online(
    relay: RelayHarness, world: World, laptop_id: str
) -> tuple[RelayLink, RelayLink, Device]:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone = await relay.device(world.alice.phone_credential)
    laptop = await relay.laptop(world.alice, laptop_id)
    return laptop, phone, world.alice.phone


async def sighted_alice(
    relay: RelayHarness, world: World, laptop_id: str = "laptop-1"
) -> tuple[RelayLink, RelayLink]:
    """Alice's phone and a laptop of hers connected, the laptop having just sighted the phone."""
    laptop, phone, device = await _alice_online(relay, world, laptop_id)
    await sight(relay, laptop, device)
    return laptop, phone


async def paired_alice(
    relay: RelayHarness, world: World, laptop_id: str = "laptop-1"
) -> tuple[RelayLink, RelayLink]:
    """Alice's phone and a laptop of hers connected and paired with each other."""
    laptop, phone, device = await _alice_online(relay, world, laptop_id)
    await pair(relay, laptop, phone, device)
    return laptop, phone


async def refusal(call: Awaitable[object]) -> wire.ErrorCode:
    """The error code the relay refuses ``call`` with (fails the test if it is accepted)."""
    with pytest.raises(RequestFailed) as info:
        await call
    return info.value.code
