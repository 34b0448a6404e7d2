"""Files that hold secrets (device credentials, identity keys): owner-only, written atomically.

A credential file readable by other local users would let any of them impersonate the
device to the relay, so like ssh we refuse to *read* one that is group- or
world-accessible rather than silently using it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class InsecureFileError(PermissionError):
    """A secret file that others can read or write."""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 (its directory 0700 if we create it).

    The new content replaces the old in one rename, so a crash leaves either the old
    file or the new one, never half of either.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """Read a secret file, refusing one that group or others may access."""
    with path.open("rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureFileError(
                f"{path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
                f"run: chmod 600 {path}"
            )
        return handle.read()


def wipe(path: Path) -> bool:
    """Overwrite and delete a secret file; False if there was none."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with path.open("r+b") as handle:
        handle.write(b"\x00" * size)
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    return True
