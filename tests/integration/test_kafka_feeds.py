"""KafkaSink/KafkaSource against a real broker: round trips, DLQ, SASL, topic admin."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from agent.core.errors import FeedError, ValidationError
from feeds.kafka import (
    RECORD_OVERHEAD_BYTES,
    KafkaConnection,
    KafkaSink,
    KafkaSource,
    create_topics,
    send_to_dlq,
)
from feeds.ports import OutRecord, Record, next_offsets
from feeds.wire.codec import SCHEMAS, decode, encode
from tests.integration.kafka_helpers import consume
from tests.integration.outside import Msg, Producer, read_committed
from tests.unit.feeds.wire_samples import sample_messages

pytestmark = pytest.mark.kafka


async def test_kafka_roundtrip_every_schema_arrives_equal_with_key(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("wire")
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    messages = sample_messages()
    assert {m.SCHEMA for _, m in messages} == set(SCHEMAS)
    async with KafkaSink(kafka_bootstrap) as sink:
        for key, msg in messages:
            await sink.send(topic, encode(msg), key=key, headers=(("schema", msg.SCHEMA.encode()),))
    async with KafkaSource(kafka_bootstrap, [topic], group_id=None) as source:
        got = await consume(source, len(messages))
    assert len(got) == len(messages)
    by_schema = {decode(r.value or b"").SCHEMA: r for r in got}
    for key, msg in messages:
        rec = by_schema[msg.SCHEMA]
        assert rec.key == key
        assert rec.header("schema") == msg.SCHEMA.encode()
        assert decode(rec.value or b"", expected={msg.SCHEMA}) == msg
    # same key -> same partition, so per-parent order is kept
    assert len({by_schema[s].partition for s in SCHEMAS if s != "mbp10.v1"}) == 1


async def test_kafka_send_many_pipelined_keeps_partition_order(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("bulk")
    await create_topics(kafka_bootstrap, [topic], partitions=2)
    out = [OutRecord(topic, str(i).encode(), key=b"AAA" if i % 2 else b"BBB") for i in range(500)]
    async with KafkaSink(kafka_bootstrap, linger_ms=5) as sink:
        await sink.send_many(out)
    async with KafkaSource(kafka_bootstrap, [topic], group_id=None) as source:
        got = await consume(source, 500)
    assert len(got) == 500
    for key in (b"AAA", b"BBB"):
        values = [int(r.value or b"") for r in got if r.key == key]
        assert values == sorted(values) and len(values) == 250


async def test_kafka_commit_then_new_consumer_in_group_resumes_after_committed_offset(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic, group = unique_topic("resume"), unique_topic("group")
    await create_topics(kafka_bootstrap, [topic])
    async with KafkaSink(kafka_bootstrap) as sink:
        for i in range(5):
            await sink.send(topic, f"m{i}".encode())
    async with KafkaSource(kafka_bootstrap, [topic], group_id=group) as source:
        first = await consume(source, 5)
        await source.commit(next_offsets(first[:3]))
        assert await source.committed(first[0].tp) == 3
    async with KafkaSource(kafka_bootstrap, [topic], group_id=group) as source:
        rest = await consume(source, 2)
    assert [r.value for r in rest] == [b"m3", b"m4"]


async def test_kafka_dlq_copy_has_original_bytes_key_and_error_header(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("md")
    dlq = f"{topic}.dlq"
    await create_topics(kafka_bootstrap, [topic, dlq])
    good = encode(sample_messages()[0][1])
    crossed = good.replace(b'"ask_px":[10.03,10.04]', b'"ask_px":[9.5,10.04]')
    assert crossed != good
    async with KafkaSink(kafka_bootstrap) as sink:
        await sink.send(topic, crossed, key=b"FROG", headers=(("trace", b"abc"),))
        async with KafkaSource(kafka_bootstrap, [topic], group_id=None) as source:
            (rec,) = await consume(source, 1)
        with pytest.raises(ValidationError) as err:
            decode(rec.value or b"", expected={"mbp10.v1"})
        assert err.value.reason == "crossed_book"
        await send_to_dlq(sink, rec, err.value.reason, str(err.value))
    async with KafkaSource(kafka_bootstrap, [dlq], group_id=None) as source:
        (dead,) = await consume(source, 1)
    assert isinstance(dead, Record)
    assert dead.value == crossed
    assert dead.key == b"FROG"
    assert dead.header("error") == b"crossed_book"
    assert dead.header("trace") == b"abc"
    assert dead.header("source.topic") == topic.encode()
    assert dead.header("source.offset") == str(rec.offset).encode()


async def test_kafka_create_topics_twice_is_idempotent_and_compacted_accepted(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("state")
    await create_topics(kafka_bootstrap, [topic], compacted=True)
    await create_topics(kafka_bootstrap, [topic], compacted=True)
    async with KafkaSink(kafka_bootstrap) as sink:
        await sink.send(topic, b"v", key=b"P1")
    with pytest.raises(FeedError):
        await create_topics(kafka_bootstrap, [unique_topic("bad")], configs={"cleanup.policy": "nonsense"})


async def test_kafka_sasl_plain_listener_roundtrip_and_wrong_password_refused(
    kafka_sasl_bootstrap: tuple[str, str, str], unique_topic: Callable[[str], str]
) -> None:
    address, user, password = kafka_sasl_bootstrap
    conn = KafkaConnection(
        bootstrap_servers=address, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_username=user, sasl_password=password,  # type: ignore[arg-type]
    )
    topic = unique_topic("sasl")
    await create_topics(conn, [topic])
    async with KafkaSink(conn) as sink:
        await sink.send(topic, b"secret-hello", key=b"k")
    async with KafkaSource(conn, [topic], group_id=None) as source:
        (rec,) = await consume(source, 1)
    assert rec.value == b"secret-hello"
    bad = conn.model_copy(update={"sasl_password": SecretStr("wrong"), "request_timeout_ms": 5000})
    with pytest.raises(FeedError):
        async with KafkaSink(bad):
            pass


async def _committed(bootstrap: str, topics: list[str], n: int, timeout_s: float = 30.0) -> list[Msg]:
    """The committed records of ``topics``, read again until there are ``n``: the broker writes a
    transaction's commit markers a little after the commit returns, so a read right after it can
    stop short of a partition's records."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = [m for t in topics for m in await asyncio.to_thread(read_committed, bootstrap, t)]
        if len(got) >= n or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_kafka_send_many_batches_keep_partitions_order_and_the_transaction(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    """send_many appends to one batch per partition (several when one fills): every record must land
    where Kafka's default partitioner puts its key (checked against librdkafka's murmur2 through the
    outside producer), in order within its partition, with its headers, inside the transaction."""
    a, b, twin = unique_topic("many-a"), unique_topic("many-b"), unique_topic("many-twin")
    await create_topics(kafka_bootstrap, [a, b, twin], partitions=4)
    keys = [f"P{i:03d}".encode() for i in range(40)]
    pad = "x" * 250  # ~1,200 records of ~300 bytes: several full 16 KB batches a partition
    out = [OutRecord(a if i % 3 else b, json.dumps({"i": i, "pad": pad}).encode(), key=keys[i % 40],
                     headers=(("n", str(i).encode()), ("agent", b"a1"))) for i in range(1200)]
    out.append(OutRecord(a, json.dumps({"i": 1200}).encode()))  # no key: any partition
    async with KafkaSink(kafka_bootstrap, transactional_id=unique_topic("tx")) as tx:
        await tx.begin()
        await tx.send_many(out)
        assert await asyncio.to_thread(read_committed, kafka_bootstrap, a) == []  # not before the commit
        await tx.commit()
    got = await _committed(kafka_bootstrap, [a, b], 1201)
    assert sorted(m.json()["i"] for m in got) == list(range(1201))
    for m in got:
        i = m.json()["i"]
        if i < 1200:
            assert m.key == keys[i % 40] and m.headers == {"n": str(i).encode(), "agent": b"a1"}
    for t in (a, b):
        for p in range(4):
            seq = [m.json()["i"] for m in got if m.topic == t and m.partition == p]
            assert seq == sorted(seq)
    outside = Producer(kafka_bootstrap)
    for k in keys:
        outside.send(twin, b"ref", key=k)
    assert outside.flush() == 0
    java = {m.key: m.partition for m in await asyncio.to_thread(read_committed, kafka_bootstrap, twin)}
    assert len(set(java.values())) > 1
    assert all(m.partition == java[m.key] for m in got if m.key is not None)


async def test_kafka_send_many_record_near_the_size_limit_keeps_its_place_and_one_over_it_is_refused(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    """A record within ``RECORD_OVERHEAD_BYTES`` of ``max_message_bytes`` leaves the batch path for
    ``producer.send``: the records before it in its partition must still come first; one larger
    than the limit is refused with a ``FeedError`` (as ``send`` always did), not sent."""
    topic = unique_topic("near-limit")
    await create_topics(kafka_bootstrap, [topic], partitions=2)
    conn = KafkaConnection(bootstrap_servers=kafka_bootstrap, max_message_bytes=8192)
    big = 8192 - RECORD_OVERHEAD_BYTES + 100  # past the threshold, under the limit with its overhead
    values = [f"{i:04d}".encode() + (b"x" * (big if i == 10 else 40)) for i in range(20)]
    async with KafkaSink(conn) as sink:
        await sink.send_many([OutRecord(topic, v, key=b"K") for v in values])
        with pytest.raises(FeedError):
            await sink.send_many([OutRecord(topic, b"y" * 9000, key=b"K")] + [OutRecord(topic, b"z", key=b"K")] * 9)
    got = await asyncio.to_thread(read_committed, kafka_bootstrap, topic)
    assert [m.value[:4] for m in got] == [f"{i:04d}".encode() for i in range(20)]
    assert len(got[10].value or b"") == 4 + big
