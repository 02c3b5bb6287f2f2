"""Which symbols this agent owns, and the state that follows them (transactional delivery).

On partition assignment (start-up, and whenever the group rebalances), in this order:

1. the producers of the newly assigned partition indices are started
   (:class:`agent.live.fencing.PartitionProducers`): this fences whoever held
   them before, even a stalled agent that still thinks it owns them, and
   settles its open transaction (committed or aborted) at once;
2. the state topic is read to its end (``read_committed``, waiting for open
   transactions: after step 1 only live owners' short ones remain) and the
   parents of the symbols this agent now owns are restored (a symbol is owned
   when its parent-orders partition, key = symbol, is assigned); parents of
   symbols no longer owned are dropped (another agent restores them);
3. every assigned partition is positioned at its committed offset fetched
   *now* (aiokafka fetched one at assignment, possibly before step 1 settled
   the previous owner's last transaction), so state and positions agree;
4. in the same instant (no await in between) the intake's per-symbol newest
   time is reset to what the engine has processed and the generation moves
   on: a batch fetched before is discarded, and since the positions were
   reset it is read again, not lost (its rows are not ``ts_backwards`` either);
5. when parent orders wait on the topic, market data and fills are paused
   until they are read (a backlog then never shows a parent's books before
   the parent: replayed data decide as the replay does).

On revocation the step in flight finishes first and the generation moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.core.engine import ExecutionEngine
from agent.live.events import emit
from agent.live.fencing import PartitionProducers
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
    producers : the per-partition transactional producers (started here on assignment).
    """

    def __init__(self, *, agent_id: str, topics: Any, state_consumer: Callable[[str], Any],
                 metrics: ReliabilityMetrics, lock: asyncio.Lock, producers: PartitionProducers) -> None:
        self.agent_id, self.topics, self.state_consumer = agent_id, topics, state_consumer
        self.metrics, self.lock, self.producers = metrics, lock, producers
        self.generation = 0
        self.n_partitions = 0  # of the parent-orders topic (symbol -> partition)
        self.last_timing: dict[str, float] = {}  # seconds of the phases of the last assignment
        self.catchup: dict[Any, int] = {}  # parent-order partitions not yet read to their end at assignment
        self.held: list[Any] = []  # market-data and fill partitions paused meanwhile
        self.restores: list[dict[str, Any]] = []
        self.tracker: StateTracker | None = None
        self._service: Host | None = None
        self.failure: BaseException | None = None  # a restore that failed: the service must be rebuilt

    def bind(self, service: Host) -> StateTracker:
        self._service = service
        self.tracker = StateTracker(service.engine, self.agent_id, kill_switch=service.kill_switch,
                                    market_interval_s=service.settings.market_interval_s)
        return self.tracker

    async def revoked(self) -> None:
        async with self.lock:  # the step in flight commits (or fails) first
            self.generation += 1

    async def assigned(self, assigned: Any) -> None:
        if getattr(self._service, "stopping", False):  # a consumer being closed (rebuild, shutdown)
            return
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
            consumer = svc.source.consumer
            t = self.topics
            counts = {name: len(consumer.partitions_for_topic(name) or ()) for name in (t.md, t.parent_orders, t.fills)}
            if len(set(counts.values())) > 1:
                log.error("the input topics must share one partition count (keyed by symbol, partition p of each "
                          "carries the same symbols): %s; with several agents their symbols may never trade", counts)
            self.n_partitions = n = counts[t.parent_orders]
            mine = {tp.partition for tp in assigned if tp.topic == t.parent_orders}
            indices = {tp.partition for tp in assigned}

            def owns(symbol: str) -> bool:
                return n > 0 and symbol_partition(symbol, n) in mine

            t0 = time.perf_counter()
            started, closed = await self.producers.own(indices)  # fences the previous owners first
            t1 = time.perf_counter()
            records = await read_state(self.state_consumer, t.agent_state)
            t2 = time.perf_counter()
            engine, tracker = svc.engine, self.tracker
            dropped = await svc.call(drop_unowned, engine, tracker, owns)
            restored = await svc.call(restore, engine, tracker, records, owns)
            t3 = time.perf_counter()
            positions = await svc.source.committed_positions(sorted(assigned))
            parent_tps = [tp for tp in assigned if tp.topic == t.parent_orders]
            ends = await consumer.end_offsets(parent_tps) if parent_tps else {}
            marks = await svc.call(newest_rows, engine, list(svc.intake.last_ts), owns)
            # no await from here on: positions, the intake's per-symbol time and the generation change
            # together, so every batch fetched before is discarded and read again from these positions
            svc.source.seek(positions)
            svc.intake.last_ts.clear()
            svc.intake.last_ts.update(marks)
            self.generation += 1
            self._hold_until_parents_read(consumer, assigned, {tp: e for tp, e in ends.items() if positions[tp] < e})
            self.last_timing = {"fence_s": t1 - t0, "read_state_s": t2 - t1, "restore_s": t3 - t2,
                                "seek_s": time.perf_counter() - t3, "total_s": time.perf_counter() - t0}
            for r in restored:
                r.update(event="restore", agent_id=self.agent_id)
                emit(log, logging.WARNING, "restore", "parent %s restored from the state topic: %s, %g remaining",
                     r["parent_id"], r["status"], r["remaining"], **{k: v for k, v in r.items() if k != "event"})
                self.restores.append(r)
            self.metrics.restored_parents.inc(len(restored))
            emit(log, logging.INFO, "rebalance", "agent %s assigned %d parent-order partition(s) of %d; producers "
                 "started %s, closed %s; %d state record(s) read, %d parent(s) restored, %d dropped in %.3f s",
                 self.agent_id, len(mine), n, started, closed, len(records), len(restored), len(dropped),
                 self.last_timing["total_s"], agent_id=self.agent_id, partitions=sorted(mine), of=n,
                 records=len(records), restored=len(restored), dropped=len(dropped),
                 seconds=round(self.last_timing["total_s"], 3),
                 phases={k[:-2]: round(v, 3) for k, v in self.last_timing.items() if k != "total_s"})


    def _hold_until_parents_read(self, consumer: Any, assigned: Any, behind: dict[Any, int]) -> None:
        """Pause market data and fills until the parent orders on the topic at assignment are read, so a
        backlog of both (a fresh start, replayed data) never shows a parent's books before the parent."""
        self.catchup, self.held = behind, []
        if behind and self._service is not None:
            self.held = [tp for tp in assigned if tp.topic != self.topics.parent_orders]
            consumer.pause(*self.held)
            self._service.spawn(self._release_when_read(consumer, behind), name="mpc-agent-parents-first")

    async def _release_when_read(self, consumer: Any, behind: dict[Any, int], poll_s: float = 0.05) -> None:
        """Resume the held partitions once every parent-order partition reached its end offset of the
        assignment (positions advance as records are handed to the service)."""
        while self.catchup is behind and behind:
            for tp, end in list(behind.items()):
                if tp not in consumer.assignment() or await consumer.position(tp) >= end:
                    del behind[tp]
            if behind:
                await asyncio.sleep(poll_s)
        if self.catchup is behind:  # not superseded by a newer assignment
            consumer.resume(*[tp for tp in self.held if tp in consumer.assignment()])
            log.info("parent orders read to their end offsets of the assignment; market data and fills resumed")
            self.held = []


def newest_rows(engine: ExecutionEngine, symbols: list[str], owns: Callable[[str], bool]) -> dict[str, int]:
    """Per owned symbol, the ``ts_event`` of the newest row the engine has processed (engine thread)."""
    out = {}
    for sym in symbols:
        if owns(sym):
            ts = engine.market(sym).last_ts
            if ts > -(2**61):
                out[sym] = ts
    return out
