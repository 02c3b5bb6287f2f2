"""The interface the service uses to read and write messages, Kafka or in memory.

``Source`` (a consumer) and ``Sink`` (a producer, optionally transactional)
are Protocols implemented by ``feeds.kafka.KafkaSource/KafkaSink`` and by
``feeds.memory.MemorySource/MemorySink``, so the same service code runs
against a real broker or an in-process bus in tests.

Offsets follow Kafka's convention: the committed offset of a partition is the
offset of the *next* record to read, i.e. ``last consumed + 1``
(:func:`next_offsets`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, Self, TypeVar, runtime_checkable

Headers = tuple[tuple[str, bytes], ...]


class TopicPartition(NamedTuple):
    """A partition of a topic (independent of aiokafka's type)."""

    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed message: where it came from, its key, value and headers.

    A named tuple, not a frozen dataclass: a backlog builds one per message on the event loop,
    and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` a field) cost ~1.3 us a
    record against ~0.35 us (``KafkaSource.getmany`` builds them with ``tuple.__new__``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """Value of the last header called ``name`` (None when absent)."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One message to produce."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = ()


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """Offsets to commit after processing ``records``: ``max(offset) + 1`` per partition."""
    top: dict[tuple[str, int], int] = {}
    get = top.get
    for r in records:  # keyed by a plain tuple: no TopicPartition per record
        key = (r.topic, r.partition)
        if r.offset >= get(key, -1):
            top[key] = r.offset + 1
    return {TopicPartition(*key): off for key, off in top.items()}


@runtime_checkable
class Source(Protocol):
    """A consumer of one or more topics with manual offset commits."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[str, list[Record]]:
        """Records available now (waiting up to ``timeout_ms`` for the first), by topic, in offset order per partition."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (next offset to read), or the current positions when None."""
        ...

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None when nothing was committed)."""
        ...


@runtime_checkable
class Sink(Protocol):
    """A producer; a transactional one also has begin/commit/abort."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Produce one record and wait until the broker has it (in a transaction: until commit)."""
        ...

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        """Produce several records, pipelined; returns when all are acknowledged."""
        ...


@runtime_checkable
class TransactionalSink(Sink, Protocol):
    """A sink whose sends (and consumed offsets) become visible atomically on commit."""

    async def begin(self) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None: ...

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        """Commit a consumer group's ``offsets`` as part of the open transaction."""
        ...


class AsyncComponent:
    """Mixin: ``async with component:`` calls ``start()`` then ``stop()`` (idempotent)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


T = TypeVar("T", bound=TransactionalSink)


@asynccontextmanager
async def transaction(sink: T) -> AsyncIterator[T]:
    """``async with transaction(sink):`` begin; commit on success, abort on any exception."""
    await sink.begin()
    try:
        yield sink
    except BaseException:
        await sink.abort()
        raise
    await sink.commit()


DLQ_ERROR_HEADER = "error"
DLQ_DETAIL_HEADER = "error.detail"
DLQ_SOURCE_HEADERS = ("source.topic", "source.partition", "source.offset")


def dead_letter(record: Record, reason: str, detail: str = "", dlq_topic: str | None = None) -> OutRecord:
    """The DLQ copy of a rejected record: original key, value and headers plus the error.

    Headers added: ``error`` (the short reason, e.g. ``crossed_book``),
    ``error.detail`` (human text, truncated to 512 bytes), ``source.topic``,
    ``source.partition``, ``source.offset``. The topic defaults to ``{topic}.dlq``.
    """
    extra: Headers = (
        (DLQ_ERROR_HEADER, reason.encode()),
        (DLQ_DETAIL_HEADER, detail.encode()[:512]),
        ("source.topic", record.topic.encode()),
        ("source.partition", str(record.partition).encode()),
        ("source.offset", str(record.offset).encode()),
    )
    return OutRecord(
        topic=dlq_topic or f"{record.topic}.dlq",
        value=record.value,
        key=record.key,
        headers=tuple(record.headers) + extra,
    )


async def send_to_dlq(
    sink: Sink, record: Record, reason: str, detail: str = "", dlq_topic: str | None = None
) -> None:
    """Produce :func:`dead_letter` of ``record`` on ``sink``."""
    out = dead_letter(record, reason, detail, dlq_topic)
    await sink.send(out.topic, out.value, key=out.key, headers=out.headers)
