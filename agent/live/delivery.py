"""Exactly-once steps, state restore on partition assignment, broker watch (live Kafka service).

:class:`ExactlyOnce` plugs into :class:`agent.live.service.AgentService`:

- every step is ONE Kafka transaction: the child orders, the DLQ copies, the
  ``agent_state.v1`` records of every parent whose engine record changed
  (key = parent_id, compacted ``exec.agent-state``) and the consumed offsets
  (``send_offsets_to_transaction``). Readers use ``read_committed``: either
  all of a step is visible or none of it. The ``transactional_id`` is stable
  per agent instance (``<group>.<agent_id>``), so a restarted agent fences its
  predecessor and aborts the predecessor's open transaction;
- market data are fed to the engine in the step that consumed them
  (``md_buffer_rows`` is ignored): the state written with the offsets then
  includes every row those offsets cover;
- on partition assignment (start-up, and whenever the group rebalances) it
  reads the state topic to its end and restores the parents of the symbols it
  now owns (a symbol is owned when its parent-orders partition, key = symbol,
  is assigned); on revocation it waits for the step in flight, and parents of
  symbols no longer owned are dropped. A batch fetched before a rebalance is
  discarded (the consumer re-reads from the committed offsets);
- a period whose child order was committed has its ``next_period`` committed
  in the same transaction, so it is never re-decided; a period whose
  transaction did not commit is re-decided from the restored state (same
  deterministic ``child_order_id``; the aborted copy is invisible);
- a failed or timed-out transaction raises :class:`agent.core.errors.FeedError`:
  the runtime rebuilds the service from the topic (crash-only recovery) after
  a backoff; a probe task keeps ``mpc_agent_broker_up`` current.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent.core.errors import FeedError
from agent.live.state_topic import StateTracker, drop_unowned, read_state, restore, symbol_partition
from feeds.ports import OutRecord, next_offsets

if TYPE_CHECKING:
    from agent.live.service import AgentService, _Work

log = logging.getLogger("agent.live.delivery")
PREFIX = "mpc_agent_"


@dataclass
class ReliabilityMetrics:
    """Transactions, restores and broker reachability (created once per process registry)."""

    transactions: Counter
    state_records: Counter
    restored_parents: Counter
    broker_up: Gauge
    broker_outage_seconds: Counter
    service_restarts: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReliabilityMetrics:
        p = PREFIX
        return cls(
            transactions=Counter(f"{p}transactions", "Step transactions, by outcome", ["outcome"], registry=registry),
            state_records=Counter(f"{p}state_records", "agent_state.v1 records produced", registry=registry),
            restored_parents=Counter(f"{p}restored_parents", "Parent orders restored from the state topic",
                                     registry=registry),
            broker_up=Gauge(f"{p}broker_up", "1 when a bootstrap broker accepts connections", registry=registry),
            broker_outage_seconds=Counter(f"{p}broker_outage_seconds", "Seconds the broker was unreachable",
                                          registry=registry),
            service_restarts=Counter(f"{p}service_restarts", "Service rebuilds after a feed failure, by cause",
                                     ["cause"], registry=registry),
        )


class ExactlyOnce:
    """Transactional steps and state restore for one agent instance (see the module docstring).

    Parameters
    ----------
    agent_id : this instance's id (in the records and the restore log line).
    group_id : the consumer group whose offsets go into each transaction.
    topics : ``md``, ``parent_orders``, ``fills`` (consumed) and ``agent_state``.
    state_consumer : ``isolation_level -> `` unstarted group-less ``AIOKafkaConsumer`` (see ``read_state``).
    metrics : :class:`ReliabilityMetrics`.
    bootstrap : ``host:port[,host:port]`` probed for ``broker_up``.
    txn_timeout_s : a step transaction not done by then raises ``FeedError``.
    """

    def __init__(self, *, agent_id: str, group_id: str, topics: Any, state_consumer: Callable[[str], Any],
                 metrics: ReliabilityMetrics, bootstrap: str = "", txn_timeout_s: float = 30.0) -> None:
        self.agent_id, self.group_id, self.topics = agent_id, group_id, topics
        self.state_consumer, self.metrics, self.bootstrap = state_consumer, metrics, bootstrap
        self.txn_timeout_s = txn_timeout_s
        self.lock = asyncio.Lock()
        self.generation = 0
        self.restores: list[dict[str, Any]] = []
        self.tracker: StateTracker | None = None
        self._service: AgentService | None = None
        self.failure: BaseException | None = None  # a restore that failed: the service must be rebuilt

    @property
    def input_topics(self) -> list[str]:
        t = self.topics
        return [t.md, t.parent_orders, t.fills]

    async def attach(self, service: AgentService) -> None:
        """Subscribe the service's consumer with the rebalance listener; start the broker probe."""
        from aiokafka import ConsumerRebalanceListener

        self._service = service
        self.tracker = StateTracker(service.engine, self.agent_id)
        outer = self

        class _Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await outer._revoked()

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await outer._assigned(assigned)

        consumer = service.source.consumer  # type: ignore[union-attr]
        consumer.subscribe(topics=self.input_topics, listener=_Listener())
        if self.bootstrap:
            service.spawn(self._probe(), name="mpc-agent-broker-probe")

    # ------------------------------------------------------------ rebalance
    async def _revoked(self) -> None:
        async with self.lock:  # the step in flight commits (or fails) first
            self.generation += 1

    async def _assigned(self, assigned: Any) -> None:
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
            n = len(svc.source.consumer.partitions_for_topic(self.topics.parent_orders) or ())  # type: ignore[union-attr]

            def owns(symbol: str) -> bool:
                return n > 0 and symbol_partition(symbol, n) in mine

            t0 = time.perf_counter()
            records = await read_state(self.state_consumer, self.topics.agent_state)
            engine, tracker = svc.engine, self.tracker
            dropped = await svc.call(drop_unowned, engine, tracker, owns)
            restored = await svc.call(restore, engine, tracker, records, owns)
            for r in restored:
                r.update(event="restore", agent_id=self.agent_id)
                log.warning("%s", json.dumps(r, sort_keys=True))
                self.restores.append(r)
            self.metrics.restored_parents.inc(len(restored))
            log.info("agent %s assigned %d parent-order partition(s) of %d; %d state record(s) read, "
                     "%d parent(s) restored, %d dropped in %.3f s", self.agent_id, len(mine), n, len(records),
                     len(restored), len(dropped), time.perf_counter() - t0)

    # ----------------------------------------------------------------- steps
    async def process(self, svc: AgentService, work: _Work) -> None:
        """One transaction: engine step, then children + DLQ + state records + offsets."""
        assert self.tracker is not None
        async with self.lock:
            if self.failure is not None:
                raise FeedError(f"state restore failed: {self.failure!r}; rebuilding from the state topic")
            if work.generation != self.generation:
                self.metrics.transactions.labels(outcome="discarded").inc()
                log.info("discarding a batch of %d record(s) fetched before a rebalance", work.n)
                return
            inb = work.inbound
            tracker = self.tracker

            def step() -> tuple[Any, list[tuple[str, bytes]]]:
                res = svc.driver.step(inb)
                return res, tracker.collect()

            states: list[tuple[str, bytes]] = []
            res: Any = None
            if inb.empty:
                out = list(inb.dlq)
            else:
                res, states = await svc.call(step)
                out = svc.outputs(res, inb)
            out.extend(OutRecord(self.topics.agent_state, value, key=pid.encode()) for pid, value in states)
            offsets = next_offsets(r for rs in work.records.values() for r in rs)
            try:
                await asyncio.wait_for(self._transact(svc, out, offsets), self.txn_timeout_s)
            except Exception as exc:
                self.metrics.transactions.labels(outcome="failed").inc()
                raise FeedError(f"step transaction failed: {exc!r}; rebuilding from the state topic") from exc
            self.metrics.transactions.labels(outcome="committed").inc()
            self.metrics.state_records.inc(len(states))
            if res is not None:
                svc.observe(res, work.t_arrival)
                if inb.md is not None and len(inb.md):
                    svc.processed_ts.update(inb.md.latest_ts())

    async def _transact(self, svc: AgentService, out: list[OutRecord], offsets: dict[Any, int]) -> None:
        sink: Any = svc.sink
        await sink.begin()
        try:
            if out:
                await sink.send_many(out)
            if offsets:
                await sink.send_offsets(offsets, self.group_id)
        except BaseException:
            try:
                await asyncio.wait_for(sink.abort(), 5.0)
            except Exception as exc:  # e.g. fenced (fatal state): the successor's init aborts it anyway
                log.warning("abort failed: %r", exc)
            raise
        await sink.commit()

    # ---------------------------------------------------------------- probe
    async def _probe(self, interval_s: float = 1.0) -> None:
        """``broker_up`` from a TCP connect to the bootstrap addresses; outage seconds counted."""
        addrs = [a.strip().rsplit(":", 1) for a in self.bootstrap.split(",") if a.strip()]
        down_since: float | None = None
        while True:
            up = False
            for host, port in addrs:
                try:
                    _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
                    w.close()
                    up = True
                    break
                except (OSError, TimeoutError):
                    continue
            now = time.monotonic()
            if not up and down_since is None:
                down_since = now
                log.warning("broker %s unreachable", self.bootstrap)
            elif up and down_since is not None:
                log.warning("broker %s reachable again after %.1f s", self.bootstrap, now - down_since)
                down_since = None
            self.metrics.broker_up.set(1 if up else 0)
            if not up:
                self.metrics.broker_outage_seconds.inc(interval_s)
            await asyncio.sleep(interval_s)
