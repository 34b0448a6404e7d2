"""What the daemon must remember across restarts: the last lock command it applied.

The relay numbers lock commands per phone and re-sends the pending one on every
connection; a daemon that restarted must not apply an older command again (the laptop
may have unlocked since).  The file also keeps the last device status the relay sent, so
a device that restarts while the relay is down goes on beaconing as it was.

The file is written atomically and owner-only; one that is missing, unreadable or
belongs to another device identity is replaced by a fresh memory (and logged), never
half-used.
"""

from __future__ import annotations

import json
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from beacon.status import DeviceStatus
from hw.secure_file import read_private, write_private

MEMORY_FILE = "daemon.json"
_log = structlog.get_logger(__name__)


class DaemonMemory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str
    last_lock_seq: int = Field(default=0, ge=0)
    last_lock_state: str | None = None
    status: DeviceStatus | None = None


def load_memory(state_dir: Path, device_id: str) -> DaemonMemory:
    path = state_dir / MEMORY_FILE
    try:
        memory = DaemonMemory.model_validate(json.loads(read_private(path)))
    except FileNotFoundError:
        return DaemonMemory(device_id=device_id)
    except (OSError, ValueError, ValidationError) as exc:
        _log.warning("daemon_memory_unusable", path=str(path), error=str(exc)[:200])
        return DaemonMemory(device_id=device_id)
    if memory.device_id != device_id:
        # The device was reset and provisioned again: the old sequence means nothing now.
        _log.info("daemon_memory_of_other_device", old=memory.device_id, new=device_id)
        return DaemonMemory(device_id=device_id)
    return memory


def save_memory(state_dir: Path, memory: DaemonMemory) -> None:
    write_private(state_dir / MEMORY_FILE, memory.model_dump_json().encode())
