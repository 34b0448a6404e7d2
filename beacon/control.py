"""The beacon daemon's local control socket: where it is, and who it is in messages.

``beacon status`` and ``beacon confirm`` talk to the running ``beacon run`` over the one
control-socket module both daemons use (:mod:`hw.control_socket`): a unix socket in the
state directory, owner-only, so only the device's own account — the one that holds its
credential — can confirm a pair request. Ops: ``status`` (the daemon's status object)
and ``confirm`` (``{"id": ID | null, "accept": bool}`` → ``{"id", "accepted"}``).
"""

from __future__ import annotations

from pathlib import Path

from hw.control_socket import Daemon

CONTROL_SOCKET = "control.sock"
BEACON = Daemon(name="the beacon daemon", start_with="btogether beacon run")


def control_path(state_dir: Path) -> Path:
    return state_dir / CONTROL_SOCKET
