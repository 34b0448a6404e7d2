"""The device state file: round trip, absence, corruption, reset."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from beacon.state import (
    DeviceIdentity,
    DeviceStateError,
    default_state_dir,
    load_identity,
    save_identity,
    wipe_identity,
)

IDENTITY = DeviceIdentity(
    relay_url="ws://127.0.0.1:8765",
    device_id="dev-1",
    tenant_id="ten-1",
    organisation="Contoso",
    credential="secret-token",
    identity_key="00112233445566778899aabbccddeeff",
    provisioned_at=1_700_000_000.0,
)


def test_saved_identity_loads_back_from_an_owner_only_file(tmp_path: Path) -> None:
    path = save_identity(tmp_path, IDENTITY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(tmp_path) == IDENTITY
    assert IDENTITY.identity_key_bytes == bytes.fromhex("00112233445566778899aabbccddeeff")


def test_unprovisioned_device_has_no_identity(tmp_path: Path) -> None:
    assert load_identity(tmp_path) is None


def test_corrupt_state_file_is_reported_with_the_way_out(tmp_path: Path) -> None:
    path = save_identity(tmp_path, IDENTITY)
    path.write_bytes(b'{"relay_url": "ftp://nope"}')
    with pytest.raises(DeviceStateError, match="beacon reset"):
        load_identity(tmp_path)


def test_reset_wipes_the_identity(tmp_path: Path) -> None:
    save_identity(tmp_path, IDENTITY)
    assert wipe_identity(tmp_path) is True
    assert load_identity(tmp_path) is None
    assert wipe_identity(tmp_path) is False


def test_state_dir_follows_the_environment() -> None:
    assert default_state_dir({"BTOGETHER_STATE_DIR": "/srv/bt"}) == Path("/srv/bt")
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/btogether")
    assert default_state_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/btogether")
