"""What an administrator's request produces, and the shape of a handler that produces it.

Shared by :mod:`relay.admin.service` and the modules that serve admin requests for it
(:mod:`relay.admin.edits`, :mod:`relay.web.account_admin`), so none of them needs to
import the service it is plugged into.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relay.domain.model import AdminRecord
from relay.domain.service import Delivery
from relay.domain.sessions import SessionEnd
from relay.protocol import wire


@dataclass(frozen=True, slots=True)
class AdminOutcome:
    """The caller's result, the events for others, and the sessions to close after."""

    result: wire.Message
    deliveries: list[Delivery] = field(default_factory=list)
    ends: list[SessionEnd] = field(default_factory=list)


Handler = Callable[[AdminRecord, Any, float], Awaitable[AdminOutcome]]
