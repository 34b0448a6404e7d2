"""A command's stdout after its reader went away (``btogether … | head``)."""

from __future__ import annotations

import os
import sys


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again.

    Call it on BrokenPipeError, then exit as usual, like other command-line tools.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
