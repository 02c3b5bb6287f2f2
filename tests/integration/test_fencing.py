"""Per-partition transactional producers on a real broker (``agent.live.fencing``).

The new owner of a partition fences the old one at once: the old owner's open
transaction on that partition is aborted (a read_committed reader never sees
it) and it can commit nothing more there, while its other partitions are
untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from agent.core.errors import FeedError
from agent.live.fencing import PartitionProducers, transactional_id
from feeds.kafka import KafkaSink, create_topics
from feeds.ports import OutRecord
from tests.integration.outside import read_committed

pytestmark = pytest.mark.kafka


def pool(bootstrap: str, group: str) -> PartitionProducers:
    return PartitionProducers(lambda tid: KafkaSink(bootstrap, transactional_id=tid, transaction_timeout_ms=60_000),
                              group_id=group, topic="parents")


async def test_new_owner_fences_the_old_one_per_partition_and_aborts_its_open_transaction(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    out, group = unique_topic("out"), unique_topic("g")
    await create_topics(kafka_bootstrap, [out])
    old, new = pool(kafka_bootstrap, group), pool(kafka_bootstrap, group)
    try:
        assert await old.own({0, 1}) == ([0, 1], [])
        assert old.transactional_id(1) == transactional_id(group, "parents", 1) == f"{group}.parents.1"
        zombie = old.get(0)
        await zombie.begin()
        await zombie.send_many([OutRecord(out, b"zombie", key=b"k")])  # an open transaction, then a stall
        t0 = time.perf_counter()
        assert await new.own({0}) == ([0], [])
        fence_s = time.perf_counter() - t0
        with pytest.raises(FeedError):
            await zombie.commit()
        for sink, value in ((old.get(1), b"old-1"), (new.get(0), b"new-0")):
            await sink.begin()
            await sink.send_many([OutRecord(out, value, key=b"k")])
            await sink.commit()
        with pytest.raises(FeedError):
            new.get(1)  # not owned: nowhere to commit
        assert await old.own({1}) == ([], [0])  # giving partition 0 up closes its (fenced) producer
    finally:
        await old.stop()
        await new.stop()
    got = sorted(m.value for m in await asyncio.to_thread(read_committed, kafka_bootstrap, out))
    assert got == [b"new-0", b"old-1"]
    assert fence_s < 10.0, f"the new owner waited {fence_s:.1f} s for the open transaction (timeout 60 s)"
