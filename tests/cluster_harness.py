"""Real Redis for the contract tests: ``redis-server`` on a free loopback port in a temp dir.

The server itself is :class:`btogether.cluster.LocalRedis` (the demo and the benchmark use
it too): no persistence, so a restart forgets every key — the worst case for the relay.
"""

from __future__ import annotations

import shutil

from btogether.cluster import LocalRedis as RedisServer
from btogether.cluster import free_port


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


__all__ = ["RedisServer", "free_port", "redis_available"]
