"""In-memory message bus with the same async interface as the Kafka feeds.

Tests drive the service through it like httpx's ``MockTransport``: build a
:class:`MemoryBus`, hand a :class:`MemorySource` and a :class:`MemorySink`
to the code under test, then inspect ``bus.records(topic)`` and
``bus.committed(group, tp)``.

Semantics kept from Kafka: topics with partitions (``crc32(key) % n``, keyless
records go to partition 0), per-partition offsets from 0, consumer groups
with committed offsets (next offset to read), ``auto_offset_reset``
earliest/latest, and transactions whose records and consumer offsets appear
atomically on commit (nothing on abort). A ``fail`` hook on the sink injects
producer errors (e.g. ``RetriableFeedError``) for chosen records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from agent.core.errors import FeedError
from feeds.ports import AsyncComponent, Headers, OutRecord, Record, TopicPartition

FailHook = Callable[[OutRecord], BaseException | None]


class MemoryBus:
    """Topics -> partitions -> lists of records, plus consumer-group offsets."""

    def __init__(self, default_partitions: int = 1) -> None:
        self.default_partitions = default_partitions
        self._topics: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, dict[TopicPartition, int]] = {}
        self._changed: asyncio.Event | None = None  # created by the first waiter, in its loop

    # -------------------------------------------------------------- topics
    def create_topic(self, name: str, partitions: int | None = None) -> None:
        """Create ``name`` with ``partitions`` partitions (no-op when it exists)."""
        if name not in self._topics:
            self._topics[name] = [[] for _ in range(partitions or self.default_partitions)]

    def partitions(self, topic: str) -> int:
        self.create_topic(topic)
        return len(self._topics[topic])

    def end_offset(self, tp: TopicPartition) -> int:
        self.create_topic(tp.topic)
        return len(self._topics[tp.topic][tp.partition])

    def read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        self.create_topic(tp.topic)
        return self._topics[tp.topic][tp.partition][offset : offset + limit]

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic`` (partition by partition, in offset order)."""
        return [r for part in self._topics.get(topic, []) for r in part]

    def values(self, topic: str) -> list[bytes | None]:
        return [r.value for r in self.records(topic)]

    # ------------------------------------------------------------- groups
    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        return self._groups.get(group_id, {}).get(tp)

    # ------------------------------------------------------------- writes
    def apply(
        self,
        records: Sequence[OutRecord],
        offsets: Mapping[str, Mapping[TopicPartition, int]] | None = None,
    ) -> list[Record]:
        """Append ``records`` and commit group ``offsets`` in one step (no await: atomic)."""
        now_ms = int(time.time() * 1000)
        out: list[Record] = []
        for r in records:
            n = self.partitions(r.topic)
            part = 0 if r.key is None else zlib.crc32(r.key) % n
            log = self._topics[r.topic][part]
            rec = Record(r.topic, part, len(log), r.key, r.value, tuple(r.headers), now_ms)
            log.append(rec)
            out.append(rec)
        for group, offs in (offsets or {}).items():
            self._groups.setdefault(group, {}).update(offs)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return out

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return when something is appended, or after ``timeout_s``."""
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)


class MemorySource(AsyncComponent):
    """Consumer of ``topics`` on a :class:`MemoryBus` (``Source`` protocol)."""

    def __init__(
        self,
        bus: MemoryBus,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
    ) -> None:
        self.bus, self.topics, self.group_id = bus, list(topics), group_id
        self.auto_offset_reset = auto_offset_reset
        self._pos: dict[TopicPartition, int] = {}
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        for t in self.topics:
            for p in range(self.bus.partitions(t)):
                tp = TopicPartition(t, p)
                done = self.bus.committed(self.group_id, tp) if self.group_id else None
                if done is None:
                    done = 0 if self.auto_offset_reset == "earliest" else self.bus.end_offset(tp)
                self._pos[tp] = done
        self._started = True

    async def stop(self) -> None:
        self._started = False

    def position(self, tp: TopicPartition) -> int:
        """Offset of the next record this source will return from ``tp``."""
        return self._pos[tp]

    def _poll(self, max_records: int | None) -> dict[str, list[Record]]:
        out: dict[str, list[Record]] = {}
        budget = max_records if max_records is not None else 1 << 62
        for tp, pos in self._pos.items():
            if budget <= 0:
                break
            got = self.bus.read(tp, pos, budget)
            if got:
                out.setdefault(tp.topic, []).extend(got)
                self._pos[tp] = pos + len(got)
                budget -= len(got)
        return out

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[str, list[Record]]:
        """Available records by topic; waits up to ``timeout_ms`` when there are none."""
        if not self._started:
            raise FeedError("MemorySource.getmany before start(); use 'async with source:'")
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            got = self._poll(max_records)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            await self.bus.wait_for_change(left)

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self.group_id is None:
            raise FeedError("commit needs a group_id; construct the source with group_id=...")
        self.bus.apply([], {self.group_id: dict(offsets if offsets is not None else self._pos)})

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.bus.committed(self.group_id, tp) if self.group_id else None


class MemorySink(AsyncComponent):
    """Producer onto a :class:`MemoryBus` (``Sink``; ``TransactionalSink`` when ``transactional``).

    ``fail(record)`` may return an exception to raise instead of producing
    ``record`` (fault injection); ``max_message_bytes`` mimics the broker limit.
    """

    def __init__(
        self,
        bus: MemoryBus,
        *,
        transactional: bool = False,
        fail: FailHook | None = None,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.bus, self.transactional, self.fail = bus, transactional, fail
        self.max_message_bytes = max_message_bytes
        self._started = False
        self._txn: list[OutRecord] | None = None
        self._txn_offsets: dict[str, dict[TopicPartition, int]] = {}
        self.sent = 0

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        if self._txn is not None:
            await self.abort()
        self._started = False

    def _check(self, r: OutRecord) -> None:
        if not self._started:
            raise FeedError("MemorySink used before start(); use 'async with sink:'")
        if self.transactional and self._txn is None:
            raise FeedError("transactional sink: call begin() before send()")
        size = len(r.value or b"") + len(r.key or b"")
        if size > self.max_message_bytes:
            raise FeedError(f"record of {size} bytes exceeds max_message_bytes={self.max_message_bytes}")
        if self.fail is not None and (exc := self.fail(r)) is not None:
            raise exc

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Headers = ()) -> None:
        await self.send_many([OutRecord(topic, value, key, tuple(headers))])

    async def send_many(self, records: Sequence[OutRecord]) -> None:
        for r in records:
            self._check(r)
        if self._txn is not None:
            self._txn.extend(records)
        else:
            self.bus.apply(records)
        self.sent += len(records)
        await asyncio.sleep(0)

    # -------------------------------------------------------- transactions
    async def begin(self) -> None:
        if not self.transactional:
            raise FeedError("begin() on a non-transactional sink; pass transactional=True")
        if self._txn is not None:
            raise FeedError("a transaction is already open")
        self._txn, self._txn_offsets = [], {}

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None:
        if self._txn is None:
            raise FeedError("send_offsets() outside a transaction")
        self._txn_offsets.setdefault(group_id, {}).update(offsets)

    async def commit(self) -> None:
        if self._txn is None:
            raise FeedError("commit() without begin()")
        records, offsets = self._txn, self._txn_offsets
        self._txn, self._txn_offsets = None, {}
        self.bus.apply(records, offsets)

    async def abort(self) -> None:
        if self._txn is None:
            raise FeedError("abort() without begin()")
        self._txn, self._txn_offsets = None, {}
