"""The live service: feeds -> :class:`agent.engine.ExecutionEngine` -> sinks.

One asyncio loop moves bytes and time; the engine (pure, synchronous, not
thread-safe) runs on a one-thread executor so the loop never blocks on a solve
(OSQP releases the GIL). Every engine call goes through that thread.

Each step of the main loop (:meth:`AgentService.step`):

1. ``source.getmany`` (batched) returns records of the three input topics;
   a file feed (``--feed file``) may add a ``BookBatch`` of market data;
2. :class:`agent.intake.Intake` decodes and validates every record at the
   boundary; a bad one goes to the DLQ with its reason and is counted, never
   stopping the agent;
3. one executor job applies, in this order, parent orders / cancels, fills
   (de-duplicated by ``fill_id``) and then market data per symbol in time
   order. Market data rows are split at the period boundaries of the
   symbol's active parents, so that when a venue answers in-process (file
   feed + simulator) the fills of period k reach the engine before the
   decision of period k+1, exactly like ``replay.runner``;
4. the child orders decided are published (idempotent producer, key =
   parent_id) and the decision latency is observed at the broker's ack.

Conflation (``md_conflation``): ``all`` passes every valid row (the
estimators see every book, decisions happen on the first row past the
boundary: identical to replay; the engine is vectorised per batch, so the cost
per row is small next to decoding); ``latest`` keeps, per symbol and batch,
every trade (volume), the first row at or after each period boundary (the
decision book) and the newest book.

Staleness: with a ``clock`` the engine gets ``now_ns=clock()`` and refuses to
trade on a book older than ``max_snapshot_age_ms``; a watchdog task flags
(``mpc_agent_feed_stale``) and counts periods without market data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from agent.config import ServiceSection, TopicsSection
from agent.engine import ExecutionEngine
from agent.errors import FeedError, RetriableFeedError
from agent.intake import Inbound, Intake
from agent.metrics import AgentMetrics
from agent.model import ChildOrder, Fill, ParentOrder
from feeds import codec
from feeds.book import BookBatch
from feeds.ports import OutRecord, Sink, Source, next_offsets

log = logging.getLogger("agent.service")
T = TypeVar("T")
Venue = Callable[[ChildOrder], list[Fill]]
"""In-process execution (file feed): child order -> fills, called on the engine thread."""

SEND_RETRIES = 5
COMMIT_INTERVAL_S = 1.0


@dataclass
class StepResult:
    """What one engine job produced (handed back to the event loop)."""

    children: list[ChildOrder] = field(default_factory=list)
    venue_fills: list[Fill] = field(default_factory=list)
    fills_applied: int = 0
    fills_duplicate: int = 0
    solves: list[tuple[str, int, float]] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    remaining: dict[str, float] = field(default_factory=dict)


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
        commit_offsets: bool = True,
    ) -> None:
        self.engine, self.sink, self.metrics = engine, sink, metrics
        self.topics = topics or TopicsSection()
        self.settings = settings or ServiceSection()
        self.source, self.md_feed, self.clock, self.venue = source, md_feed, clock, venue
        self.commit_offsets = commit_offsets
        self.intake = Intake(self.topics, metrics, max_message_bytes=max_message_bytes, clock=clock)
        self.fills_seen: set[str] = set()
        self.children_sent = 0
        self.processed_ts: dict[str, int] = {}  # per symbol: newest ts_event fully processed
        self.decision_latencies_s: deque[float] = deque(maxlen=100_000)  # arrival -> ack (seconds)
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = False
        self._started = self._stopped = False
        self._md_done = md_feed is None
        self._stale = False
        self._decisions_seen = 0
        self._held: dict[str, list[BookBatch]] = {}
        self._held_rows: dict[str, int] = {}
        self._pending_offsets: dict[Any, int] = {}
        self._last_commit = time.monotonic()

    # ---------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start the sink, the source, the file feed and the watchdog (idempotent)."""
        if self._started:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpc-engine")
        await self.sink.start()
        if self.source is not None:
            await self.source.start()
        start = getattr(self.md_feed, "start", None)
        if start is not None:
            await start()
        self._started = True
        self.intake.last_md_monotonic = time.monotonic()
        self.spawn(self._watchdog(), name="mpc-agent-watchdog")
        self.metrics.ready.set(1)

    async def stop(self) -> None:
        """Stop consuming, let the in-flight step finish, flush, commit and close (idempotent)."""
        self._stop_requested = True
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        self.metrics.ready.set(0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._commit(force=True)
        except FeedError as exc:
            log.warning("final offset commit failed: %s", exc)
        stop_feed = getattr(self.md_feed, "stop", None)
        if stop_feed is not None:
            await stop_feed()
        if self.source is not None:
            await self.source.stop()
        await self.sink.stop()  # flushes pending sends
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> AgentService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Make :meth:`run` return after the current step (SIGTERM/SIGINT call this)."""
        self._stop_requested = True

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT -> :meth:`request_stop` (graceful shutdown)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

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

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, details)`` for ``/healthz``: ready when started and every feed is connected."""
        feeds: dict[str, bool] = {"sink": self._started}
        if self.source is not None:
            assignment = getattr(self.source, "assignment", None)
            try:
                feeds["source"] = self._started and (assignment is None or bool(assignment()))
            except FeedError:
                feeds["source"] = False
        if self.md_feed is not None:
            feeds["file"] = self._started
        ready = self._started and not self._stopped and all(feeds.values())
        return ready, {"feeds": feeds, "md_stale": self._stale, "children_sent": self.children_sent}

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the engine thread (every engine call goes through here)."""
        if self._executor is None:
            raise FeedError("service not started; use 'async with AgentService(...)'")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, parent: ParentOrder) -> None:
        """Start managing ``parent`` (from config, flags or a JSON file)."""
        await self.call(self.engine.submit, parent)
        for sym, rem in (await self.call(self._remaining)).items():
            self.metrics.parent_remaining.labels(symbol=sym).set(rem)

    # ------------------------------------------------------------ running
    async def run(self, *, until_idle: bool = False) -> None:
        """Step until :meth:`request_stop`; with ``until_idle`` also return once the file feed is
        exhausted and a step finds nothing more to do."""
        while not self.stopping:
            got = await self.step()
            if until_idle and self._md_done and got == 0:
                break
        await self.flush()
        await self._commit(force=True)

    async def flush(self) -> None:
        """Feed the rows held back (see ``_feed``) to the engine and publish what it decides."""
        if self._executor is not None and any(self._held_rows.values()):
            t = time.perf_counter()
            await self._publish(await self.call(self._engine_step, Inbound(flush=True)), [], t)

    async def step(self) -> int:
        """One getmany (and/or file batch) -> validate -> engine -> publish; returns items handled."""
        s = self.settings
        file_batch: BookBatch | None = None
        if not self._md_done and self.md_feed is not None:
            try:
                file_batch = await anext(self.md_feed)
            except StopAsyncIteration:
                self._md_done = True
        records = {}
        if self.source is not None:
            timeout = 0 if file_batch is not None or not self._md_done else s.poll_timeout_ms
            try:
                records = await self.source.getmany(timeout_ms=timeout, max_records=s.max_batch_records)
            except RetriableFeedError as exc:
                log.warning("%s; backing off 0.5 s", exc)
                await asyncio.sleep(0.5)
                return 0
        t_arrival = time.perf_counter()
        inb = self.intake.take(records, file_batch)
        n = inb.records + (len(file_batch) if file_batch is not None else 0)
        if not inb.empty:
            result = await self.call(self._engine_step, inb)
            await self._publish(result, inb.dlq, t_arrival)
            if inb.md is not None and len(inb.md):
                self.processed_ts.update(inb.md.latest_ts())
        elif inb.dlq:
            await self._send(inb.dlq)
        if records:
            self._pending_offsets.update(next_offsets(r for rs in records.values() for r in rs))
            await self._commit()
        return n

    # ------------------------------------------------- engine thread only
    def _engine_step(self, inb: Inbound) -> StepResult:
        eng, res = self.engine, StepResult()
        for item in inb.control:
            if isinstance(item, str):
                eng.cancel(item)
            else:
                eng.submit(item)
        for f in inb.fills:
            self._apply_fill(f, res)
        md = inb.md
        if md is not None and len(md):
            due = self._next_due()
            for sym, rows in _by_symbol(md):
                self._feed(sym, rows, res, due)
        if inb.flush:
            for sym in list(self._held):
                self._feed(sym, None, res, {}, force=True)
        for d in eng.decisions[self._decisions_seen:]:
            if d.plan is not None:
                res.solves.append((d.plan.solver.status, d.plan.solver.iterations, d.plan.solver.solve_us))
                if d.plan.fallback:
                    res.fallbacks.append(d.plan.fallback)
        self._decisions_seen = len(eng.decisions)
        res.remaining = self._remaining()
        return res

    def _next_due(self) -> dict[str, int]:
        """Per symbol, the event time of the next decision of its active parents."""
        due: dict[str, int] = {}
        for st in self.engine.parents.values():
            if not st.done:
                t = st.parent.period_start_ns(st.next_period)
                due[st.parent.symbol] = min(t, due.get(st.parent.symbol, t))
        return due

    def _feed(self, sym: str, rows: BookBatch | None, res: StepResult, due: dict[str, int], *,
              force: bool = False) -> None:
        """Hold the symbol's rows until a decision is due (or ``md_buffer_rows`` are held), then feed
        them all, in order, in one ``on_book`` call per period chunk: every row still reaches the
        estimators before any decision, and the per-call cost of the engine is paid once."""
        held = self._held.setdefault(sym, [])
        if rows is not None:
            held.append(rows)
            self._held_rows[sym] = self._held_rows.get(sym, 0) + len(rows)
        if not held:
            return
        last = int(held[-1].ts_event[-1])
        if not (force or self._held_rows[sym] >= self.settings.md_buffer_rows
                or due.get(sym, last + 1) <= last):
            return
        batch = held[0] if len(held) == 1 else BookBatch.concat(held)
        held.clear()
        self._held_rows[sym] = 0
        if self.settings.md_conflation == "latest":
            batch = self._conflate(batch, sym)
        for chunk in self._chunks(batch, sym):
            now_ns = self.clock() if self.clock is not None else None
            for child in self.engine.on_book(chunk, symbol=sym, now_ns=now_ns):
                res.children.append(child)
                if self.venue is not None:
                    for f in self.venue(child):
                        res.venue_fills.append(f)
                        self._apply_fill(f, res)

    def _apply_fill(self, f: Fill, res: StepResult) -> None:
        if f.fill_id in self.fills_seen:
            res.fills_duplicate += 1
            return
        self.fills_seen.add(f.fill_id)
        if self.engine.on_fill(f):
            res.fills_applied += 1

    def _remaining(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for st in self.engine.parents.values():
            sym = st.parent.symbol
            out[sym] = out.get(sym, 0.0) + (0.0 if st.done else st.remaining)
        return out

    def _boundaries(self, sym: str, t0: int, t1: int) -> np.ndarray:
        """Period starts ``start + k * period`` (k >= 1) of the symbol's active parents in ``(t0, t1]``."""
        out: list[np.ndarray] = []
        for p in self.engine.active():
            if p.symbol != sym:
                continue
            k0 = max(1, -(-(t0 - p.start_ns) // p.period_ns))
            k1 = min(p.n_periods - 1, (t1 - p.start_ns) // p.period_ns)
            if k1 >= k0:
                out.append(p.start_ns + p.period_ns * np.arange(k0, k1 + 1, dtype=np.int64))
        return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def _chunks(self, rows: BookBatch, sym: str) -> list[BookBatch]:
        """Split at period boundaries so in-process fills land between two decisions."""
        ts = rows.ts_event
        bounds = self._boundaries(sym, int(ts[0]), int(ts[-1]))
        if not len(bounds):
            return [rows]
        cuts = np.unique(np.searchsorted(ts, bounds, side="left"))
        edges = [0, *[int(c) for c in cuts if 0 < c < len(ts)], len(ts)]
        return [rows[a:b] for a, b in itertools.pairwise(edges)]

    def _conflate(self, rows: BookBatch, sym: str) -> BookBatch:
        """Keep trades, the first row at/after each period boundary and the newest book."""
        n = len(rows)
        keep = rows.action == "T"
        keep[-1] = True
        ts = rows.ts_event
        bounds = self._boundaries(sym, int(ts[0]) - 1, int(ts[-1]))
        first = np.searchsorted(ts, bounds, side="left")
        keep[first[first < n]] = True
        return rows if keep.all() else rows.take(keep)

    # --------------------------------------------------------- publishing
    async def _publish(self, res: StepResult, dlq: list[OutRecord], t_arrival: float) -> None:
        out = list(dlq)
        for c in res.children:
            out.append(OutRecord(self.topics.child_orders, codec.encode(codec.child_from_model(c)),
                                 key=c.parent_id.encode()))
        for f in res.venue_fills:
            out.append(OutRecord(self.topics.fills, codec.encode(codec.fill_from_model(f)),
                                 key=f.parent_id.encode()))
        if out:
            await self._send(out)
        t_ack = time.perf_counter()
        m = self.metrics
        for c in res.children:
            m.decision_latency.observe(t_ack - t_arrival)
            self.decision_latencies_s.append(t_ack - t_arrival)
            m.child_orders.labels(side=c.side).inc()
            if c.impact is not None:
                m.impact_beta.labels(symbol=c.symbol).set(c.impact.beta)
                m.impact_gamma.labels(symbol=c.symbol).set(c.impact.gamma)
        self.children_sent += len(res.children)
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

    async def _send(self, out: list[OutRecord]) -> None:
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

    async def _commit(self, *, force: bool = False) -> None:
        if not (self.commit_offsets and self.source is not None and self._pending_offsets):
            return
        if not force and time.monotonic() - self._last_commit < COMMIT_INTERVAL_S:
            return
        if getattr(self.source, "group_id", None) is None:
            self._pending_offsets.clear()
            return
        offsets, self._pending_offsets = self._pending_offsets, {}
        await self.source.commit(offsets)
        self._last_commit = time.monotonic()

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


def _by_symbol(md: BookBatch) -> list[tuple[str, BookBatch]]:
    """Rows of each symbol (order kept), symbols in order of first appearance."""
    first = md.symbol[0]
    if bool((md.symbol == first).all()):
        return [(str(first), md)]
    names, start, inv = np.unique(md.symbol, return_index=True, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv, minlength=len(names))
    ends = np.cumsum(counts)
    groups = [(int(start[g]), str(names[g]), order[ends[g] - counts[g]:ends[g]]) for g in range(len(names))]
    return [(name, md.take(idx)) for _, name, idx in sorted(groups)]
