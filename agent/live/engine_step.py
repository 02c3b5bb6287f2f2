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

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.app.config import ServiceSection
from agent.core.engine import ExecutionEngine
from agent.core.model import ChildOrder, Fill
from agent.live.intake import DUPLICATE_PARENT, PARENT_DONE, UNKNOWN_PARENT, Inbound
from feeds.book import BookBatch

Venue = Callable[[ChildOrder], list[Fill]]
"""In-process execution (file feed): child order -> fills, called on the engine thread."""

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
        self.fills_seen: set[str] = set()
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
                eng.cancel(item)
            elif item.parent_id in eng.parents:
                res.rejected.append(("control", i, DUPLICATE_PARENT))
            else:
                eng.submit(item)
        for i, f in enumerate(inb.fills):
            self._apply_fill(f, res, i)
        self._hold_and_feed(inb.md, res, force=inb.flush, recheck=bool(inb.control))
        for d in eng.decisions:
            if d.plan is not None:
                res.solves.append((d.plan.solver.status, d.plan.solver.iterations, d.plan.solver.solve_us))
                if d.plan.fallback:
                    res.fallbacks.append(d.plan.fallback)
        eng.decisions.clear()  # live: the log is drained every step, so memory stays bounded
        res.remaining = self.remaining()
        return res

    def _next_due(self) -> dict[str, int]:
        """Per symbol, the event time of the next decision of its active parents."""
        due: dict[str, int] = {}
        for st in self.engine.parents.values():
            if not st.done:
                t = st.parent.period_start_ns(st.next_period)
                due[st.parent.symbol] = min(t, due.get(st.parent.symbol, t))
        return due

    def _hold_and_feed(self, md: BookBatch | None, res: StepResult, *, force: bool, recheck: bool) -> None:
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

    def _decide_rows(self, sym: str, rows: BookBatch, res: StepResult) -> None:
        """Feed one symbol's rows to the engine, split at period boundaries; execute in-process."""
        if self.settings.md_conflation == "latest":
            rows = self._conflate(rows, sym)
        for chunk in self._chunks(rows, sym):
            now_ns = self.clock() if self.clock is not None else None
            for child in self.engine.on_book(chunk, symbol=sym, now_ns=now_ns):
                res.children.append(child)
                if self.venue is not None:
                    for f in self.venue(child):
                        res.venue_fills.append(f)
                        self._apply_fill(f, res)

    def _apply_fill(self, f: Fill, res: StepResult, index: int = -1) -> None:
        if f.fill_id in self.fills_seen:
            res.fills_duplicate += 1
            return
        st = self.engine.parents.get(f.parent_id)
        if st is None or st.status == "completed":  # a cancelled/expired parent still books late fills
            res.rejected.append(("fill", index, UNKNOWN_PARENT if st is None else PARENT_DONE))
            return
        self.fills_seen.add(f.fill_id)
        if self.engine.on_fill(f):
            res.fills_applied += 1

    def remaining(self) -> dict[str, float]:
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
