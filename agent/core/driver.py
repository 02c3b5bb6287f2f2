"""The one loop that feeds an engine: replay and live both go through it.

:meth:`Driver.feed` takes time-ordered snapshot rows of one symbol, splits
them at the period boundaries ``start + k * period`` of the symbol's active
parents (``np.searchsorted``), and hands each chunk to
:meth:`agent.core.engine.ExecutionEngine.on_book`. The engine decides at most
once per parent and chunk, on the first tradable row at or after the
boundary. Each child order goes to the ``venue`` callable at once (the replay
simulator, or the live file feed's simulated venue), and its fills go back
through ``engine.on_fill`` before the next chunk, so the next decision sees the
remaining quantity from fills. Without a venue (a real one answers later
through Kafka) there is nothing to apply between decisions and the rows go to
``on_book`` in one call, which decides at every boundary in them itself. That is the whole of "replay/live parity":
there is no other path from books to decisions.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.core.engine import ExecutionEngine
from agent.core.model import BookLike, ChildOrder, Fill
from agent.core.parent_state import BookResult, FillOutcome

Venue = Callable[[ChildOrder], Sequence[Fill]]
"""In-process execution: child order -> its fills (at the child's decision time plus latency)."""


@dataclass
class DriveResult(BookResult):
    """:class:`BookResult` plus the venue's fills and what the engine did with them."""

    fills: list[Fill] = field(default_factory=list)
    fill_outcomes: Counter[FillOutcome] = field(default_factory=Counter)


class Driver:
    """Feeds one engine chunk by chunk (see the module docstring).

    Parameters
    ----------
    engine : the decision core.
    venue : in-process execution; its fills are applied at once (None: fills arrive separately).
    clock : wall clock in ns passed to ``on_book`` as ``now_ns`` (None: event time only).
    """

    def __init__(self, engine: ExecutionEngine, *, venue: Venue | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.engine, self.venue, self.clock = engine, venue, clock

    def chunks(self, rows: BookLike, symbol: str) -> list[BookLike]:
        """``rows`` split at the period boundaries of ``symbol``'s active parents."""
        ts = rows.ts_event
        if not len(ts):
            return []
        bounds = self.engine.period_boundaries(symbol, int(ts[0]), int(ts[-1]))
        if not len(bounds):
            return [rows]
        cuts = np.unique(np.searchsorted(ts, bounds, side="left"))
        edges = [0, *[int(c) for c in cuts if 0 < c < len(ts)], len(ts)]
        return [rows[a:b] for a, b in itertools.pairwise(edges)]  # type: ignore[index]

    def feed(self, rows: BookLike, symbol: str, out: DriveResult | None = None) -> DriveResult:
        """Feed one symbol's rows (time order); return (or extend ``out`` with) what was decided."""
        res = DriveResult() if out is None else out
        if self.venue is None:  # no fills to apply between decisions: on_book takes every boundary itself
            res.extend(self.engine.on_book(rows, symbol=symbol, now_ns=self.clock() if self.clock else None))
            return res
        for chunk in self.chunks(rows, symbol):
            now_ns = self.clock() if self.clock is not None else None
            step = self.engine.on_book(chunk, symbol=symbol, now_ns=now_ns)
            res.extend(step)
            if self.venue is None:
                continue
            for child in step.children:
                for f in self.venue(child):
                    outcome = self.engine.on_fill(f)
                    res.fill_outcomes[outcome] += 1
                    if outcome is FillOutcome.APPLIED:
                        res.fills.append(f)
        return res
