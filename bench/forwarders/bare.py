"""The ceiling for bench/relay.py: a bare websockets forwarder (no auth, no validation, no storage).

A client connects to ``/<its id>``; each text message is ``<target id>\\n<payload>`` and
the payload is sent on to the connection registered under the target id. Same
library, same settings (uvloop, no compression) as the relay.

    python bench/forwarders/bare.py --port 0 --port-file /tmp/port
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve


async def main(host: str, port: int, port_file: Path | None) -> None:
    peers: dict[str, ServerConnection] = {}

    async def handler(conn: ServerConnection) -> None:
        assert conn.request is not None
        me = conn.request.path.lstrip("/")
        peers[me] = conn
        try:
            async for message in conn:
                assert isinstance(message, str)
                target, _, payload = message.partition("\n")
                peer = peers.get(target)
                if peer is not None:
                    await peer.send(payload)
        finally:
            if peers.get(me) is conn:
                del peers[me]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with serve(handler, host, port, compression=None, ping_interval=20) as server:
        bound = server.sockets[0].getsockname()[1]
        if port_file:
            port_file.write_text(f"{bound}\n")
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.host, args.port, args.port_file))
    except ImportError:
        asyncio.run(main(args.host, args.port, args.port_file))
