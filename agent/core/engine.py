"""``ExecutionEngine``: the pure, synchronous, deterministic decision core.

The same class runs the historical replay and the live service (DESIGN.md
section 9: pure core, thin async shell), driven by *event time* only, and
always through :class:`agent.core.driver.Driver` (one loop for both):

- ``on_book(batch, symbol=...)``: feed snapshots of ONE symbol in time order.
  Every row updates the symbol's market state once (volume, volatility, cost
  curves: :mod:`agent.core.market`), whatever the number of parents; when a row
  reaches the next period boundary of an active parent the engine decides, on
  that row's book, and returns the child orders and decision records
  (:class:`agent.core.parent_state.BookResult`).
- ``on_fill(fill)``: remaining quantity comes from fills only (never from the
  plan); fills are de-duplicated on ``fill_id`` in one set per parent.
- ``submit`` / ``cancel`` / ``drop`` / ``kill_switch``; ``snapshot`` /
  ``restore`` (crash-recovery records, :mod:`agent.core.state`);
  ``next_decision_ns`` / ``period_boundaries`` for the driver.

Per period ``k`` of a parent order the decision is taken on the first valid
row with ``ts_event >= start + k * period``; a period without any row is
skipped (its slot is simply gone from the horizon). What to trade is asked of
a :class:`agent.core.policy.Policy` (closed-loop MPC by default; the benchmark
strategies of ``replay.strategies`` implement the same protocol), then clamped
by the pre-trade checks of :mod:`agent.core.risk`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from agent.core import state as records
from agent.core.decision import Context, decide
from agent.core.forecast.cost_forecast import ParentForecaster
from agent.core.forecast.profile import IntradayProfile
from agent.core.impact.curves import default_sizes
from agent.core.impact.parent_fit import ParentImpact
from agent.core.market import MarketSettings, SymbolMarket
from agent.core.model import BookLike, Fill, ParentOrder
from agent.core.mpc.rounding import LotRounder
from agent.core.parent_state import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    BookResult,
    FillOutcome,
    ParentState,
)
from agent.core.policy import ENDED_POLICY, EngineSettings, PolicyFactory, mpc_policy

__all__ = ["ExecutionEngine"]


class ExecutionEngine:
    """Pure decision core; see the module docstring.

    Parameters
    ----------
    settings : engine parameters.
    policy_factory : builds the policy of each parent order (default closed-loop MPC).
    profile : intraday profile for forecasts (flat when None).
    clock : wall clock in ns, injected by the live service for ``ts_init``; None in replay.
    """

    def __init__(self, settings: EngineSettings | None = None, *, policy_factory: PolicyFactory = mpc_policy,
                 profile: IntradayProfile | None = None, clock: Callable[[], int] | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.policy_factory = policy_factory
        self.profile = profile
        self.clock = clock
        self.kill_switch = False
        self._parents: dict[str, ParentState] = {}
        self._by_symbol: dict[str, dict[str, ParentState]] = {}  # the same parents, by symbol
        self._symbols: dict[str, SymbolMarket] = {}
        self._changed: dict[str, None] = {}  # parents whose record may have changed (insertion order)
        self._due: dict[str, int] = {}  # next_decisions(), kept per symbol
        self._due_stale: set[str] = set()  # symbols whose parents changed since
        self.counters: Counter[str] = Counter()
        s = self.settings
        half_lives = (() if s.forecast == "reverting"  # the EW curves feed only the ewma forecast
                      else (s.impact_half_life_s,) + (() if s.impact_now_half_life_s is None
                                                      else (s.impact_now_half_life_s,)))
        self._market_settings = MarketSettings(half_lives, s.volume_half_life_s, s.volatility_half_life_s,
                                               s.penalty_ticks, s.tick,
                                               s.reversion if s.forecast == "reverting" else None)

    # ------------------------------------------------------------ parents
    @property
    def parents(self) -> Mapping[str, ParentState]:
        """Every parent the engine holds, by id (read-only view)."""
        return MappingProxyType(self._parents)

    def submit(self, parent: ParentOrder) -> bool:
        """Start managing a parent order; False (and counted) when the id is already known."""
        if parent.parent_id in self._parents:
            self.counters["duplicate_parent"] += 1
            return False
        self._put(self._new_state(parent))
        return True

    def _put(self, st: ParentState) -> None:
        pid = st.parent.parent_id
        old = self._parents.get(pid)
        if old is not None:
            self._by_symbol.get(old.parent.symbol, {}).pop(pid, None)
        self._parents[pid] = st
        self._by_symbol.setdefault(st.parent.symbol, {})[pid] = st
        self._touch(st)

    def _touch(self, st: ParentState) -> None:
        """``st`` may have changed: its record (state topic) and its symbol's next decision time."""
        self._changed[st.parent.parent_id] = None
        self._due_stale.add(st.parent.symbol)

    def _new_state(self, parent: ParentOrder, *, active: bool = True) -> ParentState:
        """A parent's engine state; an ended one (``active=False``: a restore) never decides, so its
        policy is not built (an MPC policy sets up its QP: about a millisecond, more for long orders)."""
        s = self.settings
        mkt = self.market(parent.symbol)
        sizes = default_sizes(parent.quantity, parent.n_periods, multiple=s.size_grid_multiple)
        now = (None if s.impact_now_half_life_s is None
               else ParentImpact(mkt, parent.side, s.impact_now_half_life_s, sizes))
        forecaster = (ParentForecaster(parent.side, sizes, s.reversion, profile=self.profile,
                                       penalty_ticks=s.penalty_ticks, tick=s.tick)
                      if s.forecast == "reverting" else None)
        return ParentState(parent, self.policy_factory(parent, s) if active else ENDED_POLICY,
                           ParentImpact(mkt, parent.side, s.impact_half_life_s, sizes), now,
                           LotRounder(s.risk.venue.instrument(parent.symbol).lot_for(parent.lot_size)),
                           forecaster=forecaster)

    def cancel(self, parent_id: str) -> bool:
        """Stop an active parent (no more child orders); False when unknown or already ended."""
        st = self._parents.get(parent_id)
        if st is None or st.done:
            return False
        st.finish(CANCELLED)
        self._touch(st)
        self.counters["parent_cancelled"] += 1
        return True

    def drop(self, parent_id: str) -> bool:
        """Forget a parent entirely (another agent owns its symbol now)."""
        self._changed.pop(parent_id, None)
        st = self._parents.pop(parent_id, None)
        if st is not None:
            self._by_symbol.get(st.parent.symbol, {}).pop(parent_id, None)
            self._due_stale.add(st.parent.symbol)
        return st is not None

    def pop_changed(self) -> list[str]:
        """Ids of the parents whose crash record may have changed since the last call (submitted,
        restored, cancelled, filled or decided), in the order they first changed; clears the list.

        The state topic writes only these (:class:`agent.live.state_topic.StateTracker`)."""
        out = list(self._changed)
        self._changed.clear()
        return out

    def remaining(self, parent_id: str) -> float:
        return self._parents[parent_id].remaining

    def filled(self, parent_id: str) -> float:
        return self._parents[parent_id].filled

    def active(self, symbol: str | None = None) -> list[ParentOrder]:
        """Active parent orders (of ``symbol`` when given)."""
        return [s.parent for s in self._active(symbol)]

    def _active(self, symbol: str | None = None) -> Iterator[ParentState]:
        pool = self._parents if symbol is None else self._by_symbol.get(symbol, {})
        return (s for s in pool.values() if not s.done)

    def parents_of(self, symbol: str) -> list[ParentState]:
        """Every parent the engine holds on ``symbol`` (any status)."""
        return list(self._by_symbol.get(symbol, {}).values())

    def summary(self, parent_id: str) -> dict[str, Any]:
        st = self._parents[parent_id]
        return {"filled": st.filled, "remaining": st.remaining, "done": st.done, "status": st.status,
                "average_price": st.average_price}

    def market(self, symbol: str) -> SymbolMarket:
        """The symbol's market state (created empty on first use)."""
        mkt = self._symbols.get(symbol)
        if mkt is None:
            mkt = self._symbols[symbol] = SymbolMarket.create(symbol, self._market_settings, self.profile)
        return mkt

    # ------------------------------------------------------------- fills
    def on_fill(self, fill: Fill) -> FillOutcome:
        """Apply a fill once (de-duplicated on ``fill_id``); a cancelled or expired parent still
        books late fills of children already sent, a completed one has nothing left to fill."""
        st = self._parents.get(fill.parent_id)
        if st is None:
            self.counters["unknown_parent_fill"] += 1
            return FillOutcome.UNKNOWN_PARENT
        if fill.fill_id in st.fill_ids:
            self.counters["duplicate_fill"] += 1
            return FillOutcome.DUPLICATE
        if st.status == COMPLETED:
            return FillOutcome.PARENT_DONE
        st.fill_ids.add(fill.fill_id)
        self._touch(st)
        qty = min(fill.quantity, st.remaining)
        if qty < fill.quantity:
            self.counters["overfill"] += 1
        st.filled += qty
        st.notional += qty * fill.price
        if st.remaining <= 0:
            st.finish(COMPLETED)
        return FillOutcome.APPLIED

    # -------------------------------------------------------------- books
    def next_decision_ns(self, symbol: str | None = None) -> int | None:
        """Event time of the next decision of the active parents (of ``symbol``); None when none."""
        due = [s.due_ns() for s in self._active(symbol)]
        return min(due) if due else None

    def next_decisions(self) -> Mapping[str, int]:
        """Per symbol with an active parent, the event time of its next decision (a view: recomputed
        only for the symbols whose parents changed since the last call)."""
        for sym in self._due_stale:
            t = self.next_decision_ns(sym)
            if t is None:
                self._due.pop(sym, None)
            else:
                self._due[sym] = t
        self._due_stale.clear()
        return MappingProxyType(self._due)

    def period_boundaries(self, symbol: str, t0: int, t1: int) -> np.ndarray:
        """Period starts ``start + k * period`` (k >= 1) of the symbol's active parents in ``(t0, t1]``."""
        out: list[np.ndarray] = []
        for p in self.active(symbol):
            k0 = max(1, -(-(t0 - p.start_ns) // p.period_ns))
            k1 = min(p.n_periods - 1, (t1 - p.start_ns) // p.period_ns)
            if k1 >= k0:
                out.append(p.start_ns + p.period_ns * np.arange(k0, k1 + 1, dtype=np.int64))
        return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def on_book(self, batch: BookLike, *, symbol: str | None = None, now_ns: int | None = None) -> BookResult:
        """Consume snapshots of ONE symbol in time order; return what was decided.

        ``symbol`` defaults to the batch's ``symbol`` column (first row). ``now_ns`` (live) is the
        wall clock for the snapshot-age check."""
        out = BookResult()
        n = len(batch)
        if n == 0:
            return out
        sym = symbol if symbol is not None else str(batch.symbol[0])  # type: ignore[attr-defined]
        mkt = self.market(sym)
        parents = list(self._active(sym))
        ts = batch.ts_event
        tradable = (batch.bid_sz[:, 0] > 0) & (batch.ask_sz[:, 0] > 0) & (batch.bid_px[:, 0] < batch.ask_px[:, 0])
        ctx = Context(self.settings, self.profile, self.clock, self.kill_switch, self.counters)
        pos = 0
        while parents:
            due = [(s.due_ns(), s) for s in parents]
            i = int(np.searchsorted(ts, min(d for d, _ in due), side="left"))
            cand = np.flatnonzero(tradable[i:])
            if cand.size == 0:
                break
            i += int(cand[0])
            mkt.update(_rows(batch, pos, i + 1))
            pos = i + 1
            for t_d, st in due:
                if t_d <= ts[i] and not st.done:
                    decide(ctx, st, mkt, batch, i, now_ns, out)
                    self._touch(st)
            parents = [s for s in parents if not s.done]
        mkt.update(_rows(batch, pos, n))
        return out

    # -------------------------------------------------------------- state
    def snapshot(self, parent_id: str, *, market: bool = True) -> dict[str, Any]:
        """The crash-recovery record of one parent (JSON-able; :mod:`agent.core.state`).

        ``market=False`` leaves out the copy of the symbol's market state (``"symbol": None``):
        the live service writes that separately (:meth:`market_snapshot`), much less often."""
        st = self._parents[parent_id]
        return records.export_record(st, self.market(st.parent.symbol) if market else None)

    def market_snapshot(self, symbol: str) -> dict[str, Any]:
        """The symbol's market state (JSON-able; :meth:`restore_market` takes it back)."""
        return self.market(symbol).state()

    def restore_market(self, state: dict[str, Any]) -> bool:
        """Take a symbol's market state from :meth:`market_snapshot` when it is newer than the
        engine's (or as new); returns whether it was taken. Raises like ``SymbolMarket.from_state``."""
        market = SymbolMarket.from_state(state)
        mkt = self.market(market.symbol)
        if market.last_ts < mkt.last_ts:
            return False
        mkt.assign(market)
        return True

    def restore(self, record: dict[str, Any]) -> str:
        """Rebuild a parent from :meth:`snapshot`, replacing what the engine held for it; returns its id.

        The symbol's market state is taken from the record (when it has one) when it is newer than
        the engine's."""
        parent, fields, market = records.parse_record(record)
        mkt = self.market(parent.symbol)
        if market is not None and market.last_ts >= mkt.last_ts:
            mkt.assign(market)
        st = self._new_state(parent, active=fields["status"] == ACTIVE)
        for name, value in fields.items():
            setattr(st, name, value)
        if st.forecaster is not None and self.profile is not None:
            st.forecaster.profile = self.profile
        self._put(st)
        return parent.parent_id


def _rows(batch: BookLike, a: int, b: int) -> BookLike:
    if (a, b) == (0, len(batch)):
        return batch
    return batch[a:b]  # type: ignore[index]
