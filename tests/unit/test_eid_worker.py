"""The EID worker process: the same EIDs as computed in the relay, answers in order."""

from __future__ import annotations

import asyncio
import io
import os
import sys

import pytest

from relay.domain.eid_worker import ProcessWorker, WorkerFailed, encode_request, serve
from relay.protocol.eid import eids_of_keys

KEYS = b"".join(bytes([n]) * 16 for n in range(1, 6))
WINDOWS = (1_000_000, 1_001_024, 65_536 * 40)


def test_serve_answers_each_request_with_the_eids_of_its_keys() -> None:
    requests = io.BytesIO(encode_request(KEYS, 10, WINDOWS) + encode_request(KEYS[:16], 4, (0,)))
    answers = io.BytesIO()
    serve(requests, answers)
    assert answers.getvalue() == b"".join(eids_of_keys(KEYS, 10, WINDOWS)) + b"".join(
        eids_of_keys(KEYS[:16], 4, (0,))
    )


def test_serve_stops_quietly_on_a_truncated_request() -> None:
    answers = io.BytesIO()
    serve(io.BytesIO(encode_request(KEYS, 10, WINDOWS)[:-3]), answers)
    assert answers.getvalue() == b""


async def test_overlapping_requests_each_get_their_own_answer() -> None:
    worker = ProcessWorker()
    try:
        batches = [os.urandom(16 * n) for n in (300, 1, 2000)]
        answers = await asyncio.gather(*(worker.compute(b, 10, WINDOWS) for b in batches))
        assert answers == [eids_of_keys(b, 10, WINDOWS) for b in batches]
    finally:
        await worker.close()


async def test_a_worker_that_exits_fails_the_call() -> None:
    worker = ProcessWorker([sys.executable, "-c", "pass"])
    with pytest.raises(WorkerFailed):
        await worker.compute(KEYS, 10, WINDOWS)
    await worker.close()


async def test_after_the_worker_is_killed_the_next_call_starts_another() -> None:
    worker = ProcessWorker()
    try:
        assert await worker.compute(KEYS, 10, WINDOWS) == eids_of_keys(KEYS, 10, WINDOWS)
        process = worker._process
        assert process is not None
        process.kill()
        await process.wait()
        with pytest.raises(WorkerFailed):
            await worker.compute(KEYS, 10, WINDOWS)
        assert await worker.compute(KEYS, 10, WINDOWS) == eids_of_keys(KEYS, 10, WINDOWS)
    finally:
        await worker.close()
