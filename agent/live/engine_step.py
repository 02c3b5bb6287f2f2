"""The engine side of the live service: everything that runs on the one engine thread.

:class:`EngineDriver` applies an :class:`agent.live.intake.Inbound` batch to the
:class:`agent.core.engine.ExecutionEngine` in the order parent orders / cancels,
fills (de-duplicated by ``fill_id``), market data, and returns a
:class:`StepResult` for the event loop to publish. It is only ever called from
the service's one-thread executor (the engine is not thread-safe).

Market data are *held back* while no decision is due: a symbol's rows are fed
(in order, one ``on_book`` call per period chunk) as soon as one of them
reaches the next decision time of a parent on that symbol, and all rows once
``md_buffer_rows`` are held. Every row still reaches the estimators before any
decision; the engine's fixed per-call cost is paid once per period instead of
once per ``getmany`` batch. Rows are split at the period boundaries of the
symbol's active parents so that an in-process venue's fills (file feed) reach
the engine before its next decision, exactly like ``replay.runner``.

Conflation (``md_conflation = "latest"``) keeps, per symbol, every trade
(volume), the first row at or after each period boundary (the decision book)
and the newest book; ``"all"`` (default) feeds every valid row (replay parity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.core.driver import Driver, DriveResult, Venue
from agent.core.engine import ExecutionEngine
from agent.core.model import ChildOrder, Fill
from agent.core.parent_state import FillOutcome
from agent.live.intake import DUPLICATE_PARENT, UNKNOWN_PARENT, Inbound
from agent.live.settings import ServiceSection
from feeds.book import BookBatch

HELD_COMPACT_BATCHES = 16


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
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    """``(kind, index, reason)``: parent orders (``"control"``) / fills refused here."""


class EngineDriver:
    """Feeds one engine on its thread (see the module docstring).

    Parameters
    ----------
    engine : the decision core.
    settings : ``md_buffer_rows`` and ``md_conflation``.
    clock : wall clock in ns passed to ``on_book`` as ``now_ns`` (None: event time only).
    venue : in-process execution (file feed); its fills are applied at once.
    """

    def __init__(self, engine: ExecutionEngine, settings: ServiceSection, *,
                 clock: Callable[[], int] | None = None, venue: Venue | None = None) -> None:
        self.engine, self.settings, self.clock, self.venue = engine, settings, clock, venue
        self.driver = Driver(engine, venue=venue, clock=clock)
        self._held: list[BookBatch] = []
        self._held_n = 0

    @property
    def held_rows(self) -> int:
        """Rows received but not yet fed to the engine."""
        return self._held_n

    def step(self, inb: Inbound) -> StepResult:
        """Apply one inbound batch: parent orders / cancels, fills, then market data."""
        eng, res = self.engine, StepResult()
        for i, item in enumerate(inb.control):
            if isinstance(item, str):
                if item not in eng.parents:  # a cancel for a parent this agent never had: dead-lettered
                    res.rejected.append(("control", i, UNKNOWN_PARENT))
                eng.cancel(item)
            elif not eng.submit(item):
                res.rejected.append(("control", i, DUPLICATE_PARENT))
        for i, f in enumerate(inb.fills):
            self._apply_fill(f, res, i)
        drive = DriveResult()
        self._hold_and_feed(inb.md, drive, force=inb.flush, recheck=bool(inb.control))
        res.children = drive.children
        res.venue_fills = drive.fills
        res.fills_applied += drive.fill_outcomes[FillOutcome.APPLIED]
        res.fills_duplicate += drive.fill_outcomes[FillOutcome.DUPLICATE]
        for d in drive.decisions:
            if d.plan is not None:
                res.solves.append((d.plan.solver.status, d.plan.solver.iterations, d.plan.solver.solve_us))
                if d.plan.fallback:
                    res.fallbacks.append(d.plan.fallback)
        res.remaining = self.remaining()
        return res

    def _next_due(self) -> dict[str, int]:
        """Per symbol, the event time of the next decision of its active parents."""
        due: dict[str, int] = {}
        for p in self.engine.active():
            if p.symbol not in due:
                t = self.engine.next_decision_ns(p.symbol)
                if t is not None:
                    due[p.symbol] = t
        return due

    def _hold_and_feed(self, md: BookBatch | None, res: DriveResult, *, force: bool, recheck: bool) -> None:
        """Hold rows back while no decision is due; feed a symbol's held rows, in order, as soon as
        a row reaches the next decision time of one of its parents (all symbols once
        ``md_buffer_rows`` rows are held, or on ``force``). Every row still reaches the estimators
        before any decision, and the engine's per-call cost is paid once per period, not per batch."""
        if md is not None and len(md):
            self._held.append(md)
            self._held_n += len(md)
            if len(self._held) >= HELD_COMPACT_BATCHES:  # few, larger arrays: cheaper to cut later
                self._held = [BookBatch.concat(self._held)]
        if not self._held:
            return
        if force or self._held_n >= self.settings.md_buffer_rows:
            buf = self._held[0] if len(self._held) == 1 else BookBatch.concat(self._held)
            self._held, self._held_n = [], 0
            for sym, rows in _by_symbol(buf):
                self._decide_rows(sym, rows, res)
            return
        probe = md if (md is not None and len(md) and not recheck) else BookBatch.concat(self._held)
        due = _due_symbols(probe, self._next_due())
        if not due:
            return
        buf = self._held[0] if len(self._held) == 1 else BookBatch.concat(self._held)
        for sym in due:
            mine = buf.symbol == sym
            self._decide_rows(sym, buf.take(mine), res)
            buf = buf.take(~mine)
        self._held, self._held_n = ([buf], len(buf)) if len(buf) else ([], 0)

    def _decide_rows(self, sym: str, rows: BookBatch, res: DriveResult) -> None:
        """Feed one symbol's rows through the core driver (chunked at period boundaries)."""
        if self.settings.md_conflation == "latest":
            rows = self._conflate(rows, sym)
        self.driver.feed(rows, sym, res)

    def _apply_fill(self, f: Fill, res: StepResult, index: int) -> None:
        outcome = self.engine.on_fill(f)
        if outcome is FillOutcome.APPLIED:
            res.fills_applied += 1
        elif outcome is FillOutcome.DUPLICATE:
            res.fills_duplicate += 1
        else:
            res.rejected.append(("fill", index, outcome.value))

    def remaining(self) -> dict[str, float]:
        """Remaining shares of the active parents, per symbol (0 for symbols whose parents ended)."""
        out: dict[str, float] = {}
        for st in self.engine.parents.values():
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


def _due_symbols(md: BookBatch, due: dict[str, int]) -> list[str]:
    """Symbols of ``md`` with a row at or after their next decision time (first appearance order)."""
    if not due or not len(md):
        return []
    names, first, inv = np.unique(md.symbol, return_index=True, return_inverse=True)
    t_due = np.array([due.get(str(n), np.iinfo(np.int64).max) for n in names], dtype=np.int64)
    hit = np.zeros(len(names), dtype=bool)
    hit[inv[md.ts_event >= t_due[inv]]] = True
    return [str(names[g]) for g in sorted(np.flatnonzero(hit).tolist(), key=lambda g: first[g])]
