"""What a provisioned device keeps on disk: its relay, credential and identity key.

Written by ``btogether beacon provision``, read by ``btogether beacon run``, wiped by
``btogether beacon reset``.  The file holds secrets, so it is owner-only and written
atomically (:mod:`hw.secure_file`); a file that is unreadable, exposed or not what we
wrote is reported as such, never half-used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hw.secure_file import read_private, wipe, write_private
from relay.protocol.eid import DEFAULT_ROTATION_EXPONENT
from relay.protocol.frame import DEFAULT_COMPANY_ID

IDENTITY_FILE = "device.json"


class DeviceStateError(RuntimeError):
    """The device state file exists but cannot be used."""


class DeviceIdentity(BaseModel):
    """The device's binding to a tenant, as the relay issued it at provisioning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relay_url: Annotated[str, Field(pattern=r"^wss?://")]
    device_id: str
    tenant_id: str
    organisation: str = Field(description="the tenant's display name, shown on the device")
    credential: str = Field(description="bearer credential for the relay; secret")
    identity_key: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    rotation_exponent: Annotated[int, Field(ge=0, le=15)] = DEFAULT_ROTATION_EXPONENT
    company_id: Annotated[int, Field(ge=0, le=0xFFFF)] = DEFAULT_COMPANY_ID
    provisioned_at: float

    @property
    def identity_key_bytes(self) -> bytes:
        return bytes.fromhex(self.identity_key)


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where device state lives.

    ``$BTOGETHER_STATE_DIR``, else ``$XDG_STATE_HOME/btogether``, else
    ``~/.local/state/btogether``.
    """
    env = os.environ if env is None else env
    if env.get("BTOGETHER_STATE_DIR"):
        return Path(env["BTOGETHER_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "btogether"
    return Path(env.get("HOME", "~")).expanduser() / ".local/state/btogether"


def load_identity(state_dir: Path) -> DeviceIdentity | None:
    """The stored identity, or None if the device was never provisioned (or was reset)."""
    path = state_dir / IDENTITY_FILE
    try:
        raw = read_private(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeviceStateError(f"cannot read {path}: {exc}") from exc
    try:
        return DeviceIdentity.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise DeviceStateError(
            f"{path} is not a valid device state file ({exc.__class__.__name__}); "
            "run `btogether beacon reset` and provision the device again"
        ) from exc


def save_identity(state_dir: Path, identity: DeviceIdentity) -> Path:
    path = state_dir / IDENTITY_FILE
    write_private(path, identity.model_dump_json(indent=2).encode())
    return path


def wipe_identity(state_dir: Path) -> bool:
    """Forget the credential and key (factory reset); False if there was nothing to wipe."""
    return wipe(state_dir / IDENTITY_FILE)
