"""Transactional KafkaSink against a real broker: outputs and consumed offsets commit atomically."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.core.errors import ConfigError
from feeds.kafka import KafkaSink, KafkaSource, create_topics
from feeds.ports import TopicPartition, next_offsets, transaction
from tests.integration.kafka_helpers import committed_eventually, consume, drain

pytestmark = pytest.mark.kafka


async def test_kafka_transaction_outputs_and_offsets_visible_only_after_commit(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    src_topic, out_topic, group = unique_topic("in"), unique_topic("out"), unique_topic("g")
    await create_topics(kafka_bootstrap, [src_topic, out_topic])
    async with KafkaSink(kafka_bootstrap) as plain:
        for i in range(3):
            await plain.send(src_topic, f"in{i}".encode(), key=b"P1")
    tp = TopicPartition(src_topic, 0)
    async with (
        KafkaSource(kafka_bootstrap, [src_topic], group_id=group) as inputs,
        KafkaSink(kafka_bootstrap, transactional_id=unique_topic("tx")) as tx,
        KafkaSource(kafka_bootstrap, [out_topic], group_id=None, read_committed=True) as committed_reader,
        KafkaSource(kafka_bootstrap, [out_topic], group_id=None, read_committed=False) as dirty_reader,
    ):
        consumed = await consume(inputs, 3)
        assert len(consumed) == 3
        await tx.begin()
        await tx.send(out_topic, b"child-1", key=b"P1")
        await tx.send(out_topic, b"state-1", key=b"P1")
        await tx.send_offsets(next_offsets(consumed), group)
        # sent but not committed: a read_uncommitted reader sees it, read_committed does not
        assert [r.value for r in await consume(dirty_reader, 2)] == [b"child-1", b"state-1"]
        assert await drain(committed_reader, quiet_s=1.0) == []
        assert await inputs.committed(tp) is None
        await tx.commit()
        assert [r.value for r in await consume(committed_reader, 2)] == [b"child-1", b"state-1"]
        assert await committed_eventually(inputs, tp, 3) == 3


async def test_kafka_aborted_transaction_invisible_and_offsets_not_committed(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    src_topic, out_topic, group = unique_topic("in"), unique_topic("out"), unique_topic("g")
    await create_topics(kafka_bootstrap, [src_topic, out_topic])
    async with KafkaSink(kafka_bootstrap) as plain:
        await plain.send(src_topic, b"in0")
    tp = TopicPartition(src_topic, 0)
    async with (
        KafkaSource(kafka_bootstrap, [src_topic], group_id=group) as inputs,
        KafkaSink(kafka_bootstrap, transactional_id=unique_topic("tx")) as tx,
    ):
        consumed = await consume(inputs, 1)
        with pytest.raises(RuntimeError, match="decision failed"):
            async with transaction(tx):
                await tx.send(out_topic, b"doomed", key=b"P1")
                await tx.send_offsets(next_offsets(consumed), group)
                raise RuntimeError("decision failed")
        async with transaction(tx):
            await tx.send(out_topic, b"after-abort", key=b"P1")
        assert await inputs.committed(tp) is None
    async with KafkaSource(kafka_bootstrap, [out_topic], group_id=None) as reader:
        seen = await consume(reader, 1)
        seen += await drain(reader, quiet_s=1.0)
    assert [r.value for r in seen] == [b"after-abort"]


async def test_kafka_sink_without_transactional_id_refuses_begin(kafka_bootstrap: str) -> None:
    async with KafkaSink(kafka_bootstrap) as sink:
        with pytest.raises(ConfigError):
            await sink.begin()
