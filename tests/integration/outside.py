"""An outside view of the topics, through confluent-kafka (librdkafka), not the agent's own aiokafka code.

The reliability checks read what the agents committed with a client that
shares nothing with them, so a bug in our codec or consumer cannot hide
itself:

- :func:`read_committed`: every committed record of a topic
  (``isolation.level=read_committed``), with partition, offset, key, value,
  headers and the broker timestamp (``LogAppendTime`` on topics created with
  :data:`LOG_APPEND_TIME`: when the broker appended it);
- :class:`Producer`: publishes keyed by symbol with the Java client's
  partitioner (``murmur2_random``; librdkafka's default ``consistent_random``
  would put a symbol on another partition than Kafka's default partitioner,
  which the agents refuse as ``wrong_partition``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka import Producer as _Producer

LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
"""Topic config: the broker stamps each record with the time it appended it."""


@dataclass(frozen=True)
class Msg:
    """One committed record as the outside client saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int

    def json(self) -> Any:
        return json.loads(self.value) if self.value is not None else None


def read_committed(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Msg]:
    """Every committed record of ``topic`` up to its end offsets taken at the start (blocking)."""
    out: list[Msg] = []
    scan_committed(bootstrap, topic, out.append, timeout_s)
    return out


def scan_committed(bootstrap: str, topic: str, visit: Callable[[Msg], None], timeout_s: float = 60.0) -> int:
    """Call ``visit`` on every committed record of ``topic`` (offset order per partition) up to the
    end offsets taken at the start, without keeping them; returns how many were visited."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"outside-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest", "enable.partition.eof": False})
    n = 0
    try:
        md = c.list_topics(topic, timeout=timeout_s).topics[topic]
        if md.error is not None:
            raise KafkaException(md.error)
        ends: dict[int, int] = {}
        for p in md.partitions:
            # read_committed: the high watermark returned is the last stable offset
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > 0:
                ends[p] = high
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        todo = dict(ends)
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end offsets {ends} within {timeout_s} s")
            for m in c.consume(num_messages=10_000, timeout=0.5):
                if m.error() is not None:
                    continue
                p = m.partition()
                if p in todo and m.offset() < ends[p]:
                    visit(Msg(topic, p, m.offset(), m.key(), m.value(),
                              {k: bytes(v or b"") for k, v in (m.headers() or [])}, m.timestamp()[1]))
                    n += 1
            for p in list(todo):
                pos = c.position([TopicPartition(topic, p)])[0].offset
                if pos >= ends[p]:
                    del todo[p]
    finally:
        c.close()
    return n


class Producer:
    """Plain (idempotent) producer, keyed records land where Kafka's default partitioner puts them."""

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._p = _Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                             "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 300_000,
                             **config})
        self.failed = 0

    def _done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, on_delivery: Any = None) -> None:
        """Queue one record (waiting for room while the local queue is full); ``on_delivery(err, msg)``."""
        while True:
            try:
                self._p.produce(topic, value=value, key=key, on_delivery=on_delivery or self._done)
                break
            except BufferError:  # local queue full (e.g. the broker is paused): wait for room
                self._p.poll(0.1)
        self._p.poll(0)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every delivery report; the number still in flight."""
        return int(self._p.flush(timeout_s))
