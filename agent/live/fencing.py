"""One transactional producer per owned input partition: the fence against a stalled agent.

Kafka fences a transactional producer when another producer calls
``InitProducerId`` with the same ``transactional.id``: the coordinator bumps
the epoch, aborts (or completes) the old producer's open transaction, and
refuses every later request of the old epoch. aiokafka's
``send_offsets_to_transaction`` sends ``TxnOffsetCommit`` v0 (group id only,
no generation: KIP-447 does not apply), so a per-agent transactional id
cannot fence a "zombie": an agent stalled past ``session_timeout_ms`` whose
partitions the group gave to another agent could commit one more step for
parents the other agent has restored.

The transactional id here belongs to the *work*, not to the agent:
``<group_id>.<parent-orders topic>.<partition>``, one per input partition
index (the three input topics share their partition count and are keyed by
symbol, so partition ``p`` of each carries the same symbols). The agent that
is assigned ``p`` starts producer ``p`` before it reads the state topic
(:mod:`agent.live.ownership`); that start fences whoever held ``p`` before and
settles its open transaction at once (no wait for ``transaction.timeout.ms``).
Every output of a symbol of ``p`` (child orders, state records, DLQ copies of
``p``'s records, ``p``'s consumed offsets) is committed in producer ``p``'s
transaction (:class:`agent.live.delivery.Transactional`), so a fenced zombie
can commit nothing for ``p`` after the new owner took it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from agent.core.errors import FeedError

log = logging.getLogger("agent.live.fencing")


def transactional_id(group_id: str, topic: str, partition: int) -> str:
    """The transactional id of input partition ``partition``: ``<group_id>.<topic>.<partition>``."""
    return f"{group_id}.{topic}.{partition}"


class PartitionProducers:
    """The transactional producers of the partitions this agent owns (the service's sink).

    Parameters
    ----------
    factory : ``transactional_id ->`` unstarted transactional sink (``feeds.kafka.KafkaSink``:
        ``start`` runs ``InitProducerId``; ``begin/send_many/send_offsets/commit/abort/stop``).
    group_id : the consumer group (first part of every transactional id).
    topic : the parent-orders topic (second part).
    start_timeout_s : a producer that cannot initialise within this raises ``FeedError``.
    """

    def __init__(self, factory: Callable[[str], Any], *, group_id: str, topic: str,
                 start_timeout_s: float = 30.0) -> None:
        self.factory, self.group_id, self.topic = factory, group_id, topic
        self.start_timeout_s = start_timeout_s
        self._producers: dict[int, Any] = {}

    # the service treats this object as its sink: start/stop only
    async def start(self) -> None:
        """Nothing to do: producers are started per partition by :meth:`own`."""

    async def stop(self) -> None:
        """Close every producer (an open transaction of theirs is aborted by the next owner)."""
        await self._close(list(self._producers))

    async def send_many(self, records: Any) -> None:
        raise FeedError("outputs are committed per partition (PartitionProducers.get(p)), never sent alone")

    @property
    def partitions(self) -> set[int]:
        return set(self._producers)

    def transactional_id(self, partition: int) -> str:
        return transactional_id(self.group_id, self.topic, partition)

    def get(self, partition: int) -> Any:
        """The producer of ``partition``; ``FeedError`` when this agent does not own it."""
        try:
            return self._producers[partition]
        except KeyError:
            raise FeedError(f"no producer for partition {partition}: not owned by this agent "
                            f"(owned: {sorted(self._producers)})") from None

    async def own(self, partitions: Iterable[int]) -> tuple[list[int], list[int]]:
        """Keep exactly the producers of ``partitions``: close the others, start the new ones.

        Starting a producer fences the previous holder of its transactional id and settles its
        open transaction. A producer kept from before is not restarted: if another agent fenced
        it meanwhile (this agent was a zombie), its next transaction fails and the service is
        rebuilt from the state topic. Returns ``(started, closed)``."""
        want = set(partitions)
        closed = sorted(set(self._producers) - want)
        await self._close(closed)
        started = sorted(want - set(self._producers))
        sinks = {p: self.factory(self.transactional_id(p)) for p in started}
        results = await asyncio.gather(
            *(asyncio.wait_for(s.start(), self.start_timeout_s) for s in sinks.values()), return_exceptions=True)
        failed = {p: r for p, r in zip(sinks, results, strict=True) if isinstance(r, BaseException)}
        self._producers.update({p: s for p, s in sinks.items() if p not in failed})
        if failed:
            for p in failed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sinks[p].stop(), 5.0)
            p, exc = next(iter(failed.items()))
            raise FeedError(f"starting the transactional producer {self.transactional_id(p)!r} failed: {exc!r}")
        return started, closed

    async def _close(self, partitions: list[int]) -> None:
        async def close(p: int) -> None:
            sink = self._producers.pop(p)
            try:
                await asyncio.wait_for(sink.stop(), 10.0)
            except Exception as exc:  # a fenced or unreachable producer: nothing left to flush
                log.warning("closing the producer of partition %d failed: %r", p, exc)

        await asyncio.gather(*(close(p) for p in partitions))
