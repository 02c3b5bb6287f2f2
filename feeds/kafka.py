"""aiokafka-based source and sink (``feeds.ports`` protocols) and an admin helper.

- :class:`KafkaConnection`: how to reach the cluster (PLAINTEXT, SSL, SASL
  PLAIN/SCRAM), passed through to every aiokafka client.
- :class:`KafkaSource`: consumer, batched ``getmany``, manual commits,
  ``read_committed`` by default (transactions of aborted producers stay invisible).
- :class:`KafkaSink`: idempotent producer (``enable_idempotence=True``,
  ``acks=all``); with a ``transactional_id`` also ``begin/commit/abort`` and
  ``send_offsets`` (consume-transform-produce exactly once).
- :func:`create_topics`: idempotent topic creation (optionally compacted).

Broker failures surface as ``agent.core.errors.RetriableFeedError`` (connection,
timeouts, leader changes: back off and retry) or ``FeedError`` (the rest).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiokafka
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from agent.core.errors import ConfigError, FeedError, RetriableFeedError
from feeds.ports import (
    AsyncComponent,
    Headers,
    OutRecord,
    Record,
    TopicPartition,
    dead_letter,
    send_to_dlq,
)

log = logging.getLogger("feeds.kafka")

__all__ = [
    "CONCURRENT_TXN_BACKOFF_MS", "KafkaConnection", "KafkaSink", "KafkaSource", "create_topics", "dead_letter",
    "send_to_dlq", "set_concurrent_txn_backoff",
]

TOPIC_ALREADY_EXISTS = 36


class KafkaConnection(BaseModel):
    """Connection settings shared by consumers, producers and the admin client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    client_id: str = "mpc-agent"
    max_message_bytes: int = Field(default=1 << 20, gt=0)
    request_timeout_ms: int = Field(default=30_000, gt=0)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS context for SSL/SASL_SSL (None for plaintext protocols)."""
        if not self.security_protocol.endswith("SSL"):
            return None
        ctx = create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=self.ssl_password.get_secret_value() if self.ssl_password else None,
        )
        ctx.check_hostname = self.ssl_check_hostname
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to every aiokafka client."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            "ssl_context": self.ssl_context(),
        }
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kw


def _conn(connection: KafkaConnection | str) -> KafkaConnection:
    return KafkaConnection(bootstrap_servers=connection) if isinstance(connection, str) else connection


def _feed_error(exc: BaseException, doing: str) -> FeedError:
    """Map an aiokafka error to ours: retriable errors back off, others do not."""
    if isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and getattr(exc, "retriable", False)):
        return RetriableFeedError(f"{doing}: {exc!r} (transient; the caller backs off and retries)")
    return FeedError(f"{doing}: {exc!r}")


class KafkaSource(AsyncComponent):
    """Consumer of ``topics`` in consumer group ``group_id`` with manual commits (``Source``)."""

    def __init__(
        self,
        connection: KafkaConnection | str,
        topics: Sequence[str],
        *,
        group_id: str | None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        read_committed: bool = True,
        **consumer_options: Any,
    ) -> None:
        self.connection = _conn(connection)
        self.topics, self.group_id = list(topics), group_id
        self._options = dict(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            max_partition_fetch_bytes=max(self.connection.max_message_bytes, 1 << 20),
            **consumer_options,
        )
        self._consumer: aiokafka.AIOKafkaConsumer | None = None

    @property
    def consumer(self) -> aiokafka.AIOKafkaConsumer:
        if self._consumer is None:
            raise FeedError("KafkaSource used before start(); use 'async with source:'")
        return self._consumer

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = aiokafka.AIOKafkaConsumer(*self.topics, **self.connection.client_kwargs(), **self._options)
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise _feed_error(exc, f"starting consumer of {self.topics}") from exc
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[str, list[Record]]:
        """Fetched records by topic (offset order within each partition)."""
        try:
            batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise _feed_error(exc, "fetching records") from exc
        out: dict[str, list[Record]] = {}
        new = tuple.__new__  # Record's own __new__ without its Python frame: ~0.1 us a record
        for tp, msgs in batches.items():
            topic, part = tp.topic, tp.partition
            out.setdefault(topic, []).extend([
                new(Record, (topic, part, m.offset, m.key, m.value,
                             tuple([(k, bytes(v)) for k, v in m.headers]) if m.headers else (), m.timestamp))
                for m in msgs
            ])  # (a list, not a generator, and no header tuple for the common record without one: ~30% cheaper)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (next offset to read per partition) or the current positions."""
        if self.group_id is None:
            raise FeedError("commit needs a group_id; construct the source with group_id=...")
        arg = None if offsets is None else {aiokafka.TopicPartition(*tp): off for tp, off in offsets.items()}
        try:
            await self.consumer.commit(arg)
        except KafkaError as exc:
            raise _feed_error(exc, "committing offsets") from exc

    async def committed(self, tp: TopicPartition) -> int | None:
        try:
            off = await self.consumer.committed(aiokafka.TopicPartition(*tp))
        except KafkaError as exc:
            raise _feed_error(exc, f"reading committed offset of {tp}") from exc
        return None if off is None or off < 0 else int(off)

    async def committed_positions(self, partitions: Sequence[Any]) -> dict[TopicPartition, int]:
        """Where to resume each of ``partitions``: its committed offset fetched *now* from the group
        coordinator, else the beginning or the end (``auto_offset_reset``). Positions nothing."""
        tps = [aiokafka.TopicPartition(tp[0], tp[1]) for tp in partitions]
        try:
            committed = await asyncio.gather(*(self.consumer.committed(tp) for tp in tps))
            out = {TopicPartition(tp.topic, tp.partition): off
                   for tp, off in zip(tps, committed, strict=True) if off is not None}
            unset = [tp for tp, off in zip(tps, committed, strict=True) if off is None]
            if unset:
                ends = await (self.consumer.beginning_offsets(unset) if self._options["auto_offset_reset"]
                              == "earliest" else self.consumer.end_offsets(unset))
                out.update({TopicPartition(tp.topic, tp.partition): int(off) for tp, off in ends.items()})
        except KafkaError as exc:
            raise _feed_error(exc, "reading the committed offsets") from exc
        return out

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """Position assigned partitions (no I/O; records fetched from other positions are discarded)."""
        for tp, off in positions.items():
            self.consumer.seek(aiokafka.TopicPartition(*tp), off)

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned to this consumer."""
        return {TopicPartition(tp.topic, tp.partition) for tp in self.consumer.assignment()}


CONCURRENT_TXN_BACKOFF_MS = 2.0
"""Default wait before retrying a transaction's first AddPartitionsToTxn refused with
CONCURRENT_TRANSACTIONS (see :func:`set_concurrent_txn_backoff`)."""
BATCH_BYTES = 256 * 1024
"""The producer's ``max_batch_size`` (aiokafka's default is 16 KiB), at most ``max_message_bytes``: a
step of 2,000 records goes out in ~8 batches a partition instead of ~40 (``bench/send_many.py``: CPU
a record ~5 against ~7-9 us, wall ~13 against ~21 ms)."""
RECORD_OVERHEAD_BYTES = 512
"""``send_many``: a record whose key, value and headers come within this of ``max_request_size`` goes
through ``producer.send`` (which checks the exact size and refuses one too large) instead of a batch."""


_warned_backoff = False  # the missing-constant warning is logged once


def set_concurrent_txn_backoff(ms: float) -> None:
    """Wait ``ms`` before retrying a transaction's first ``AddPartitionsToTxn`` that the broker
    refused with ``CONCURRENT_TRANSACTIONS``.

    After a commit the coordinator still writes the transaction markers for a few
    milliseconds; a producer that begins its next transaction at once is refused
    until they are written (KAFKA-5477). aiokafka retries that one case after a
    fixed 20 ms (``aiokafka.producer.sender.BACKOFF_OVERRIDE``; its other retries use
    ``retry_backoff_ms``), so back-to-back transactions cost ~25-30 ms where ~8 ms
    do (``bench/txn.py`` measures both). The setting is process-wide (a
    module constant of aiokafka, read at every retry): every transactional sink of
    the process shares it. With an aiokafka that no longer has the constant this
    logs one warning and changes nothing.
    """
    if ms < 0 or not math.isfinite(ms):
        raise ConfigError(f"concurrent_txn_backoff_ms must be a finite number >= 0, got {ms!r}")
    from aiokafka.producer import sender

    global _warned_backoff
    if not hasattr(sender, "BACKOFF_OVERRIDE"):
        if not _warned_backoff:
            _warned_backoff = True
            log.warning("this aiokafka has no BACKOFF_OVERRIDE: the concurrent-transaction retry "
                        "backoff stays aiokafka's own")
        return
    sender.BACKOFF_OVERRIDE = ms / 1000.0


class KafkaSink(AsyncComponent):
    """Idempotent producer (``acks=all``); transactional when ``transactional_id`` is given."""

    def __init__(
        self,
        connection: KafkaConnection | str,
        *,
        transactional_id: str | None = None,
        linger_ms: int = 0,
        concurrent_txn_backoff_ms: float | None = CONCURRENT_TXN_BACKOFF_MS,
        **producer_options: Any,
    ) -> None:
        self.connection = _conn(connection)
        self.transactional_id = transactional_id
        self.concurrent_txn_backoff_ms = concurrent_txn_backoff_ms
        self._options = dict(
            enable_idempotence=True,
            acks="all",
            transactional_id=transactional_id,
            linger_ms=linger_ms,
            max_request_size=self.connection.max_message_bytes,
            max_batch_size=producer_options.pop("max_batch_size",
                                                min(BATCH_BYTES, self.connection.max_message_bytes)),
            **producer_options,
        )
        self._producer: aiokafka.AIOKafkaProducer | None = None
        self._partitioner = producer_options.get("partitioner") or DefaultPartitioner()
        self._max_record_bytes = self.connection.max_message_bytes - RECORD_OVERHEAD_BYTES

    @property
    def producer(self) -> aiokafka.AIOKafkaProducer:
        if self._producer is None:
            raise FeedError("KafkaSink used before start(); use 'async with sink:'")
        return self._producer

    async def start(self) -> None:
        if self._producer is not None:
            return
        if self.transactional_id is not None and self.concurrent_txn_backoff_ms is not None:
            set_concurrent_txn_backoff(self.concurrent_txn_backoff_ms)
        producer = aiokafka.AIOKafkaProducer(**self.connection.client_kwargs(), **self._options)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise _feed_error(exc, "starting producer") from exc
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Headers = ()) -> None:
        """Produce one record and wait for the broker's acknowledgement."""
        await self.send_many([OutRecord(topic, value, key, tuple(headers))])

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        """Enqueue every record, then wait for all acks.

        Records are appended to one aiokafka batch per topic partition (``create_batch`` /
        ``send_batch``, a new batch when one is full) instead of one ``send`` each: the same
        partitions (the producer's partitioner on the key, random without one), the same order
        within a partition, inside the open transaction like ``send`` (``bench/send_many.py``:
        about half the CPU a record from 200 records, even below 20). A record near
        ``max_request_size`` goes through ``send``, which refuses one too large as before."""
        futures: list[asyncio.Future[Any]] = []
        producer = self.producer
        try:
            parts: dict[str, list[int]] = {}
            open_batches: dict[tuple[str, int], Any] = {}
            for r in records:
                headers = list(r.headers)
                if (len(r.key or b"") + len(r.value or b"") + sum(len(k) + len(v or b"") for k, v in headers)
                        > self._max_record_bytes):
                    # by itself (a topic not batched yet: the producer partitions it as ever); a batched
                    # topic's record keeps the batch path's partition, whose open batch goes first
                    part = self._partition_of(r, parts[r.topic]) if r.topic in parts else None
                    if part is not None and (r.topic, part) in open_batches:
                        futures.append(await self._submit(open_batches.pop((r.topic, part)), (r.topic, part)))
                    futures.append(await producer.send(r.topic, r.value, key=r.key, partition=part,
                                                       headers=headers or None))
                    continue
                all_parts = parts.get(r.topic)
                if all_parts is None:
                    all_parts = parts[r.topic] = sorted(await producer.partitions_for(r.topic))
                tp = (r.topic, self._partition_of(r, all_parts))
                batch = open_batches.get(tp)
                if batch is None:
                    batch = open_batches[tp] = producer.create_batch()
                if batch.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:  # full
                    futures.append(await self._submit(open_batches.pop(tp), tp))
                    batch = open_batches[tp] = producer.create_batch()
                    batch.append(key=r.key, value=r.value, timestamp=None, headers=headers)
            for tp, batch in open_batches.items():
                futures.append(await self._submit(batch, tp))
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise _feed_error(exc, f"producing {len(records)} record(s)") from exc
        finally:  # a failure mid-way must not leave "exception never retrieved" futures behind
            for fut in futures:
                if not fut.done():
                    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
                elif not fut.cancelled():
                    fut.exception()

    def _partition_of(self, r: OutRecord, all_parts: list[int]) -> int:
        """The producer's partitioner on the key (random without one), as ``producer.send`` uses it."""
        part: int = self._partitioner(r.key, all_parts, all_parts)
        return part

    async def _submit(self, batch: Any, tp: tuple[str, int]) -> asyncio.Future[Any]:
        batch.close()
        fut: asyncio.Future[Any] = await self.producer.send_batch(batch, tp[0], partition=tp[1])
        return fut

    # -------------------------------------------------------- transactions
    def _need_txn(self) -> None:
        if self.transactional_id is None:
            raise ConfigError("transactions need KafkaSink(transactional_id=...)")

    async def begin(self) -> None:
        self._need_txn()
        try:
            await self.producer.begin_transaction()
        except KafkaError as exc:
            raise _feed_error(exc, "beginning a transaction") from exc

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        """Add the consumer group's offsets (next offset to read) to the open transaction."""
        self._need_txn()
        arg = {aiokafka.TopicPartition(*tp): off for tp, off in offsets.items()}
        try:
            await self.producer.send_offsets_to_transaction(arg, group_id)
        except KafkaError as exc:
            raise _feed_error(exc, "adding offsets to the transaction") from exc

    async def commit(self) -> None:
        self._need_txn()
        try:
            await self.producer.commit_transaction()
        except KafkaError as exc:
            raise _feed_error(exc, "committing the transaction") from exc

    async def abort(self) -> None:
        self._need_txn()
        try:
            await self.producer.abort_transaction()
        except KafkaError as exc:
            raise _feed_error(exc, "aborting the transaction") from exc


async def create_topics(
    connection: KafkaConnection | str,
    names: Sequence[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    compacted: bool = False,
    configs: Mapping[str, str] | None = None,
    wait_s: float = 10.0,
) -> None:
    """Create ``names`` if missing (existing topics are left as they are).

    ``compacted=True`` sets ``cleanup.policy=compact`` (the ``exec.agent-state`` topic).
    Returns once every partition has a leader (at most ``wait_s`` seconds).
    """
    conn = _conn(connection)
    cfg = {"cleanup.policy": "compact"} if compacted else {}
    cfg.update(configs or {})
    admin = AIOKafkaAdminClient(**conn.client_kwargs())
    try:
        await admin.start()
        resp = await admin.create_topics(
            [NewTopic(n, partitions, replication_factor, topic_configs=dict(cfg)) for n in names]
        )
        for err in resp.topic_errors:
            name, code = err[0], err[1]
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise _feed_error(for_code(code)(), f"creating topic {name!r}")
        await _wait_for_leaders(admin, list(names), wait_s)
    except KafkaError as exc:
        raise _feed_error(exc, f"creating topics {list(names)}") from exc
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], wait_s: float) -> None:
    """Poll metadata until every partition of ``names`` has a leader (producers then never retry)."""
    deadline = time.monotonic() + wait_s
    while True:
        topics = await admin.describe_topics(names)
        ready = all(
            t["error_code"] == 0 and t["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
            for t in topics
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise RetriableFeedError(f"topics {names} have no leader after {wait_s} s")
        await asyncio.sleep(0.05)
