"""In-memory bus: same semantics as the Kafka feeds (partitions, groups, transactions, DLQ)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.core.errors import FeedError, RetriableFeedError
from feeds.memory import MemoryBus, MemorySink, MemorySource
from feeds.ports import (
    OutRecord,
    Record,
    Sink,
    Source,
    TopicPartition,
    TransactionalSink,
    dead_letter,
    next_offsets,
    send_to_dlq,
    transaction,
)


def _flat(batches: dict[str, list[Record]]) -> list[Record]:
    return [r for recs in batches.values() for r in recs]


def test_memory_feeds_implement_the_port_protocols() -> None:
    bus = MemoryBus()
    assert isinstance(MemorySource(bus, ["a"]), Source)
    assert isinstance(MemorySink(bus), Sink)
    assert isinstance(MemorySink(bus, transactional=True), TransactionalSink)


async def test_memory_send_then_getmany_returns_records_in_offset_order_with_headers() -> None:
    bus = MemoryBus()
    async with MemorySink(bus) as sink:
        for i in range(5):
            await sink.send("md", f"v{i}".encode(), key=b"FROG", headers=(("h", b"x"),))
    async with MemorySource(bus, ["md"]) as src:
        got = await src.getmany(timeout_ms=0)
    recs = got["md"]
    assert [r.value for r in recs] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert [r.offset for r in recs] == [0, 1, 2, 3, 4]
    assert recs[0].key == b"FROG" and recs[0].header("h") == b"x"


async def test_memory_same_key_same_partition_and_max_records_respected() -> None:
    bus = MemoryBus(default_partitions=4)
    async with MemorySink(bus) as sink:
        await sink.send_many([OutRecord("t", str(i).encode(), key=f"k{i % 3}".encode()) for i in range(30)])
    parts = {r.key: {x.partition for x in bus.records("t") if x.key == r.key} for r in bus.records("t")}
    assert all(len(p) == 1 for p in parts.values())
    async with MemorySource(bus, ["t"]) as src:
        first = _flat(await src.getmany(max_records=7))
        rest = _flat(await src.getmany(max_records=100))
    assert len(first) == 7 and len(rest) == 23
    assert {(r.partition, r.offset) for r in first + rest} == {(r.partition, r.offset) for r in bus.records("t")}


async def test_memory_getmany_waits_for_a_late_record_until_timeout() -> None:
    bus = MemoryBus()
    async with MemorySource(bus, ["t"]) as src, MemorySink(bus) as sink:
        assert await src.getmany(timeout_ms=20) == {}

        async def later() -> None:
            await asyncio.sleep(0.05)
            await sink.send("t", b"late")

        task = asyncio.create_task(later(), name="late-producer")
        t0 = time.monotonic()
        got = await src.getmany(timeout_ms=5000)
        await task
    assert [r.value for r in got["t"]] == [b"late"]
    assert time.monotonic() - t0 < 4.0


async def test_memory_group_commit_then_new_source_resumes_after_committed_offset() -> None:
    bus = MemoryBus()
    async with MemorySink(bus) as sink:
        await sink.send_many([OutRecord("t", str(i).encode()) for i in range(4)])
    async with MemorySource(bus, ["t"], group_id="g") as src:
        recs = _flat(await src.getmany())
        await src.commit(next_offsets(recs[:2]))
        assert await src.committed(TopicPartition("t", 0)) == 2
    async with MemorySource(bus, ["t"], group_id="g") as src:
        assert [r.value for r in _flat(await src.getmany())] == [b"2", b"3"]
    async with MemorySource(bus, ["t"], group_id="other", auto_offset_reset="latest") as src:
        assert await src.getmany() == {}


async def test_memory_commit_without_group_and_use_before_start_raise_feed_error() -> None:
    bus = MemoryBus()
    src = MemorySource(bus, ["t"])
    with pytest.raises(FeedError):
        await src.getmany()
    async with src:
        with pytest.raises(FeedError):
            await src.commit()
    with pytest.raises(FeedError):
        await MemorySink(bus).send("t", b"x")


async def test_memory_transaction_commit_applies_records_and_offsets_atomically() -> None:
    bus = MemoryBus()
    async with MemorySink(bus) as plain:
        await plain.send("in", b"a")
    async with MemorySource(bus, ["in"], group_id="g") as src, MemorySink(bus, transactional=True) as tx:
        consumed = _flat(await src.getmany())
        async with transaction(tx):
            await tx.send("out", b"child", key=b"P1")
            await tx.send("state", b"s", key=b"P1")
            await tx.send_offsets(next_offsets(consumed), "g")
            assert bus.records("out") == [] and bus.committed("g", TopicPartition("in", 0)) is None
        assert bus.values("out") == [b"child"] and bus.values("state") == [b"s"]
        assert bus.committed("g", TopicPartition("in", 0)) == 1


async def test_memory_transaction_abort_leaves_no_records_and_no_offsets() -> None:
    bus = MemoryBus()
    async with MemorySink(bus, transactional=True) as tx:
        with pytest.raises(ValueError, match="boom"):
            async with transaction(tx):
                await tx.send("out", b"doomed")
                await tx.send_offsets({TopicPartition("in", 0): 5}, "g")
                raise ValueError("boom")
        with pytest.raises(FeedError):
            await tx.send("out", b"outside a transaction")
    assert bus.records("out") == [] and bus.committed("g", TopicPartition("in", 0)) is None


async def test_memory_transaction_misuse_raises_feed_error() -> None:
    bus = MemoryBus()
    async with MemorySink(bus) as plain, MemorySink(bus, transactional=True) as tx:
        with pytest.raises(FeedError):
            await plain.begin()
        with pytest.raises(FeedError):
            await tx.commit()
        await tx.begin()
        with pytest.raises(FeedError):
            await tx.begin()
        await tx.abort()


async def test_memory_fail_hook_injects_retriable_error_and_nothing_is_written() -> None:
    bus = MemoryBus()

    def fail(rec: OutRecord) -> BaseException | None:
        return RetriableFeedError("broker down") if rec.value == b"bad" else None

    async with MemorySink(bus, fail=fail, max_message_bytes=10) as sink:
        with pytest.raises(RetriableFeedError):
            await sink.send_many([OutRecord("t", b"ok"), OutRecord("t", b"bad")])
        with pytest.raises(FeedError, match="max_message_bytes"):
            await sink.send("t", b"x" * 11)
        await sink.send("t", b"ok")
    assert bus.values("t") == [b"ok"]


async def test_memory_dlq_copy_keeps_original_bytes_key_headers_and_adds_error() -> None:
    bus = MemoryBus()
    async with MemorySink(bus) as sink:
        await sink.send("md", b"\xffnot json", key=b"FROG", headers=(("trace", b"1"),))
    async with MemorySource(bus, ["md"]) as src, MemorySink(bus) as sink:
        (rec,) = _flat(await src.getmany())
        await send_to_dlq(sink, rec, "invalid_utf8", "byte 0xff")
    (dead,) = bus.records("md.dlq")
    assert dead.value == b"\xffnot json" and dead.key == b"FROG"
    assert dead.header("error") == b"invalid_utf8" and dead.header("trace") == b"1"
    assert dead.header("source.offset") == b"0" and dead.header("source.topic") == b"md"
    assert dead_letter(rec, "x", dlq_topic="custom").topic == "custom"
