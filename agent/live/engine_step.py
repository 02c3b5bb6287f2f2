"""The engine side of the live service: everything that runs as an engine job (engine_runner).

:class:`EngineDriver` applies an :class:`agent.live.intake.Inbound` batch to the
:class:`agent.core.engine.ExecutionEngine` and returns a :class:`StepResult`
for the event loop to publish. It is only ever called from the service's
one-thread executor (the engine is not thread-safe).

Latency first. A step applies parent orders / cancels, then fills
(de-duplicated by ``fill_id``), then market data, and of the market data only
what a decision needs now: for every symbol whose held rows reach the next
decision time of one of its parents, the rows up to the one the last such
decision is taken on (every decision of the batch, in order; each on the
first tradable row at or after its boundary, as in replay). The step returns
there, so its child orders go out at once. The rows that close no period (the
tail of a deciding symbol, every row of the other symbols) are *held* and fed
in bulk, one engine call per symbol, by a catch-up once
``md_buffer_rows`` are held: with a ``defer`` callable (the service's
executor) the catch-up is queued right behind the step, so it runs while the
event loop publishes (without one, and ``md_buffer_rows`` = 0, the step
itself feeds every row before it returns: nothing is held past the step); every held row still reaches the estimators
before any later decision, because rows of a symbol are always fed in order.

Parent orders and fills before market data of the same instant: a step whose
``Inbound.hold_md`` is set (the service sets it while the parent-order or fill
partitions are behind their end offsets) holds all market data, so that a
parent order published before a market-data backlog is known before any row
past its start reaches the engine.

Conflation (``md_conflation = "latest"``) keeps, per symbol, every trade
(volume), the first row at or after each period boundary (the decision book)
and the newest book; ``"all"`` (default) feeds every valid row (replay parity).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.core.driver import Driver, DriveResult, Venue
from agent.core.engine import ExecutionEngine
from agent.core.model import ChildOrder, Fill
from agent.core.parent_state import FillOutcome
from agent.live.intake import DUPLICATE_PARENT, UNKNOWN_PARENT, Inbound
from agent.live.settings import ServiceSection
from feeds.book import BookBatch

log = logging.getLogger("agent.live.engine_step")

MAX_HELD_ROWS = 20_000
"""Held rows beyond which a step catches up itself (a backlog: throughput before latency)."""

Defer = Callable[[Callable[[], Any]], Any]
"""Queue a job behind the current one (``EngineRunner.defer``)."""


@dataclass
class StepResult:
    """What one engine job produced (handed back to the event loop)."""

    children: list[ChildOrder] = field(default_factory=list)
    venue_fills: list[Fill] = field(default_factory=list)
    fills_applied: int = 0
    fills_duplicate: int = 0
    decisions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """Decisions by :attr:`DecisionRecord.outcome` (child order, zero quantity, skip reason)."""
    boundaries: list[tuple[int, int]] = field(default_factory=list)
    """``(period start, period length)`` in ns of each decision: how late it came (``observe``)."""
    solves: list[tuple[str, int, float]] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    remaining: dict[str, float] = field(default_factory=dict)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    """``(kind, index, reason)``: parent orders (``"control"``) / fills refused here."""
    t_start: float = 0.0
    t_end: float = 0.0
    """``time.perf_counter()`` when the step started and returned on the engine thread."""
    cpu_s: float = 0.0
    """Engine-thread CPU time of the step (``time.thread_time``)."""


class EngineDriver:
    """Feeds one engine on its thread (see the module docstring).

    Parameters
    ----------
    engine : the decision core.
    settings : ``md_buffer_rows`` and ``md_conflation``.
    clock : wall clock in ns passed to ``on_book`` as ``now_ns`` (None: event time only).
    venue : in-process execution (file feed); its fills are applied at once.
    defer : queues the catch-up behind the step on the engine thread (None: the step catches up).

    Attributes
    ----------
    cpu_s : engine-thread CPU time of every step and catch-up so far (seconds).
    """

    def __init__(self, engine: ExecutionEngine, settings: ServiceSection, *,
                 clock: Callable[[], int] | None = None, venue: Venue | None = None,
                 defer: Defer | None = None) -> None:
        self.engine, self.settings, self.clock, self.venue = engine, settings, clock, venue
        self.defer = defer
        self.waiting: Callable[[], bool] = lambda: False
        """True while another job waits for the engine thread (the service sets it)."""
        self.driver = Driver(engine, venue=venue, clock=clock)
        self._held: dict[str, list[BookBatch]] = {}
        self._held_n = 0
        self._queued = False  # a catch-up is queued behind the step
        self._carry = DriveResult()  # what a deferred catch-up decided: published with the next step
        self._failure: BaseException | None = None
        self.cpu_s = 0.0

    @property
    def held_rows(self) -> int:
        """Rows received but not yet fed to the engine."""
        return self._held_n

    def step(self, inb: Inbound) -> StepResult:
        """Apply one inbound batch: parent orders / cancels, fills, then the market data a decision needs."""
        t0, c0 = time.perf_counter(), time.thread_time()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        eng, res = self.engine, StepResult(t_start=t0)
        for i, item in enumerate(inb.control):
            if isinstance(item, str):
                if item not in eng.parents:  # a cancel for a parent this agent never had: dead-lettered
                    res.rejected.append(("control", i, UNKNOWN_PARENT))
                eng.cancel(item)
            elif not eng.submit(item):
                res.rejected.append(("control", i, DUPLICATE_PARENT))
        for i, f in enumerate(inb.fills):
            self._apply_fill(f, res, i)
        drive, self._carry = self._carry, DriveResult()
        self._hold(inb.md)
        if inb.flush:
            self._feed_held(drive)
        elif not inb.hold_md:
            self._decide_due(drive)
            if self._held_n and self._held_n >= self.settings.md_buffer_rows:
                if self.defer is None or self._held_n >= max(4 * self.settings.md_buffer_rows, MAX_HELD_ROWS):
                    self._feed_held(drive)
                elif not self._queued:
                    self._queued = True
                    self.defer(self._deferred_catch_up)
        touched = {item if isinstance(item, str) else item.parent_id for item in inb.control}
        touched.update(f.parent_id for f in inb.fills)
        self._collect(drive, res, touched)
        res.t_end = time.perf_counter()
        res.cpu_s = time.thread_time() - c0
        self.cpu_s += res.cpu_s
        return res

    def _deferred_catch_up(self) -> None:
        """The queued catch-up, one symbol at a time: when another job (a step) is waiting for the
        engine thread it queues the rest behind that job, so a decision never waits for a whole
        catch-up. Decisions it takes (none expected: held rows close no period of a known parent)
        are carried into the next step's result; a failure is raised by the next step."""
        c0 = time.thread_time()
        self._queued = False
        try:
            for i, sym in enumerate(list(self._held)):
                if i and self.waiting() and self.defer is not None:  # one symbol at least: progress
                    self._queued = True
                    self.defer(self._deferred_catch_up)
                    break
                self._feed(sym, self._take(sym), self._carry)
        except BaseException as exc:  # the executor would swallow it: the next step raises it
            log.error("market-data catch-up failed: %r", exc)
            self._failure = exc
        self.cpu_s += time.thread_time() - c0

    # ---------------------------------------------------------------- rows
    def _hold(self, md: BookBatch | None) -> None:
        """Add ``md`` to the held rows, per symbol."""
        if md is None or not len(md):
            return
        self._held_n += len(md)
        for sym, rows in _by_symbol(md):
            self._held.setdefault(sym, []).append(rows)

    def _take(self, sym: str) -> BookBatch:
        parts = self._held.pop(sym)
        rows = parts[0] if len(parts) == 1 else BookBatch.concat(parts)
        self._held_n -= len(rows)
        return rows

    def _decide_due(self, res: DriveResult) -> None:
        """For each symbol whose held rows reach its next decision time, feed the rows up to the one
        its last decision in them is taken on; the rest stays held."""
        due = self.engine.next_decisions()
        for sym in list(self._held):
            t_due, parts = due.get(sym), self._held.get(sym)
            if t_due is None or not parts or int(parts[-1].ts_event[-1]) < t_due:
                continue
            rows = self._take(sym)
            cut = self._decision_cut(sym, rows)
            if cut < len(rows):
                self._held[sym] = [rows[cut:]]
                self._held_n += len(rows) - cut
                rows = rows[:cut]
            self._feed(sym, rows, res)

    def _decision_cut(self, sym: str, rows: BookBatch) -> int:
        """Rows ``[0, cut)`` hold every decision of ``sym``'s active parents the rows reach: up to
        the first tradable row at or after the latest due time (its next one, or a later boundary)."""
        ts = rows.ts_event
        t_last = int(ts[-1])
        latest = None
        for st in self.engine.parents_of(sym):
            t_next, p = st.due_ns(), st.parent
            if st.done or t_next > t_last:
                continue
            # the boundary at or before the last row (expiry: the due time itself)
            t_k = max(t_next, p.period_start_ns(min(p.n_periods - 1, (t_last - p.start_ns) // p.period_ns)))
            latest = t_k if latest is None else max(latest, t_k)
        if latest is None:
            return 0
        i = int(np.searchsorted(ts, latest, side="left"))
        tradable = np.flatnonzero((rows.bid_sz[i:, 0] > 0) & (rows.ask_sz[i:, 0] > 0)
                                  & (rows.bid_px[i:, 0] < rows.ask_px[i:, 0]))
        return len(rows) if not tradable.size else i + int(tradable[0]) + 1

    def _feed_held(self, res: DriveResult) -> None:
        for sym in list(self._held):
            self._feed(sym, self._take(sym), res)

    def _feed(self, sym: str, rows: BookBatch, res: DriveResult) -> None:
        """Feed one symbol's rows through the core driver."""
        if not len(rows):
            return
        if self.settings.md_conflation == "latest":
            rows = self._conflate(rows, sym)
        self.driver.feed(rows, sym, res)

    # -------------------------------------------------------------- results
    def _collect(self, drive: DriveResult, res: StepResult, touched: set[str] | None = None) -> None:
        """Move ``drive`` into ``res``; ``remaining`` for the symbols of the parents decided on and of
        ``touched`` (the parents the step's orders, cancels and fills named)."""
        touched = set() if touched is None else touched
        res.children.extend(drive.children)
        res.venue_fills.extend(drive.fills)
        res.fills_applied += drive.fill_outcomes[FillOutcome.APPLIED]
        res.fills_duplicate += drive.fill_outcomes[FillOutcome.DUPLICATE]
        res.decisions += len(drive.decisions)
        parents = self.engine.parents
        for d in drive.decisions:
            res.outcomes[d.outcome] += 1
            st = parents.get(d.parent_id)
            if st is not None:
                res.boundaries.append((st.parent.period_start_ns(d.period_index), st.period_ns))
            if d.plan is not None:
                res.solves.append((d.plan.solver.status, d.plan.solver.iterations, d.plan.solver.solve_us))
                if d.plan.fallback:
                    res.fallbacks.append(d.plan.fallback)
        touched.update(d.parent_id for d in drive.decisions)
        if touched:
            res.remaining = self.remaining(touched)

    def _apply_fill(self, f: Fill, res: StepResult, index: int) -> None:
        outcome = self.engine.on_fill(f)
        if outcome is FillOutcome.APPLIED:
            res.fills_applied += 1
        elif outcome is FillOutcome.DUPLICATE:
            res.fills_duplicate += 1
        else:
            res.rejected.append(("fill", index, outcome.value))

    def remaining(self, parent_ids: set[str] | None = None) -> dict[str, float]:
        """Remaining shares of the active parents, per symbol (0 for symbols whose parents ended);
        only the symbols of ``parent_ids`` when given."""
        parents = self.engine.parents
        if parent_ids is None:
            states = list(parents.values())
        else:
            symbols = {parents[p].parent.symbol for p in parent_ids if p in parents}
            states = [st for sym in symbols for st in self.engine.parents_of(sym)]
        out: dict[str, float] = {}
        for st in states:
            sym = st.parent.symbol
            out[sym] = out.get(sym, 0.0) + (0.0 if st.done else st.remaining)
        return out

    def _conflate(self, rows: BookBatch, sym: str) -> BookBatch:
        """Keep trades, the first row at/after each period boundary and the newest book."""
        n = len(rows)
        keep = rows.action == "T"
        keep[-1] = True
        ts = rows.ts_event
        bounds = self.engine.period_boundaries(sym, int(ts[0]) - 1, int(ts[-1]))
        first = np.searchsorted(ts, bounds, side="left")
        keep[first[first < n]] = True
        return rows if keep.all() else rows.take(keep)


def _by_symbol(md: BookBatch) -> list[tuple[str, BookBatch]]:
    """Rows of each symbol (order kept), symbols in order of first appearance: one stable sort and
    one take of the batch, then a slice (views) per symbol -- half the cost of a take per symbol."""
    sym = md.symbol
    first = sym[0]
    if bool((sym == first).all()):
        return [(str(first), md)]
    order = np.argsort(sym, kind="stable")
    ordered = sym[order]
    cut = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts, ends = np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [len(ordered)])).tolist()
    rows = md.take(order)
    groups = sorted(zip(order[starts].tolist(), starts, ends, strict=True))  # by each symbol's first row
    return [(str(ordered[a]), rows.take(slice(a, b))) for _, a, b in groups]
