"""How a step's outputs reach Kafka: at-least-once, or one Kafka transaction per step.

The service (:class:`agent.live.service.AgentService`) fetches and decodes a
batch, then hands it to its :class:`Delivery`, which runs the engine step on
the engine thread and publishes what it decided:

- :class:`AtLeastOnce` (plain): send children, DLQ copies and venue fills
  (idempotent producer), then commit the consumed offsets every
  ``COMMIT_INTERVAL_S``; a crash re-reads from the last commit and may
  re-decide a period (same deterministic ``child_order_id``).
- :class:`Transactional` (exactly once, the default with Kafka): every step
  commits, per input partition ``p`` it touched, ONE Kafka transaction of
  ``p``'s own producer (:mod:`agent.live.fencing`, transactional id
  ``<group>.<parent-orders topic>.<p>``): the child orders, the
  ``agent_state.v1`` records (key = parent_id, compacted ``exec.agent-state``)
  of the parents whose symbol maps to ``p`` and whose engine record changed,
  the ``agent_market.v1`` records of those symbols that are due
  (:mod:`agent.live.state_topic`), the DLQ copies of ``p``'s records and
  ``p``'s consumed offsets (``send_offsets_to_transaction``); a partition
  with nothing but offsets to commit opens no transaction, its offsets wait
  for its next one, at most ``kafka.idle_offsets_commit_ms`` (:class:`IdleOffsets`). The partitions'
  transactions run concurrently; each is atomic on its own and covers
  everything of its symbols, so a crash between them loses or repeats
  nothing. Readers use ``read_committed``. Whoever is assigned ``p`` next
  starts producer ``p`` first, which fences this agent for ``p`` (a stalled
  agent can commit nothing for ``p`` afterwards) and settles its open
  transaction at once. With ``service.market_state_interval_s`` = 0 (the
  default under the event clock) every row reaches the engine in the step
  whose transaction commits its offset, and that transaction carries the
  market records of the symbols it fed: a restarted agent decides exactly as
  an uninterrupted one. Otherwise (the wall clock: latency first) rows that
  close no period may be held (``md_buffer_rows``, :mod:`agent.live.engine_step`)
  past the transaction that commits their offsets: after a crash the
  estimators miss them, as they miss the rows since the symbol's last market
  record; decisions, children and fills do not. Partition ownership and restore:
  :mod:`agent.live.ownership`. A failed or timed-out transaction raises
  :class:`agent.core.errors.FeedError`: the app rebuilds the service from the
  state topic (crash-only recovery). Child orders and state records carry a
  ``mpc.agent_id`` header (which agent committed them, for audits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.core.errors import FeedError
from agent.core.model import ParentOrder
from agent.live.engine_step import StepResult
from agent.live.fencing import PartitionProducers
from agent.live.intake import Inbound
from agent.live.metrics import ReliabilityMetrics
from agent.live.ownership import Ownership
from agent.live.settings import ServiceSection
from agent.live.state_topic import symbol_partition
from agent.live.work import Host, Work
from feeds.ports import OutRecord, TopicPartition, next_offsets

log = logging.getLogger("agent.live.delivery")

COMMIT_INTERVAL_S = 1.0
AGENT_HEADER = "mpc.agent_id"
WRONG_PARTITION = "wrong_partition"
"""A parent order on another partition than its symbol's (``murmur2(symbol) % partitions``)."""

__all__ = ["AGENT_HEADER", "WRONG_PARTITION", "AtLeastOnce", "Delivery", "ReliabilityMetrics", "Transactional"]


class Delivery(Protocol):
    """How a step's outputs reach Kafka (see the module docstring)."""

    @property
    def generation(self) -> int:
        """Rebalance generation: a batch fetched in an older one is discarded."""
        ...

    def engine_settings(self, settings: ServiceSection) -> ServiceSection:
        """The service settings the engine step runs with."""
        ...

    def every_row_in_its_step(self, settings: ServiceSection) -> bool:
        """Every row must reach the engine within the step that consumed it (no deferred catch-up)."""
        ...

    async def attach(self, svc: Host) -> None:
        """Called once the service's source has started."""
        ...

    async def process(self, svc: Host, work: Work) -> None:
        """Run the engine step of ``work`` and publish its outputs."""
        ...

    def offsets_due(self) -> bool:
        """Consumed offsets wait for a commit and should not wait longer (the service then runs an
        empty step, which commits them)."""
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

    def every_row_in_its_step(self, settings: ServiceSection) -> bool:
        return False

    async def attach(self, svc: Host) -> None:
        return None

    async def process(self, svc: Host, work: Work) -> None:
        inb = work.inbound
        svc.intake.count(inb)
        if not inb.empty:
            result = await svc.call(svc.driver.step, inb)
            await svc.send(svc.outputs(result, inb))
            svc.observe(result, work.t_arrival)
            if inb.md is not None and len(inb.md):
                svc.processed_ts.update(inb.md.latest_ts())
        elif inb.dlq:
            await svc.send(inb.dlq)
        if work.records and self.commit_offsets:
            self._pending.update(next_offsets(r for rs in work.records.values() for r in rs))
        await self._commit(svc)

    def offsets_due(self) -> bool:
        return bool(self._pending) and time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S

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
    """One transaction per touched partition and step, restore on assignment (see the module docstring).

    Parameters
    ----------
    agent_id : this instance's id (in the records, their ``mpc.agent_id`` header and the restore log).
    group_id : the consumer group whose offsets go into each transaction.
    topics : ``md``, ``parent_orders``, ``fills`` (consumed) and ``agent_state``.
    state_consumer : ``isolation_level ->`` unstarted group-less ``AIOKafkaConsumer`` (see ``read_state``).
    metrics : :class:`agent.live.metrics.ReliabilityMetrics`.
    producers : the per-partition transactional producers (also the service's sink).
    txn_timeout_s : a step's transactions not done by then raise ``FeedError``.
    idle_offsets_s : a partition with nothing to write but offsets opens no transaction; its offsets
        go with its next one, or in one of their own once the oldest waited this long (0: never wait).
    """

    def __init__(self, *, agent_id: str, group_id: str, topics: Any, state_consumer: Callable[[str], Any],
                 metrics: ReliabilityMetrics, producers: PartitionProducers, txn_timeout_s: float = 30.0,
                 idle_offsets_s: float = 0.0) -> None:
        self.agent_id, self.group_id, self.topics = agent_id, group_id, topics
        self.metrics, self.producers, self.txn_timeout_s = metrics, producers, txn_timeout_s
        self.idle_offsets_s = idle_offsets_s
        self._idle = IdleOffsets()
        self.lock = asyncio.Lock()
        self.ownership = Ownership(agent_id=agent_id, topics=topics, state_consumer=state_consumer,
                                   metrics=metrics, lock=self.lock, producers=producers)
        self._header = (AGENT_HEADER, agent_id.encode())

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

    def every_row_in_its_step(self, settings: ServiceSection) -> bool:
        return settings.market_interval_s == 0  # exact market records (module docstring)

    def engine_settings(self, settings: ServiceSection) -> ServiceSection:
        if self.every_row_in_its_step(settings):  # exact: every row fed before the transaction commits its offset
            return settings.model_copy(update={"md_buffer_rows": 0})
        return settings  # held rows close no period: only the estimators can miss them (module docstring)

    async def attach(self, svc: Host) -> None:
        """Subscribe the service's consumer with the rebalance listener."""
        from aiokafka import ConsumerRebalanceListener

        self.ownership.bind(svc)
        own = self.ownership

        class _Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await own.revoked()

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await own.assigned(assigned)

        svc.source.consumer.subscribe(topics=self.input_topics, listener=_Listener())

    def offsets_due(self) -> bool:
        return self._idle.oldest_age(self.generation) >= self.idle_offsets_s

    async def close(self, svc: Host) -> None:
        """Commit the offsets still waiting (a failure is logged: they are read again, which is safe)."""
        if not self._idle.waiting(self.generation):
            return
        try:
            await self.process(svc, Work(Inbound(), {}, time.perf_counter(), 0, self.generation), all_idle=True)
        except FeedError as exc:
            log.warning("commit of waiting offsets at close failed (they will be read again): %s", exc)

    async def process(self, svc: Host, work: Work, *, all_idle: bool = False) -> None:
        """Engine step, then per touched partition one transaction: children + DLQ + state + offsets
        (a partition with only offsets waits: :class:`IdleOffsets`; ``all_idle``: none waits)."""
        tracker = self.ownership.tracker
        assert tracker is not None
        async with self.lock:
            if self.ownership.failure is not None:
                raise FeedError(f"state restore failed: {self.ownership.failure!r}; rebuilding from the state topic")
            if work.generation != self.generation:
                self.metrics.transactions.labels(outcome="discarded").inc()
                log.info("discarding a batch of %d record(s) fetched before a rebalance", work.n)
                return
            svc.intake.count(work.inbound)  # counted once: a discarded batch is read again
            inb, misplaced = self._split_misplaced(work.inbound)

            def step() -> tuple[StepResult, list[tuple[str, str | None, bytes | None]]]:
                result = svc.driver.step(inb)
                return result, [(key, tracker.symbol_of(key), value) for key, value in tracker.collect()]

            states: list[tuple[str, str | None, bytes | None]] = []
            res: StepResult | None = None
            if inb.empty:
                out = list(inb.dlq)
            else:
                stepped, states = await svc.call(step)
                out, res = svc.outputs(stepped, inb), stepped
            if misplaced.control:
                out.extend(svc.outputs(StepResult(rejected=[("control", i, WRONG_PARTITION)
                                                            for i in range(len(misplaced.control))]), misplaced))
            groups = self._by_partition(out, res, states, next_offsets(r for rs in work.records.values() for r in rs))
            groups = self._idle.route(groups, self.generation, 0.0 if all_idle else self.idle_offsets_s)
            try:
                await asyncio.wait_for(self._commit(groups), self.txn_timeout_s)
            except Exception as exc:
                raise FeedError(f"step transaction failed: {exc!r}; rebuilding from the state topic") from exc
            self.metrics.state_records.inc(len(states))
            if res is not None:
                svc.observe(res, work.t_arrival)
                if inb.md is not None and len(inb.md):
                    svc.processed_ts.update(inb.md.latest_ts())

    # ------------------------------------------------------------ routing
    def _split_misplaced(self, inb: Inbound) -> tuple[Inbound, Inbound]:
        """Parent orders on another partition than their symbol's are refused (``wrong_partition``):
        their outputs would belong to another partition's producer, possibly another agent's."""
        n = self.ownership.n_partitions
        keep: list[int] = []
        bad: list[int] = []
        for i, item in enumerate(inb.control):
            rec = inb.control_records[i] if i < len(inb.control_records) else None
            wrong = (isinstance(item, ParentOrder) and rec is not None and n > 0
                     and symbol_partition(item.symbol, n) != rec.partition)
            (bad if wrong else keep).append(i)
        if not bad:
            return inb, Inbound()
        ok = dataclasses.replace(inb, control=[inb.control[i] for i in keep],
                                 control_records=[inb.control_records[i] for i in keep])
        misplaced = Inbound(control=[inb.control[i] for i in bad], control_records=[inb.control_records[i] for i in bad])
        for i in bad:
            log.error("parent order %s of symbol %s on partition %s, not %d (key the parent-orders topic by symbol "
                      "with the murmur2 partitioner)", getattr(inb.control[i], "parent_id", "?"),
                      getattr(inb.control[i], "symbol", "?"), getattr(inb.control_records[i], "partition", "?"),
                      symbol_partition(getattr(inb.control[i], "symbol", ""), n))
        return ok, misplaced

    def _by_partition(self, out: list[OutRecord], res: StepResult | None,
                      states: list[tuple[str, str | None, bytes | None]],
                      offsets: dict[TopicPartition, int]) -> dict[int, tuple[list[OutRecord], dict[TopicPartition, int]]]:
        """Outputs and offsets grouped by the input partition whose transaction commits them."""
        n = self.ownership.n_partitions
        symbol_of = {c.parent_id: c.symbol for c in res.children} if res is not None else {}
        groups: dict[int, tuple[list[OutRecord], dict[TopicPartition, int]]] = {}

        def group(p: int) -> tuple[list[OutRecord], dict[TopicPartition, int]]:
            return groups.setdefault(p, ([], {}))

        for r in out:
            src = next((v for k, v in reversed(r.headers) if k == "source.partition"), None)
            if src is not None:  # a DLQ copy: with the offsets of the record it copies
                group(int(src))[0].append(r)
            elif r.topic == self.topics.child_orders and r.key is not None:
                group(symbol_partition(symbol_of[r.key.decode()], n))[0].append(self._stamp(r))
            else:
                raise FeedError(f"no partition for an output record on {r.topic!r}")
        unrouted: list[OutRecord] = []
        for key, symbol, value in states:
            rec = self._stamp(OutRecord(self.topics.agent_state, value, key=key.encode()))
            if symbol is None:  # the agent's kill-switch record: no symbol, goes with every transaction
                unrouted.append(rec)
            else:
                group(symbol_partition(symbol, n))[0].append(rec)
        for tp, off in offsets.items():
            group(tp.partition)[1][tp] = off
        if unrouted:
            owned = sorted(self.producers.partitions) if not groups else sorted(groups)
            for p in owned:
                group(p)[0].extend(unrouted)
        return groups

    def _stamp(self, r: OutRecord) -> OutRecord:
        return dataclasses.replace(r, headers=(*r.headers, self._header))

    # --------------------------------------------------------- committing
    async def _commit(self, groups: dict[int, tuple[list[OutRecord], dict[TopicPartition, int]]]) -> None:
        """One transaction per partition, concurrently; the first failure is raised after all ended."""
        sinks = {p: self.producers.get(p) for p in groups}  # FeedError for a partition not owned
        results = await asyncio.gather(*(self._transact(sinks[p], *groups[p]) for p in groups),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        self.metrics.transactions.labels(outcome="committed").inc(len(results) - len(failed))
        if failed:
            self.metrics.transactions.labels(outcome="failed").inc(len(failed))
            raise failed[0]

    async def _transact(self, sink: Any, out: list[OutRecord], offsets: dict[TopicPartition, int]) -> None:
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


Groups = dict[int, tuple[list[OutRecord], dict[TopicPartition, int]]]


class IdleOffsets:
    """Offsets of partitions that had nothing else to write, waiting for a transaction.

    A partition whose step wrote nothing (market data that closed no period, decided nothing and
    changed no state record) need not open a transaction (~5 broker round trips, and the next one
    then waits for its markers: ``bench/txn.py``). Its offsets wait here and go with the
    partition's next transaction, or in one of their own once the oldest waited ``wait_s``.
    Exactly once holds: every transaction of a partition carries the offsets of every row read
    before it, so whatever a committed output or state record depends on is committed with it;
    a crash re-reads the rows after the last commit, which affected nothing committed (the
    restored state does not hold them; under the event clock every step that feeds rows writes
    its symbols' market records, so it never waits). After a rebalance (another generation) the
    waiting offsets are dropped: their rows are read again by whoever owns the partition.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._offsets: dict[int, dict[TopicPartition, int]] = {}
        self._since: dict[int, float] = {}
        self._generation = -1

    def _sync(self, generation: int) -> None:
        if generation != self._generation:
            self._offsets.clear()
            self._since.clear()
            self._generation = generation

    def waiting(self, generation: int) -> bool:
        self._sync(generation)
        return bool(self._offsets)

    def oldest_age(self, generation: int) -> float:
        """Seconds the oldest waiting offsets have waited (-inf when none wait)."""
        self._sync(generation)
        return self.clock() - min(self._since.values()) if self._since else -math.inf

    def route(self, groups: Groups, generation: int, wait_s: float) -> Groups:
        """The transactions to run: ``groups`` without the offsets-only ones that may wait, with the
        waiting offsets of every partition that commits now or has waited ``wait_s``."""
        self._sync(generation)
        now = self.clock()
        out: Groups = {}
        for p, (recs, offsets) in groups.items():
            if recs or wait_s <= 0:
                out[p] = (recs, offsets)
            elif offsets:
                _merge(self._offsets.setdefault(p, {}), offsets)
                self._since.setdefault(p, now)
        for p in list(self._offsets):
            if p in out or now - self._since[p] >= wait_s:
                _merge(out.setdefault(p, ([], {}))[1], self._offsets.pop(p))
                del self._since[p]
        return out


def _merge(into: dict[TopicPartition, int], offsets: dict[TopicPartition, int]) -> None:
    for tp, off in offsets.items():
        if off > into.get(tp, -1):
            into[tp] = off
