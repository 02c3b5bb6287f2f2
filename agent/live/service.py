"""The live service: feeds -> :class:`agent.core.engine.ExecutionEngine` -> sinks.

One asyncio loop moves bytes and time; the engine (pure, synchronous, not
thread-safe) runs its jobs one at a time through one runner
(:mod:`agent.live.engine_runner`, ``service.engine_runner``): on the loop's own
thread between its I/O, or on a one-thread executor. Every engine call goes
through it.

Each step of the main loop (:meth:`AgentService.step`):

1. ``source.getmany`` (batched) returns records of the three input topics;
   a file feed (``--feed file``) may add a ``BookBatch`` of market data;
2. :class:`agent.live.intake.Intake` decodes and validates every record at the
   boundary; a bad one goes to the DLQ with its reason and is counted, never
   stopping the agent (a large batch of market data is decoded in a worker
   process, :class:`agent.live.book_decoder.BookDecoder`, while the loop serves
   the step in flight);
3. one engine job (:class:`agent.live.engine_step.EngineDriver`)
   applies, in this order, parent orders / cancels, fills (de-duplicated by
   ``fill_id``) and the market data a decision needs now (latency first: the
   rows that close no period are held and fed in bulk by a catch-up job queued
   behind the step; see that module); market data wait while the parent-order
   or fill partitions are behind (:class:`agent.live.observe.ControlGate`);
4. the child orders decided are published (idempotent producer, key =
   parent_id) and the decision latency is observed at the broker's ack; an
   ``on_step`` callback receives each step's timing
   (:class:`agent.live.observe.StepReport`).

:meth:`AgentService.run` pipelines the steps: batch N+1 is fetched (and a large
one decoded in the worker process) while batch N is published (and, with the
thread runner, while the engine works on it); engine jobs and publications stay
in order.

Staleness: with a ``clock`` the engine gets ``now_ns=clock()`` and refuses to
trade on a book older than ``max_snapshot_age_ms``; a watchdog task flags
(``mpc_agent_feed_stale``) and counts periods without market data.

Operations (:mod:`agent.live.operations`, ``self.ops``): kill switch, parent
lifecycle, liveness, readiness, housekeeping; read by :mod:`agent.live.http`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from agent.core.engine import ExecutionEngine
from agent.core.errors import FeedError, RetriableFeedError
from agent.core.model import ParentOrder
from agent.live.book_decoder import BookDecoder
from agent.live.delivery import AtLeastOnce, Delivery
from agent.live.engine_runner import make_runner
from agent.live.engine_step import EngineDriver, StepResult, Venue
from agent.live.events import RateLimitedLog
from agent.live.intake import Inbound, Intake
from agent.live.kill_switch import KillSwitch
from agent.live.metrics import AgentMetrics
from agent.live.observe import ControlGate, StepReport
from agent.live.operations import Operations
from agent.live.settings import LogSection, ServiceSection, TopicsSection
from agent.live.work import Work
from feeds.book import BookBatch
from feeds.ports import OutRecord, Record, Sink, Source
from feeds.wire import codec

log = logging.getLogger("agent.live.service")
T = TypeVar("T")

SEND_RETRIES = 5


class AgentService:
    """Asyncio shell around one engine (see the module docstring).

    Parameters
    ----------
    engine : the decision core (only ever called from the executor thread).
    sink : producer of child orders and DLQ copies (and venue fills with the file feed).
    metrics : the metric bundle (``AgentMetrics.create(registry)``).
    source : consumer of ``topics.md``, ``topics.parent_orders`` and ``topics.fills``
        (None with the file feed when nothing else comes in).
    md_feed : async iterator of ``BookBatch`` (the paced file feed).
    clock : wall clock in ns for the snapshot age check (None: event time only).
    venue : in-process execution (file feed + simulator); None with Kafka.
    kill_switch : the process's kill switch (kept across rebuilds); None = one from ``engine.kill_switch``.
    broker_up : reachability of the broker for readiness (None: not probed, the condition is left out).
    log_settings : dead-letter log rate limits.
    on_step : called with the :class:`StepReport` of every published step (on the event loop).
    decode_worker_at_start : start the market-data decode worker with the service, not at the first
        large batch (the Kafka agent: its first batches after a restart or a takeover are a backlog).
    """

    def __init__(
        self,
        engine: ExecutionEngine,
        *,
        sink: Sink,
        metrics: AgentMetrics,
        topics: TopicsSection | None = None,
        settings: ServiceSection | None = None,
        source: Source | None = None,
        md_feed: AsyncIterator[BookBatch] | None = None,
        clock: Callable[[], int] | None = time.time_ns,
        venue: Venue | None = None,
        max_message_bytes: int = 1 << 20,
        delivery: Delivery | None = None,
        kill_switch: KillSwitch | None = None,
        broker_up: Callable[[], bool | None] | None = None,
        log_settings: LogSection | None = None,
        on_step: Callable[[StepReport], None] | None = None,
        decode_worker_at_start: bool = False,
    ) -> None:
        self.engine, self.sink, self.metrics = engine, sink, metrics
        self.topics = topics or TopicsSection()
        self.settings = settings or ServiceSection()
        self.source, self.md_feed, self.clock, self.venue = source, md_feed, clock, venue
        self.intake = Intake(self.topics, metrics, max_message_bytes=max_message_bytes, clock=clock,
                             max_future_skew_ms=self.settings.max_future_skew_ms,
                             max_parent_periods=self.settings.max_parent_periods,
                             dead_letter_log=RateLimitedLog.from_settings(log_settings or LogSection()))
        self.decoder = BookDecoder(max_bytes=max_message_bytes, min_records=self.settings.decode_worker_min_records or None,
                                   metrics=metrics)
        self.decode_worker_at_start = decode_worker_at_start
        self.delivery: Delivery = delivery if delivery is not None else AtLeastOnce()
        exact = self.delivery.every_row_in_its_step(self.settings)
        self.runner = make_runner(self.settings.engine_runner)
        self.driver = EngineDriver(engine, self.delivery.engine_settings(self.settings), clock=clock, venue=venue,
                                   defer=None if exact else self.runner.defer)
        self.driver.waiting = self.runner.waiting
        self.gate = ControlGate([self.topics.parent_orders, self.topics.fills],
                                max_wait_ms=self.settings.control_wait_ms)
        self.on_step = on_step
        self.children_sent = 0
        self._cpu_counted = 0.0  # driver.cpu_s already added to mpc_agent_engine_cpu_seconds_total
        self.processed_ts: dict[str, int] = {}  # per symbol: newest ts_event fully processed
        self.decision_latencies_s: deque[float] = deque(maxlen=100_000)  # arrival -> ack (seconds)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = False
        self._started = self._stopped = False
        self._md_done = md_feed is None
        self._stale = False
        self.kill_switch = kill_switch if kill_switch is not None else KillSwitch(engine.kill_switch)
        self.ops = Operations(self, self.settings, kill_switch=self.kill_switch, broker_up=broker_up)

    # ---------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the sink, the source, the file feed and the watchdog (idempotent)."""
        if self._started:
            return
        self.runner.start()
        if self.decode_worker_at_start:  # its imports run in its own process while the source connects
            self.decoder.prestart()
        try:
            await self.sink.start()
            if self.source is not None:
                await self.source.start()
                await self.delivery.attach(self)
            start = getattr(self.md_feed, "start", None)
            if start is not None:
                await start()
        except BaseException:  # (``async with`` calls no stop() when the start fails): no worker outlives it
            await self.decoder.close()
            raise
        self._started = True
        self.intake.last_md_monotonic = time.monotonic()
        self.kill_switch.apply(self.engine)  # nothing runs on the engine thread yet
        self.ops.beat()
        self.spawn(self._watchdog(), name="mpc-agent-watchdog")
        await self.ops.tick()
        self.spawn(self.ops.housekeeping(), name="mpc-agent-housekeeping")

    async def stop(self) -> None:
        """Stop consuming, let the in-flight step finish, flush, commit and close (idempotent)."""
        self._stop_requested = True
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        self.metrics.ready.set(0)
        self.ops.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._close_feeds(), self.settings.shutdown_timeout_s)
        except TimeoutError:
            log.error("feeds did not close within shutdown_timeout_s=%.1f", self.settings.shutdown_timeout_s)
        self.runner.shutdown()  # waits for an engine job still running
        await self.decoder.close()

    async def _close_feeds(self) -> None:
        try:
            await self.delivery.close(self)
        except FeedError as exc:
            log.warning("final offset commit failed: %s", exc)
        closers = [("md feed", getattr(self.md_feed, "stop", None)),
                   ("source", None if self.source is None else self.source.stop),
                   ("sink", self.sink.stop)]  # the sink last: it flushes pending sends
        for name, close in closers:
            if close is None:
                continue
            try:  # one failing feed must not leave the others (e.g. the producer) open
                await close()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # aiokafka's consumer.stop() re-raises the cancellation of its own fetch task
                # when the broker is gone; that is not a request to cancel us
                log.warning("closing the %s was interrupted by an internal cancellation", name)
            except Exception as exc:
                log.warning("closing the %s failed: %s", name, exc)

    async def __aenter__(self) -> AgentService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Make :meth:`run` return after the current step (SIGTERM/SIGINT call this)."""
        self._stop_requested = True

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """A named background task kept in a set; its failure is logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    @property
    def running(self) -> bool:
        """Started and neither stopped nor asked to stop."""
        return self._started and not self._stopped and not self._stop_requested

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, body)`` of ``/readyz`` (:mod:`agent.live.health`)."""
        ready, body = self.ops.readiness()
        body.update(md_stale=self._stale, children_sent=self.children_sent)
        return ready, body

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(connected, details)``: started, not stopped, partitions assigned (tests and benchmarks wait on
        it); ``/readyz`` is :meth:`readiness`."""
        assignment = getattr(self.source, "assignment", None)
        try:
            source = assignment is None or bool(assignment())
        except FeedError:
            source = False
        ready = self._started and not self._stopped and source
        return ready, {"source": source, "md_stale": self._stale, "children_sent": self.children_sent}

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """``(alive, body)`` of ``/livez``."""
        return self.ops.liveness()

    @property
    def engine_cpu_s(self) -> float:
        """CPU time the engine thread spent in steps and catch-ups so far (seconds)."""
        return self.driver.cpu_s

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` as the next engine job (every engine call goes through here)."""
        return await self.runner.call(fn, *args)

    async def submit(self, parent: ParentOrder) -> None:
        """Start managing ``parent`` (from config, flags or a JSON file)."""
        self.ops.lifecycle.expect([parent.parent_id])
        if await self.call(self.engine.submit, parent):
            self.ops.accepted(parent)
        for sym, rem in (await self.call(self.driver.remaining)).items():
            self.metrics.parent_remaining.labels(symbol=sym).set(rem)

    # ------------------------------------------------------------ running
    async def run(self, *, until_idle: bool = False) -> None:
        """Step until :meth:`request_stop`; with ``until_idle`` also return once the file feed is
        exhausted and a step finds nothing more to do.

        Pipelined: batch N+1 is fetched and decoded while batch N is processed (module
        docstring); engine jobs and publications stay in order (one in flight at a time)."""
        inflight: asyncio.Task[None] | None = None
        try:
            while not self.stopping:
                self.ops.beat()
                work = await self._fetch()
                if inflight is not None:
                    await inflight
                    inflight = None
                if work is not None and work.n:
                    inflight = asyncio.create_task(self._process(work), name="mpc-agent-process")
                elif self.delivery.offsets_due():  # a quiet feed: an empty step commits what waits
                    idle = Work(Inbound(), {}, time.perf_counter(), 0, self.delivery.generation)
                    inflight = asyncio.create_task(self._process(idle), name="mpc-agent-process")
                if until_idle and self._md_done and (work is None or work.n == 0):
                    break
        finally:
            if inflight is not None:
                await inflight
        await self.flush()
        await self.delivery.close(self)

    async def flush(self, *, state: bool = False) -> None:
        """Feed the rows held back to the engine and publish what it decides, through the delivery
        (with transactions: in a transaction of its own, without offsets). With ``state`` also when
        no row is held: what changed outside a step (the tombstones of parents housekeeping dropped)
        is committed now instead of with the next input, which a quiet feed may not bring."""
        if self.runner.running and (self.driver.held_rows or state):
            try:
                await self.delivery.process(self, Work(Inbound(flush=True), {}, time.perf_counter(), 0,
                                                       self.delivery.generation))
            except FeedError as exc:  # held rows close no period: only the estimators miss them
                log.warning("flush (%d held row(s)) failed: %s", self.driver.held_rows, exc)

    async def step(self) -> int:
        """One getmany (and/or file batch) -> validate -> engine -> publish; returns items handled."""
        work = await self._fetch()
        if work is None:
            return 0
        await self._process(work)
        return work.n

    async def _fetch(self) -> Work | None:
        s = self.settings
        file_batch: BookBatch | None = None
        if not self._md_done and self.md_feed is not None:
            try:
                file_batch = await anext(self.md_feed)
            except StopAsyncIteration:
                self._md_done = True
        records: dict[str, list[Record]] = {}
        if self.source is not None:
            timeout = 0 if file_batch is not None or not self._md_done else s.poll_timeout_ms
            try:
                records = await self.source.getmany(timeout_ms=timeout, max_records=s.max_batch_records)
            except RetriableFeedError as exc:
                log.warning("%s; backing off 0.5 s", exc)
                await asyncio.sleep(0.5)
                return None
        t_arrival = time.perf_counter()
        md_recs = records.get(self.topics.md)
        decoded = await self.decoder.decode([r.value for r in md_recs]) if md_recs else None
        inb = self.intake.take(records, file_batch, deferred=True, md_decoded=decoded)
        pending = self.ops.take_pending_kill()  # an operator's change, to be written to the state topic
        inb.kill.extend(pending)
        if self.source is not None:
            inb.hold_md = await self.gate.hold(self.source)
        n = inb.records + len(pending) + (len(file_batch) if file_batch is not None else 0)
        return Work(inb, records, t_arrival, n, self.delivery.generation)

    async def _process(self, work: Work) -> None:
        self.ops.expect(work.inbound)
        if work.inbound.kill:
            await self.ops.apply_kill(work.inbound.kill)
        await self.delivery.process(self, work)

    # --------------------------------------------------------- publishing
    def outputs(self, res: StepResult, inb: Inbound) -> list[OutRecord]:
        """DLQ copies (intake and engine-side rejections), child orders, venue fills of one step."""
        out = inb.dlq + self.intake.dead_letters(inb, res.rejected)
        self.ops.on_outputs(inb, res.rejected)
        for c in res.children:
            out.append(OutRecord(self.topics.child_orders, codec.encode(codec.child_from_model(c)),
                                 key=c.parent_id.encode()))
        for f in res.venue_fills:
            out.append(OutRecord(self.topics.fills, codec.encode(codec.fill_from_model(f)),
                                 key=f.parent_id.encode()))
        return out

    def observe(self, res: StepResult, t_arrival: float) -> None:
        """Metrics of one published step (``t_arrival`` -> now is the decision latency)."""
        t_ack = time.perf_counter()
        m = self.metrics
        if res.children:  # (per step, not per child: 1,000 decisions a second pay for each label lookup)
            latency = t_ack - t_arrival
            self.ops.on_sent(res.children, latency)
            sides = collections.Counter(c.side for c in res.children)
            impact = {c.symbol: c.impact for c in res.children if c.impact is not None}  # the last one counts
            for _ in res.children:
                m.decision_latency.observe(latency)
            self.decision_latencies_s.extend([latency] * len(res.children))
            for side, k in sides.items():
                m.child_orders.labels(side=side).inc(k)
            for sym, imp in impact.items():
                m.impact_beta.labels(symbol=sym).set(imp.beta)
                m.impact_gamma.labels(symbol=sym).set(imp.gamma)
        self.children_sent += len(res.children)
        cpu = self.driver.cpu_s  # steps and the catch-ups since the last step (read, not reset)
        if cpu > self._cpu_counted:
            m.engine_cpu.inc(cpu - self._cpu_counted)
            self._cpu_counted = cpu
        if res.outcomes:
            m.observe_decisions(res.outcomes, res.boundaries, self.clock() if self.clock is not None else None)
        if self.on_step is not None:
            self.on_step(StepReport(t_arrival, res.t_start, res.t_end, t_ack, len(res.children), res.decisions,
                                    res.cpu_s))
        for status, iters, us in res.solves:
            m.observe_solve(status, iters, us)
        for reason in res.fallbacks:
            m.fallback_plans.labels(reason=reason).inc()
        if res.fills_applied:
            m.fills.inc(res.fills_applied)
        if res.fills_duplicate:
            m.fills_duplicate.inc(res.fills_duplicate)
        for sym, rem in res.remaining.items():
            m.parent_remaining.labels(symbol=sym).set(rem)

    async def send(self, out: list[OutRecord]) -> None:
        """Produce ``out`` (retrying a retriable failure with exponential backoff)."""
        delay = 0.1
        for attempt in range(SEND_RETRIES):
            try:
                await self.sink.send_many(out)
                return
            except RetriableFeedError as exc:
                if attempt == SEND_RETRIES - 1:
                    raise
                log.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay *= 2

    async def _watchdog(self) -> None:
        """Flag and count periods without market data (wall clock)."""
        s = self.settings
        while True:
            await asyncio.sleep(s.watchdog_interval_ms / 1000)
            stale = time.monotonic() - self.intake.last_md_monotonic > s.no_data_alarm_s
            if stale and not self._stale:
                self.metrics.no_data_alarms.inc()
                log.warning("no market data for %.1f s", s.no_data_alarm_s)
            self._stale = stale
            self.metrics.feed_stale.set(1 if stale else 0)


