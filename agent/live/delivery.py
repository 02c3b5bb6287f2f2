"""How a step's outputs reach Kafka: at-least-once, or one Kafka transaction per step.

The service (:class:`agent.live.service.AgentService`) fetches and decodes a
batch, then hands it to its :class:`Delivery`, which runs the engine step on
the engine thread and publishes what it decided:

- :class:`AtLeastOnce` (plain): send children, DLQ copies and venue fills
  (idempotent producer), then commit the consumed offsets every
  ``COMMIT_INTERVAL_S``; a crash re-reads from the last commit and may
  re-decide a period (same deterministic ``child_order_id``).
- :class:`Transactional` (exactly once, the default with Kafka): every step is
  ONE Kafka transaction: the child orders, the DLQ copies, the
  ``agent_state.v1`` records of every parent whose engine record changed (key
  = parent_id, compacted ``exec.agent-state``) and the consumed offsets
  (``send_offsets_to_transaction``). Readers use ``read_committed``. The
  ``transactional_id`` is stable per agent instance (``<group>.<agent_id>``),
  so a restarted agent fences its predecessor. Rows that close no period
  may be held (``md_buffer_rows``, :mod:`agent.live.engine_step`) past the
  transaction that commits their offsets: after a crash the estimators miss
  them, as they miss the rows since the symbol's last market record
  (:mod:`agent.live.state_topic`); decisions, children and fills do not. Partition
  ownership and restore: :mod:`agent.live.ownership`. A failed or timed-out
  transaction raises :class:`agent.core.errors.FeedError`: the app rebuilds
  the service from the state topic (crash-only recovery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.core.errors import FeedError
from agent.live.broker_probe import probe_broker
from agent.live.metrics import ReliabilityMetrics
from agent.live.ownership import Ownership
from agent.live.settings import ServiceSection
from agent.live.work import Host, Work
from feeds.ports import OutRecord, next_offsets

log = logging.getLogger("agent.live.delivery")

COMMIT_INTERVAL_S = 1.0


class Delivery(Protocol):
    """How a step's outputs reach Kafka (see the module docstring)."""

    @property
    def generation(self) -> int:
        """Rebalance generation: a batch fetched in an older one is discarded."""
        ...

    def engine_settings(self, settings: ServiceSection) -> ServiceSection:
        """The service settings the engine step runs with."""
        ...

    async def attach(self, svc: Host) -> None:
        """Called once the service's source has started."""
        ...

    async def process(self, svc: Host, work: Work) -> None:
        """Run the engine step of ``work`` and publish its outputs."""
        ...

    async def close(self, svc: Host) -> None:
        """Final commit when the service stops."""
        ...


class AtLeastOnce:
    """Send, then commit offsets periodically (see the module docstring).

    Parameters
    ----------
    commit_offsets : False when the source has no group (offsets are then not committed).
    """

    generation = 0

    def __init__(self, *, commit_offsets: bool = True) -> None:
        self.commit_offsets = commit_offsets
        self._pending: dict[Any, int] = {}
        self._last_commit = time.monotonic()

    def engine_settings(self, settings: ServiceSection) -> ServiceSection:
        return settings

    async def attach(self, svc: Host) -> None:
        return None

    async def process(self, svc: Host, work: Work) -> None:
        inb = work.inbound
        if not inb.empty:
            result = await svc.call(svc.driver.step, inb)
            await svc.send(svc.outputs(result, inb))
            svc.observe(result, work.t_arrival)
            if inb.md is not None and len(inb.md):
                svc.processed_ts.update(inb.md.latest_ts())
        elif inb.dlq:
            await svc.send(inb.dlq)
        if work.records:
            self._pending.update(next_offsets(r for rs in work.records.values() for r in rs))
            await self._commit(svc)

    async def close(self, svc: Host) -> None:
        await self._commit(svc, force=True)

    async def _commit(self, svc: Host, *, force: bool = False) -> None:
        if not (self.commit_offsets and svc.source is not None and self._pending):
            return
        if not force and time.monotonic() - self._last_commit < COMMIT_INTERVAL_S:
            return
        if getattr(svc.source, "group_id", None) is None:
            self._pending.clear()
            return
        offsets, self._pending = self._pending, {}
        await svc.source.commit(offsets)
        self._last_commit = time.monotonic()


class Transactional:
    """One Kafka transaction per step, state restore on assignment (see the module docstring).

    Parameters
    ----------
    agent_id : this instance's id (in the records and the restore log line).
    group_id : the consumer group whose offsets go into each transaction.
    topics : ``md``, ``parent_orders``, ``fills`` (consumed) and ``agent_state``.
    state_consumer : ``isolation_level ->`` unstarted group-less ``AIOKafkaConsumer`` (see ``read_state``).
    metrics : :class:`agent.live.metrics.ReliabilityMetrics`.
    bootstrap : ``host:port[,host:port]`` probed for ``broker_up``.
    txn_timeout_s : a step transaction not done by then raises ``FeedError``.
    """

    def __init__(self, *, agent_id: str, group_id: str, topics: Any, state_consumer: Callable[[str], Any],
                 metrics: ReliabilityMetrics, bootstrap: str = "", txn_timeout_s: float = 30.0) -> None:
        self.agent_id, self.group_id, self.topics = agent_id, group_id, topics
        self.metrics, self.bootstrap, self.txn_timeout_s = metrics, bootstrap, txn_timeout_s
        self.lock = asyncio.Lock()
        self.ownership = Ownership(agent_id=agent_id, topics=topics, state_consumer=state_consumer,
                                   metrics=metrics, lock=self.lock)

    @property
    def generation(self) -> int:
        return self.ownership.generation

    @property
    def restores(self) -> list[dict[str, Any]]:
        return self.ownership.restores

    @property
    def input_topics(self) -> list[str]:
        t = self.topics
        return [t.md, t.parent_orders, t.fills]

    def engine_settings(self, settings: ServiceSection) -> ServiceSection:
        return settings  # held rows close no period: only the estimators can miss them (module docstring)

    async def attach(self, svc: Host) -> None:
        """Subscribe the service's consumer with the rebalance listener; start the broker probe."""
        from aiokafka import ConsumerRebalanceListener

        self.ownership.bind(svc)
        own = self.ownership

        class _Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await own.revoked()

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await own.assigned(assigned)

        svc.source.consumer.subscribe(topics=self.input_topics, listener=_Listener())
        if self.bootstrap:
            svc.spawn(probe_broker(self.bootstrap, self.metrics), name="mpc-agent-broker-probe")

    async def close(self, svc: Host) -> None:
        return None  # offsets are committed inside each step's transaction

    async def process(self, svc: Host, work: Work) -> None:
        """One transaction: engine step, then children + DLQ + state records + offsets."""
        tracker = self.ownership.tracker
        assert tracker is not None
        async with self.lock:
            if self.ownership.failure is not None:
                raise FeedError(f"state restore failed: {self.ownership.failure!r}; rebuilding from the state topic")
            if work.generation != self.generation:
                self.metrics.transactions.labels(outcome="discarded").inc()
                log.info("discarding a batch of %d record(s) fetched before a rebalance", work.n)
                return
            inb = work.inbound

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

    async def _transact(self, svc: Host, out: list[OutRecord], offsets: dict[Any, int]) -> None:
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

