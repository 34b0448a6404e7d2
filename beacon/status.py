"""The device's standing at the relay (``device.state``) and what it implies, pure.

The relay sends ``device.state`` after ``welcome`` and whenever it changes: whether the
device is waiting for activation, for sign-in, or signed in; the organisation and the
account; whether it may beacon; whether prompts are confirmed without asking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

DeviceStateName = Literal["waiting_for_activation", "waiting_for_sign_in", "signed_in"]


class DeviceStatus(BaseModel):
    """The last ``device.state`` the relay sent (fields beyond the contract are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state: DeviceStateName
    organisation: str = ""
    user_name: str | None = None
    beaconing: bool = True
    auto_confirm: bool = False
    legacy: bool = False  # derived from the welcome: the relay sent no device.state


def status_from_fields(fields: Mapping[str, object]) -> DeviceStatus:
    """Parse a ``device.state`` event's fields; raises pydantic's ValidationError."""
    return DeviceStatus.model_validate({k: v for k, v in fields.items() if k != "legacy"})


def legacy_status(user_id: str | None, organisation: str) -> DeviceStatus:
    """What to assume when a relay sends no ``device.state``: the welcome's account decides."""
    return DeviceStatus(
        state="signed_in" if user_id else "waiting_for_sign_in",
        organisation=organisation,
        beaconing=True,
        legacy=True,
    )


def should_advertise(status: DeviceStatus | None) -> bool:
    """Beacon only while signed in and allowed to: an idle device stays off the air."""
    return status is not None and status.state == "signed_in" and status.beaconing


def effective_auto_confirm(status: DeviceStatus | None, override: bool | None) -> bool:
    """The local configuration wins over the relay's policy; unknown means ask."""
    if override is not None:
        return override
    return status is not None and status.auto_confirm
