"""Nothing the relay acknowledged is lost when its process is killed (``kill -9``) at full load.

The default durability (``sqlite_synchronous = "normal"``) writes every commit to the
WAL before a lock change is answered, without an fsync: that survives a crash of the
relay process (the kernel keeps the written pages), not a power loss (``"full"`` is for
that). Here a real ``btogether relay serve`` process is loaded by paired laptops and
phones locking and acknowledging as fast as they can, killed with SIGKILL at a moment
not chosen by the relay, and the file is read afterwards: every ``lock.set`` the relay
answered must be there, with its state. Repeated five times on the same file, so each
restart also recovers a file left by a kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from relay.admin.store_admin import Admin
from relay.protocol import wire
from relay.storage.sqlite_store import SqliteStore

PAIRS = 20
REPEATS = 5
LOAD_SECONDS = (0.6, 1.2)  # killed at a random moment in this window of full load
FLOOD_LIMITS_OFF = {
    "BTOGETHER_RATE_PER_SECOND": "1000000",
    "BTOGETHER_RATE_BURST": "1000000",
}


async def _fleet(db: Path) -> list[tuple[str, str, str, str]]:
    store = SqliteStore(db)
    await store.open()
    try:
        admin = Admin(store)
        tenant = await admin.create_tenant("Crash")
        fleet = await admin.create_phone_fleet(tenant.id, PAIRS, pair=True)
    finally:
        await store.close()
    return [
        (user_cred.token, f"laptop-{n}", phone_cred.token, phone.id)
        for n, (_, phone, user_cred, phone_cred) in enumerate(fleet)
    ]


async def _start_relay(db: Path, port_file: Path) -> asyncio.subprocess.Process:
    port_file.unlink(missing_ok=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "btogether", "relay", "serve", "--port", "0",
        "--db", str(db), "--port-file", str(port_file),
        env={**os.environ, **FLOOD_LIMITS_OFF},
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        assert process.returncode is None, "the relay did not start"
        assert time.monotonic() < deadline, "the relay did not start in 60 s"
        await asyncio.sleep(0.05)
    return process


async def _open(url: str, token: str, laptop_id: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"}
    if laptop_id:
        headers[wire.CLIENT_ID_HEADER] = laptop_id
    ws = await connect(
        url, additional_headers=headers, subprotocols=[wire.SUBPROTOCOL],  # type: ignore[list-item]
        compression=None, open_timeout=30,
    )  # fmt: skip
    assert '"welcome"' in str(await ws.recv())
    return ws


async def _phone(ws: ClientConnection) -> None:
    n = 0
    async for message in ws:
        data = json.loads(message)
        if data.get("type") == "lock.command":
            n += 1
            await ws.send(json.dumps({"type": "lock.ack", "id": n, "seq": data["seq"]}))


async def _laptop(
    ws: ClientConnection, answered: dict[str, tuple[int, str]], replies: list[int]
) -> None:
    """Lock and unlock as fast as the relay answers; note each answered change."""
    n = 0
    while True:
        n += 1
        state = "locked" if n % 2 else "unlocked"
        await ws.send(json.dumps({"type": "lock.set", "id": n, "state": state}))
        while True:
            data: dict[str, Any] = json.loads(await ws.recv())
            if data.get("type") == "result" and data.get("id") == n:
                break
            assert data.get("type") != "error", data
        replies[0] += 1
        for phone in data["result"]["phones"]:
            seq = phone["seq"]
            if seq > answered.get(phone["phone_id"], (0, ""))[0]:
                answered[phone["phone_id"]] = (seq, state)


async def _load_then_kill(
    db: Path, port_file: Path, fleet: list[tuple[str, str, str, str]], seconds: float
) -> tuple[dict[str, tuple[int, str]], int]:
    process = await _start_relay(db, port_file)
    url = f"ws://127.0.0.1:{int(port_file.read_text())}/"
    answered: dict[str, tuple[int, str]] = {}
    replies = [0]
    sockets: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for laptop_token, laptop_id, phone_token, _ in fleet:
            phone = await _open(url, phone_token, None)
            laptop = await _open(url, laptop_token, laptop_id)
            sockets += [phone, laptop]
            tasks.append(asyncio.create_task(_phone(phone)))
            tasks.append(asyncio.create_task(_laptop(laptop, answered, replies)))
        await asyncio.sleep(seconds)
        process.send_signal(signal.SIGKILL)  # at full load, mid-commit as likely as not
        await asyncio.wait_for(process.wait(), 10)
        # Whatever is in flight now was not answered; what was answered is noted already.
        return dict(answered), replies[0]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def _stored(db: Path) -> dict[str, tuple[int, str]]:
    """The lock states in the file, read as a new process would (recovering the WAL)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT phone_id, seq, state FROM lock_states").fetchall()
    return {phone_id: (seq, state) for phone_id, seq, state in rows}


async def test_no_answered_lock_change_is_lost_when_the_relay_is_killed_at_full_load(
    tmp_path: Path,
) -> None:
    db = tmp_path / "relay.sqlite3"
    fleet = await _fleet(db)
    rng = random.Random(15)
    for repeat in range(REPEATS):
        answered, replies = await _load_then_kill(
            db, tmp_path / "port", fleet, rng.uniform(*LOAD_SECONDS)
        )
        # Full load: every laptop's changes on average, not a trickle.
        assert replies >= PAIRS, f"run {repeat}: only {replies} lock changes answered"
        stored = _stored(db)
        for phone_id, (seq, state) in answered.items():
            assert phone_id in stored, f"run {repeat}: {phone_id}'s answered lock is gone"
            stored_seq, stored_state = stored[phone_id]
            assert stored_seq >= seq, (
                f"run {repeat}: {phone_id} was answered seq {seq}, the file has {stored_seq}"
            )
            if stored_seq == seq:
                assert stored_state == state
        print(f"run {repeat}: {replies} lock changes answered before kill -9, all in the file")
