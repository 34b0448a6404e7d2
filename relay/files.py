"""Reading files a person points the relay at (settings, tokens, CSVs): bounded and explained.

Every file read on the relay's side goes through :func:`read_bounded`, so ``/dev/zero``
as a config file, a directory as a token file or a 3 GB CSV give one clear line, never
a traceback or an exhausted memory; files holding secrets may also be required to be
owner-only, as ssh requires of its keys.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileProblem(ValueError):
    """A file that cannot be used, with a message fit for a person."""


def read_bounded(path: Path, limit: int, what: str, *, private: bool = False) -> bytes:
    """At most ``limit`` bytes of ``path`` (more is an error); with ``private``, a file
    that group or others may read is refused with the ``chmod`` that fixes it."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise FileProblem(f"{what} {path} is a directory, not a file")
            if private and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise FileProblem(
                    f"{what} {path} may be read by other users (mode "
                    f"{stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}"
                )
            data = handle.read(limit + 1)
    except FileProblem:
        raise
    except IsADirectoryError:
        raise FileProblem(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise FileProblem(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileProblem(f"{what} {path} is larger than {limit} bytes; is it the right file?")
    return data


def read_text(path: Path, limit: int, what: str, *, private: bool = False) -> str:
    """Like :func:`read_bounded`, decoded as UTF-8 (a clear error if it is not)."""
    data = read_bounded(path, limit, what, private=private)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
