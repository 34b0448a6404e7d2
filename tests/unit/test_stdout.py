"""hw.stdout.quiet_stdout: a command whose reader went away exits 0 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WRITER = """
from hw.stdout import quiet_stdout
try:
    for _ in range(100_000):
        print("x" * 100)
except BrokenPipeError:
    quiet_stdout()
print("bye")  # what a command still writes on its way out goes nowhere, without an error
"""


def test_a_writer_whose_reader_left_exits_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"x" * 100 + b"\n"
    process.stdout.close()  # like `| head -1`
    err = process.stderr.read()
    assert process.wait(timeout=30) == 0, err
    assert err == b""
