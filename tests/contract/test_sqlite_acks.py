"""SQLite only: a lock acknowledgement is not committed on its own at once (it need not be
durable: a lost one only re-sends a command the phone ignores) but rides in the next lock
change's transaction, or is written within ``ACK_FLUSH_S`` — and on close."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from relay.storage.sqlite_store import ACK_FLUSH_S, SqliteStore
from tests.contract.test_store import NOW, tenant_with_people


def _acked_in_file(path: Path, phone_id: str) -> int:
    """What another process reading the file sees."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT acked_seq FROM lock_states WHERE phone_id = ?", (phone_id,)
        ).fetchone()
    return int(row[0])


async def test_an_ack_rides_in_the_next_lock_change_or_is_written_within_a_moment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relay.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await tenant_with_people(store)
    (first,) = await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW)
    commits = store.writer_stats.commits
    await store.ack_lock("ph-alice", first.seq)
    await asyncio.sleep(0.005)  # loop iterations pass, as between two messages
    assert store.writer_stats.commits == commits  # not written on its own
    assert not (await store.lock_record("ph-alice")).pending  # type: ignore[union-attr]
    (second,) = await store.set_desired_lock(["ph-alice"], "unlocked", "alice", "L1", NOW + 1)
    assert store.writer_stats.commits == commits + 1  # the ack and the change: one commit
    assert _acked_in_file(path, "ph-alice") == first.seq

    await store.ack_lock("ph-alice", second.seq)  # alone: no change follows
    await asyncio.sleep(4 * ACK_FLUSH_S)
    assert _acked_in_file(path, "ph-alice") == second.seq

    (third,) = await store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW + 2)
    await store.ack_lock("ph-alice", third.seq)
    await store.close()  # a stop does not wait out the delay, nor lose the ack
    assert _acked_in_file(path, "ph-alice") == third.seq


async def test_lock_changes_are_answered_once_committed_by_either_writer(
    tmp_path: Path,
) -> None:
    """The default writer commits in the event loop and answers at once; with
    ``synchronous="full"`` a thread commits (and fsyncs) and the answer comes back to the
    loop: either way the answer carries the committed records, after the commit."""
    for synchronous in ("normal", "full"):
        path = tmp_path / f"{synchronous}.sqlite3"
        store = SqliteStore(path, synchronous=synchronous)
        await store.open()
        await tenant_with_people(store)
        changes = await asyncio.gather(
            store.set_desired_lock(["ph-alice"], "locked", "alice", "L1", NOW),
            store.set_desired_lock(["ph-alice"], "unlocked", "alice", "L1", NOW + 1),
        )
        assert [(r.seq, r.state) for (r,) in changes] == [(1, "locked"), (2, "unlocked")]
        with sqlite3.connect(path) as conn:  # another process sees what was answered
            row = conn.execute(
                "SELECT seq, state FROM lock_states WHERE phone_id = 'ph-alice'"
            ).fetchone()
        assert tuple(row) == (2, "unlocked")
        assert await store.lock_record("ph-alice") == changes[1][0]
        await store.close()
