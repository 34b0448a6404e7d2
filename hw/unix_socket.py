"""Whether a unix socket has a live server behind it (or is only a file left behind)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def socket_answers(path: Path, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(timeout)
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
