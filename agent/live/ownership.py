"""Which symbols this agent owns, and the state that follows them (transactional delivery).

On partition assignment (start-up, and whenever the group rebalances) the
state topic is read to its end and the parents of the symbols this agent now
owns are restored (a symbol is owned when its parent-orders partition, key =
symbol, is assigned); on revocation the step in flight finishes first and the
generation moves on, so a batch fetched before the rebalance is discarded;
parents of symbols no longer owned are dropped (another agent restores them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.live.events import emit
from agent.live.metrics import ReliabilityMetrics
from agent.live.state_topic import StateTracker, drop_unowned, read_state, restore, symbol_partition
from agent.live.work import Host

log = logging.getLogger("agent.live.ownership")


class Ownership:
    """Partition assignment -> restore / drop (see the module docstring).

    Parameters
    ----------
    agent_id : this instance's id (in the restore log line).
    topics : topic names (``parent_orders``, ``agent_state``).
    state_consumer : ``isolation_level ->`` unstarted group-less ``AIOKafkaConsumer`` (``read_state``).
    metrics : reliability metrics (restored parents).
    lock : held by every step; a rebalance waits for the step in flight.
    """

    def __init__(self, *, agent_id: str, topics: Any, state_consumer: Callable[[str], Any],
                 metrics: ReliabilityMetrics, lock: asyncio.Lock) -> None:
        self.agent_id, self.topics, self.state_consumer = agent_id, topics, state_consumer
        self.metrics, self.lock = metrics, lock
        self.generation = 0
        self.restores: list[dict[str, Any]] = []
        self.tracker: StateTracker | None = None
        self._service: Host | None = None
        self.failure: BaseException | None = None  # a restore that failed: the service must be rebuilt

    def bind(self, service: Host) -> StateTracker:
        self._service = service
        self.tracker = StateTracker(service.engine, self.agent_id, kill_switch=service.kill_switch)
        return self.tracker

    async def revoked(self) -> None:
        async with self.lock:  # the step in flight commits (or fails) first
            self.generation += 1

    async def assigned(self, assigned: Any) -> None:
        try:
            await self._restore_owned(assigned)
        except Exception as exc:  # never trade without the state: the next step raises, the runtime rebuilds
            log.error("restore on assignment failed: %r", exc)
            self.failure = exc
            self.generation += 1

    async def _restore_owned(self, assigned: Any) -> None:
        svc = self._service
        assert svc is not None and self.tracker is not None
        async with self.lock:
            self.generation += 1
            mine = {tp.partition for tp in assigned if tp.topic == self.topics.parent_orders}
            n = len(svc.source.consumer.partitions_for_topic(self.topics.parent_orders) or ())

            def owns(symbol: str) -> bool:
                return n > 0 and symbol_partition(symbol, n) in mine

            t0 = time.perf_counter()
            records = await read_state(self.state_consumer, self.topics.agent_state)
            engine, tracker = svc.engine, self.tracker
            dropped = await svc.call(drop_unowned, engine, tracker, owns)
            restored = await svc.call(restore, engine, tracker, records, owns)
            for r in restored:
                r.update(event="restore", agent_id=self.agent_id)
                emit(log, logging.WARNING, "restore", "parent %s restored from the state topic: %s, %g remaining",
                     r["parent_id"], r["status"], r["remaining"], **{k: v for k, v in r.items() if k != "event"})
                self.restores.append(r)
            self.metrics.restored_parents.inc(len(restored))
            emit(log, logging.INFO, "rebalance", "agent %s assigned %d parent-order partition(s) of %d; %d state "
                 "record(s) read, %d parent(s) restored, %d dropped in %.3f s", self.agent_id, len(mine), n,
                 len(records), len(restored), len(dropped), time.perf_counter() - t0, agent_id=self.agent_id,
                 partitions=sorted(mine), of=n, records=len(records), restored=len(restored),
                 dropped=len(dropped), seconds=round(time.perf_counter() - t0, 3))

