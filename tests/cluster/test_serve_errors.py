"""``btogether relay serve --redis …`` says in one line why it cannot start: a URL that is
not Redis, a Redis nobody answers at (no traceback, exit 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from btogether.cluster import free_port


@pytest.mark.parametrize(
    ("redis", "said"),
    [
        ("http://127.0.0.1:1/", "not a Redis URL: 'http://127.0.0.1:1/' (use redis://host:port/db)"),
        # A port nobody listens on, chosen when the test runs (ids must be the same in
        # every pytest-xdist worker).
        ("redis://127.0.0.1:{free_port}/0", "cannot reach Redis at 127.0.0.1:"),
    ],
    ids=["not-redis-url", "unreachable"],
)
def test_serve_refuses_a_redis_it_cannot_use_in_one_line(
    tmp_path: Path, redis: str, said: str
) -> None:
    redis = redis.format(free_port=free_port())
    done = subprocess.run(
        [sys.executable, "-m", "btogether.cli", "relay", "serve", "--port", "0",
         "--db", str(tmp_path / "relay.sqlite3"), "--redis", redis],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], done.stderr
    assert "Traceback" not in done.stderr
