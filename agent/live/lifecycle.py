"""Parent orders as an operator sees them: status rows, lifecycle events, retention of ended ones.

:class:`ParentLifecycle` is called on the engine thread (the engine is not
thread-safe) by the service's housekeeping task every
``service.housekeeping_interval_ms``:

- :meth:`ParentLifecycle.scan` finds the parents whose status changed since the
  last scan: a parent that ended (completed, cancelled, expired) gives one
  :class:`Ended` event with its filled and unfilled shares; it counts the
  parents by status for ``mpc_agent_parents{status}``; it lists the symbols
  with an active parent that has started (readiness needs fresh data for them);
  and it drops from the engine the parents that ended more than
  ``ended_parent_retention_s`` ago (the state tracker then writes their
  tombstone).
- :meth:`ParentLifecycle.rows` is the body of ``GET /parents``.

A parent first seen already ended is one restored from the state topic (it
ended before this process took over): no event, no unfilled count, unless
this process accepted it (:meth:`ParentLifecycle.expect`, called on the event
loop *before* the step that submits it: a parent submitted and ended between
two scans still gives its event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.core.engine import ExecutionEngine
from agent.core.parent_state import ACTIVE, COMPLETED, STATUSES, ParentState


@dataclass(frozen=True, slots=True)
class Ended:
    """One parent that ended since the last scan."""

    parent_id: str
    symbol: str
    side: str
    status: str
    quantity: float
    filled: float
    unfilled: float
    average_price: float | None
    periods_done: int
    periods: int
    skipped: dict[str, int]  # periods decided without a child order, by reason

    @property
    def unfilled_counts(self) -> bool:
        """Shares left behind by an expired or cancelled parent (``mpc_agent_parent_unfilled_shares_total``)."""
        return self.status != COMPLETED and self.unfilled > 0


@dataclass(slots=True)
class Scan:
    """What one :meth:`ParentLifecycle.scan` found."""

    ended: list[Ended] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    active_symbols: dict[str, int] = field(default_factory=dict)
    """Symbol -> earliest start (ns) of its active parents that have started."""
    dropped: list[str] = field(default_factory=list)


class ParentLifecycle:
    """Status changes, counts and retention of the engine's parents (see the module docstring).

    Parameters
    ----------
    retention_s : an ended parent stays (listed, restorable) this long, then is dropped.
    wall_clock : ns since the epoch, for the retention (operator time, whatever the service clock).
    """

    def __init__(self, retention_s: float, *, wall_clock: Callable[[], int]) -> None:
        self.retention_ns = int(retention_s * 1e9)
        self.wall_clock = wall_clock
        self._status: dict[str, str] = {}
        self._ended_ns: dict[str, int] = {}
        self._expected: set[str] = set()  # added on the loop, read and discarded on the engine thread

    def expect(self, parent_ids: Iterable[str]) -> None:
        """Parents about to be submitted by this process (event loop, before their step is queued)."""
        self._expected.update(parent_ids)

    def scan(self, engine: ExecutionEngine, now_ns: int | None) -> Scan:
        """One pass over the engine's parents (engine thread); ``now_ns`` = the service clock (None:
        every active parent counts as started)."""
        wall = self.wall_clock()
        out = Scan(counts=dict.fromkeys(STATUSES, 0))
        parents = engine.parents
        for pid, st in parents.items():
            out.counts[st.status] = out.counts.get(st.status, 0) + 1
            prev = self._status.get(pid)
            if prev != st.status:
                self._status[pid] = st.status
                if st.done:
                    self._ended_ns.setdefault(pid, wall)
                    if prev == ACTIVE or (prev is None and pid in self._expected):
                        out.ended.append(_ended(st))
                if prev is None:
                    self._expected.discard(pid)
            if not st.done:
                p = st.parent
                if now_ns is None or p.start_ns <= now_ns:
                    first = out.active_symbols.get(p.symbol)
                    out.active_symbols[p.symbol] = p.start_ns if first is None else min(first, p.start_ns)
        for pid, t in list(self._ended_ns.items()):
            if wall - t >= self.retention_ns and pid in parents:
                engine.drop(pid)
                out.dropped.append(pid)
                out.counts[self._status[pid]] -= 1
        if len(self._status) > len(parents):  # dropped here, or handed to another agent
            for pid in [p for p in self._status if p not in parents]:
                del self._status[pid]
                self._ended_ns.pop(pid, None)
        return out

    def rows(self, engine: ExecutionEngine) -> list[dict[str, Any]]:
        """``GET /parents``: one dict per parent held (engine thread), oldest start first."""
        out = [_row(pid, st, self._ended_ns.get(pid)) for pid, st in engine.parents.items()]
        out.sort(key=lambda r: (r["start_ns"], r["parent_id"]))
        return out


def _ended(st: ParentState) -> Ended:
    p = st.parent
    return Ended(p.parent_id, p.symbol, p.side, st.status, float(p.quantity), float(st.filled),
                 float(st.remaining), st.average_price, int(st.next_period), int(p.n_periods),
                 dict(sorted(st.skipped.items())))


def _row(pid: str, st: ParentState, ended_ns: int | None) -> dict[str, Any]:
    p = st.parent
    return {
        "parent_id": pid, "symbol": p.symbol, "side": p.side, "quantity": float(p.quantity),
        "filled": float(st.filled), "remaining": float(st.remaining), "average_price": st.average_price,
        "status": st.status, "next_period": int(st.next_period), "periods": int(p.n_periods),
        "last_child_ts": st.last_child_ts, "start_ns": int(p.start_ns), "end_ns": int(p.end_ns),
        "period_s": float(p.period_s), "limit_price": p.limit_price, "ended_ns": ended_ns,
        "skipped_periods": sum(st.skipped.values()), "skipped": dict(sorted(st.skipped.items())),
    }
