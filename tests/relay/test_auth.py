"""Authentication in the opening handshake: no valid credential, no websocket."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from relay.protocol import wire
from relay.protocol.link import RelayLink
from tests.relay.conftest import RelayHarness, World


async def _status_of(coro: object) -> int:
    with pytest.raises(InvalidStatus) as info:
        await coro  # type: ignore[misc]
    return info.value.response.status_code


async def test_connection_without_credential_is_refused_with_401(relay: RelayHarness) -> None:
    status = await _status_of(connect(relay.url, subprotocols=[wire.SUBPROTOCOL]))
    assert status == 401


async def test_unknown_credential_is_refused_with_401(relay: RelayHarness, world: World) -> None:
    status = await _status_of(RelayLink.connect(relay.url, "btg_" + "0" * 64, laptop_id="x"))
    assert status == 401


async def test_revoked_credential_is_refused(relay: RelayHarness, world: World) -> None:
    link = await relay.laptop(world.alice)
    await link.close()
    assert await relay.admin.revoke_credential(world.alice.credential.credential_id)
    assert await _status_of(relay.laptop(world.alice)) == 401


async def test_laptop_must_send_a_client_id(relay: RelayHarness, world: World) -> None:
    status = await _status_of(RelayLink.connect(relay.url, world.alice.credential.token))
    assert status == 401
    status = await _status_of(
        RelayLink.connect(relay.url, world.alice.credential.token, laptop_id="bad id with spaces")
    )
    assert status == 400


async def test_missing_subprotocol_is_refused_with_400(relay: RelayHarness, world: World) -> None:
    headers = {
        "Authorization": f"Bearer {world.alice.credential.token}",
        wire.CLIENT_ID_HEADER: "l1",
    }
    status = await _status_of(connect(relay.url, additional_headers=headers))
    assert status == 400


async def test_welcome_names_the_authenticated_principal(relay: RelayHarness, world: World) -> None:
    laptop = await relay.laptop(world.alice, "alice-laptop")
    assert world.alice.phone_credential is not None and world.alice.phone is not None
    phone = await relay.device(world.alice.phone_credential)
    assert laptop.welcome.principal.role == "laptop"
    assert laptop.welcome.principal.user_id == world.alice.user.id
    assert laptop.welcome.principal.laptop_id == "alice-laptop"
    assert laptop.welcome.protocol == wire.PROTOCOL_VERSION
    assert phone.welcome.principal.role == "device"
    assert phone.welcome.principal.device_id == world.alice.phone.id
    assert phone.welcome.principal.user_id == world.alice.user.id
    assert laptop.conn.subprotocol == wire.SUBPROTOCOL
    await laptop.close()
    await phone.close()


async def test_second_connection_of_a_device_replaces_the_first(
    relay: RelayHarness, world: World
) -> None:
    assert world.alice.phone_credential is not None
    first = await relay.device(world.alice.phone_credential)
    second = await relay.device(world.alice.phone_credential)
    code, _ = await first.closed
    assert code == wire.CloseCode.REPLACED
    assert (await second.ping()).server_time == relay.clock()
    await second.close()
