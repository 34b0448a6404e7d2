"""Better Together pairing over real websockets: the allowed path and every refusal."""

from __future__ import annotations

from relay.protocol import wire
from tests.relay.conftest import RelayHarness, World
from tests.relay.helpers import pair, paired_alice, refusal, sight, sighted_alice


async def test_laptop_and_phone_pair_after_both_confirm(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop = await relay.laptop(world.alice, "alice-laptop", laptop_name="Alice's ThinkPad")
    phone = await relay.device(world.alice.phone_credential)
    await sight(relay, laptop, world.alice.phone)

    request = await laptop.pair_request(world.alice.phone.id)
    assert len(request.code) == 6 and request.code.isdigit()
    phone_prompt = await phone.next_event("pair.prompt")
    laptop_prompt = await laptop.next_event("pair.prompt")
    assert isinstance(phone_prompt, wire.PairPrompt) and isinstance(laptop_prompt, wire.PairPrompt)
    assert phone_prompt.code == laptop_prompt.code == request.code
    assert phone_prompt.laptop_name == "Alice's ThinkPad" and phone_prompt.user_name == "alice"

    assert (await phone.pair_confirm(request.request_id)).state == "awaiting_laptop"
    assert await laptop.pairings() == []  # not stored until both confirmed
    assert (await laptop.pair_confirm(request.request_id)).state == "paired"
    for link in (laptop, phone):
        done = await link.next_event("pair.completed")
        assert isinstance(done, wire.PairCompleted)
        assert done.pairing.phone_id == world.alice.phone.id
        assert done.pairing.laptop_id == "alice-laptop"
    assert [p.phone_id for p in await laptop.pairings()] == [world.alice.phone.id]
    assert [p.laptop_name for p in await phone.pairings()] == ["Alice's ThinkPad"]
    await laptop.close()
    await phone.close()


async def test_laptop_may_confirm_first(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await sighted_alice(relay, world)
    request = await laptop.pair_request(world.alice.phone.id)
    assert (await laptop.pair_confirm(request.request_id)).state == "awaiting_phone"
    assert await refusal(laptop.pair_confirm(request.request_id)) == wire.ErrorCode.WRONG_STATE
    assert (await phone.pair_confirm(request.request_id)).state == "paired"
    await laptop.close()
    await phone.close()


async def test_a_phone_pairs_with_several_laptops_of_its_owner(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone = await relay.device(world.alice.phone_credential)
    first = await relay.laptop(world.alice, "laptop-a")
    second = await relay.laptop(world.alice, "laptop-b")
    await pair(relay, first, phone, world.alice.phone)
    await pair(relay, second, phone, world.alice.phone)
    assert sorted(p.laptop_id for p in await phone.pairings()) == ["laptop-a", "laptop-b"]
    for link in (phone, first, second):
        await link.close()


async def test_pairing_with_a_colleagues_phone_is_refused(
    relay: RelayHarness, world: World
) -> None:
    assert world.bob.phone is not None
    laptop = await relay.laptop(world.alice)
    assert await refusal(laptop.pair_request(world.bob.phone.id)) == wire.ErrorCode.WRONG_ACCOUNT
    await laptop.close()


async def test_pairing_with_another_tenants_phone_is_not_found(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None
    laptop = await relay.laptop(world.carol)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.NOT_FOUND  # same answer as for an id that does not exist
    assert await refusal(laptop.pair_request("d_doesnotexist")) == wire.ErrorCode.NOT_FOUND
    await laptop.close()


async def test_pairing_is_refused_when_policy_disables_better_together(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone = await relay.device(world.alice.phone_credential)
    await relay.admin.set_user_policy(world.alice.user.id, world.disabled_policy.id)
    laptop = await relay.laptop(world.alice)
    await sight(relay, laptop, world.alice.phone)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.POLICY_DENIED
    await laptop.close()
    await phone.close()


async def test_tenant_default_policy_applies_to_accounts_without_one(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    await relay.admin.set_default_policy(world.contoso.id, world.disabled_policy.id)
    laptop, phone = await sighted_alice(relay, world)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.POLICY_DENIED
    await laptop.close()
    await phone.close()


async def test_pairing_needs_a_fresh_sighting(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    phone = await relay.device(world.alice.phone_credential)
    laptop = await relay.laptop(world.alice)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.NO_FRESH_SIGHTING
    await sight(relay, laptop, world.alice.phone)
    relay.clock.advance(relay.settings.sighting_freshness_s + 1)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.NO_FRESH_SIGHTING
    # A sighting by another laptop of the same user does not count for this one.
    other = await relay.laptop(world.alice, "laptop-2")
    await sight(relay, other, world.alice.phone)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.NO_FRESH_SIGHTING
    for link in (phone, laptop, other):
        await link.close()


async def test_pairing_with_an_offline_phone_is_refused(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None
    laptop = await relay.laptop(world.alice)
    await sight(relay, laptop, world.alice.phone)
    code = await refusal(laptop.pair_request(world.alice.phone.id))
    assert code == wire.ErrorCode.DEVICE_OFFLINE
    await laptop.close()


async def test_confirming_an_expired_request_is_refused(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await sighted_alice(relay, world)
    request = await laptop.pair_request(world.alice.phone.id)
    relay.clock.advance(relay.settings.pair_request_ttl_s + 1)
    assert await refusal(phone.pair_confirm(request.request_id)) == wire.ErrorCode.EXPIRED
    # The relay's ticker then tells both sides it ended.
    ended = await laptop.next_event("pair.ended", within=5)
    assert isinstance(ended, wire.PairEnded) and ended.reason == "expired"
    assert await laptop.pairings() == []
    await laptop.close()
    await phone.close()


async def test_declining_ends_the_request_for_the_other_side(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await sighted_alice(relay, world)
    request = await laptop.pair_request(world.alice.phone.id)
    assert (await phone.pair_confirm(request.request_id, accept=False)).state == "declined"
    ended = await laptop.next_event("pair.ended")
    assert isinstance(ended, wire.PairEnded) and ended.reason == "declined"
    assert await refusal(laptop.pair_confirm(request.request_id)) == wire.ErrorCode.NOT_FOUND
    await laptop.close()
    await phone.close()


async def test_only_the_parties_may_confirm(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await sighted_alice(relay, world)
    intruder = await relay.laptop(world.bob)
    request = await laptop.pair_request(world.alice.phone.id)
    assert await refusal(intruder.pair_confirm(request.request_id)) == wire.ErrorCode.NOT_FOUND
    for link in (phone, laptop, intruder):
        await link.close()


async def test_either_side_can_unpair(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone is not None and world.alice.phone_credential is not None
    laptop, phone = await paired_alice(relay, world, "laptop-a")
    await phone.pair_remove("laptop-a")
    removed = await laptop.next_event("pair.removed")
    assert isinstance(removed, wire.PairRemoved) and removed.phone_id == world.alice.phone.id
    assert await laptop.pairings() == []
    await pair(relay, laptop, phone, world.alice.phone)
    await laptop.pair_remove(world.alice.phone.id)
    assert isinstance(await phone.next_event("pair.removed"), wire.PairRemoved)
    assert await refusal(laptop.pair_remove(world.alice.phone.id)) == wire.ErrorCode.NOT_FOUND
    await laptop.close()
    await phone.close()


async def test_a_phone_cannot_ask_to_pair(relay: RelayHarness, world: World) -> None:
    assert world.alice.phone_credential is not None
    phone = await relay.device(world.alice.phone_credential)
    assert await refusal(phone.pair_request("d_x")) == wire.ErrorCode.FORBIDDEN
    await phone.close()
