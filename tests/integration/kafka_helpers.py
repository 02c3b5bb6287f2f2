"""Helpers shared by the integration tests against a real broker."""

from __future__ import annotations

import asyncio
import time

from feeds.ports import Record, Source, TopicPartition


async def consume(source: Source, n: int, timeout_s: float = 45.0) -> list[Record]:
    """Read until ``n`` records arrived (or the timeout); returns what was read."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for recs in (await source.getmany(timeout_ms=200)).values():
            out.extend(recs)
    return out


async def drain(source: Source, quiet_s: float = 1.5) -> list[Record]:
    """Read until nothing arrives for ``quiet_s`` seconds."""
    out: list[Record] = []
    while True:
        got = await source.getmany(timeout_ms=int(quiet_s * 1000))
        if not got:
            return out
        for recs in got.values():
            out.extend(recs)
        await asyncio.sleep(0)


async def committed_eventually(
    source: Source, tp: TopicPartition, expected: int | None, timeout_s: float = 10.0
) -> int | None:
    """The group's committed offset of ``tp``, polled until it equals ``expected`` or the timeout.

    A transaction's offsets become visible once the coordinator has written the
    commit markers, which happens just *after* ``commit_transaction`` returns.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        got = await source.committed(tp)
        if got == expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)
