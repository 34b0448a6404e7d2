"""hw.unix_socket.socket_answers tells a live server from a socket file left behind."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from hw.unix_socket import socket_answers


def test_a_listening_socket_answers_and_a_left_behind_one_does_not() -> None:
    with tempfile.TemporaryDirectory(prefix="bt-", dir="/tmp") as directory:
        path = Path(directory) / "control.sock"
        assert socket_answers(path) is False  # nothing there at all
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        try:
            assert socket_answers(path) is True
        finally:
            server.close()
        assert path.exists()
        assert socket_answers(path) is False  # the file stays, nobody answers
