"""``ExecutionEngine``: the pure, synchronous, deterministic decision core.

The same class runs the historical replay and the live service (DESIGN.md
section 9: pure core, thin async shell). It is driven by *event time* only:

- ``on_book(batch)``: feed snapshots (any number of rows, one or more
  symbols). Estimators are updated with every row; when a row reaches the
  next period boundary of an active parent order the engine decides, on that
  row's book, and returns the child orders.
- ``on_fill(fill)``: remaining quantity comes from fills only (never from the
  plan); duplicate ``fill_id``s are ignored.
- ``submit(parent)`` / ``cancel(parent_id)`` / ``kill_switch``.

Per period ``k`` of a parent order the decision is taken on the first valid
row with ``ts_event >= start + k * period``; a period without any row is
skipped (its slot is simply gone from the horizon). What to trade is asked of
a :class:`agent.core.policy.Policy` (closed-loop MPC by default; the benchmark strategies of
``replay.strategies`` implement the same protocol), then clamped by the
pre-trade checks of :mod:`agent.core.risk`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.core import risk
from agent.core.forecast.volume import IntradayProfile, VolatilityEstimator, VolumeEstimator
from agent.core.impact.estimator import OnlineImpactEstimator, default_sizes
from agent.core.model import (
    BookLike,
    ChildOrder,
    Fill,
    FloatArray,
    ImpactParams,
    ParentOrder,
    child_order_id,
)
from agent.core.mpc.qp import LotRounder
from agent.core.policy import (
    DecisionInput,
    DecisionRecord,
    EngineSettings,
    Policy,
    PolicyFactory,
    mpc_policy,
)

# EngineSettings, DecisionInput, Policy, ... live in agent.core.policy; re-exported for callers.
__all__ = ["DecisionInput", "DecisionRecord", "EngineSettings", "ExecutionEngine", "Policy",
           "PolicyFactory", "mpc_policy"]


@dataclass(slots=True)
class _ParentState:
    parent: ParentOrder
    policy: Policy
    impact: OnlineImpactEstimator
    impact_now: OnlineImpactEstimator | None
    rounder: LotRounder
    filled: float = 0.0
    notional: float = 0.0
    next_period: int = 0
    done: bool = False
    cum_volume_at_decision: float = 0.0
    fill_ids: set[str] = field(default_factory=set)
    last_plan: tuple[float, ...] = ()
    status: str = "active"  # active | completed | cancelled | expired

    def finish(self, status: str) -> None:
        self.done = True
        self.status = status

    @property
    def remaining(self) -> float:
        return max(0.0, self.parent.quantity - self.filled)


@dataclass(slots=True)
class _SymbolState:
    volume: VolumeEstimator
    volatility: VolatilityEstimator
    cum_volume: float = 0.0


class ExecutionEngine:
    """Pure decision core; see the module docstring.

    Parameters
    ----------
    settings : engine parameters.
    policy_factory : builds the policy of each parent order (default closed-loop MPC).
    profile : intraday profile for forecasts (flat when None).
    clock : wall clock in ns, injected by the live service for snapshot age
        and ``ts_init``; None in replay (event time is then the only clock).
    """

    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        policy_factory: PolicyFactory = mpc_policy,
        profile: IntradayProfile | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.policy_factory = policy_factory
        self.profile = profile
        self.clock = clock
        self.kill_switch = False
        self.parents: dict[str, _ParentState] = {}
        self.symbols: dict[str, _SymbolState] = {}
        self.decisions: list[DecisionRecord] = []
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------ parents
    def submit(self, parent: ParentOrder) -> None:
        """Start managing a parent order (idempotent for the same id)."""
        if parent.parent_id in self.parents:
            self.counters["duplicate_parent"] += 1
            return
        n = parent.n_periods
        sizes = default_sizes(parent.quantity, n, multiple=self.settings.size_grid_multiple)
        impact, impact_now = (
            None if hl is None else
            OnlineImpactEstimator(parent.side, sizes, half_life_s=hl,
                                  penalty_ticks=self.settings.penalty_ticks, tick=self.settings.tick)
            for hl in (self.settings.impact_half_life_s, self.settings.impact_now_half_life_s)
        )
        assert impact is not None
        self.parents[parent.parent_id] = _ParentState(
            parent, self.policy_factory(parent, self.settings), impact, impact_now,
            LotRounder(parent.lot_size),
        )
        self._symbol(parent.symbol)

    def cancel(self, parent_id: str) -> bool:
        st = self.parents.get(parent_id)
        if st is None or st.done:
            return False
        st.finish("cancelled")
        self.counters["parent_cancelled"] += 1
        return True

    def remaining(self, parent_id: str) -> float:
        return self.parents[parent_id].remaining

    def filled(self, parent_id: str) -> float:
        return self.parents[parent_id].filled

    def active(self) -> list[ParentOrder]:
        return [s.parent for s in self.parents.values() if not s.done]

    # ------------------------------------------------------------- fills
    def on_fill(self, fill: Fill) -> bool:
        """Apply a fill; False when it is a duplicate or for an unknown parent."""
        st = self.parents.get(fill.parent_id)
        if st is None:
            self.counters["unknown_parent_fill"] += 1
            return False
        if fill.fill_id in st.fill_ids:
            self.counters["duplicate_fill"] += 1
            return False
        st.fill_ids.add(fill.fill_id)
        qty = min(fill.quantity, st.remaining)
        if qty < fill.quantity:
            self.counters["overfill"] += 1
        st.filled += qty
        st.notional += qty * fill.price
        if st.remaining <= 0:
            st.finish("completed")
        return True

    # -------------------------------------------------------------- books
    def on_book(self, batch: BookLike, *, symbol: str | None = None, now_ns: int | None = None) -> list[ChildOrder]:
        """Consume snapshots of ONE symbol in time order; return the child orders decided.

        ``symbol`` defaults to the batch's ``symbol`` column (first row).
        """
        n = len(batch)
        if n == 0:
            return []
        sym = symbol if symbol is not None else str(batch.symbol[0])  # type: ignore[attr-defined]
        mkt = self._symbol(sym)
        parents = [s for s in self.parents.values() if s.parent.symbol == sym and not s.done]
        ts = batch.ts_event
        bid0, ask0 = batch.bid_px[:, 0], batch.ask_px[:, 0]
        tradable = (batch.bid_sz[:, 0] > 0) & (batch.ask_sz[:, 0] > 0) & (bid0 < ask0)
        out: list[ChildOrder] = []
        pos = 0
        while parents:
            due = [(s.parent.period_start_ns(s.next_period), s) for s in parents]
            t_due = min(d for d, _ in due)
            i = int(np.searchsorted(ts, t_due, side="left"))
            cand = np.flatnonzero(tradable[i:])
            if cand.size == 0:
                break
            i += int(cand[0])
            self._update(mkt, parents, batch, pos, i + 1)
            pos = i + 1
            for t_d, st in due:
                if t_d <= ts[i] and not st.done:
                    child = self._decide(st, mkt, batch, i, now_ns)
                    if child is not None:
                        out.append(child)
            parents = [s for s in parents if not s.done]
        self._update(mkt, parents, batch, pos, n)
        return out

    # ---------------------------------------------------------- internals
    def _symbol(self, sym: str) -> _SymbolState:
        mkt = self.symbols.get(sym)
        if mkt is None:
            s = self.settings
            period_s = 60.0
            mkt = _SymbolState(
                VolumeEstimator(period_s, half_life_s=s.volume_half_life_s),
                VolatilityEstimator(period_s, half_life_s=s.volatility_half_life_s),
            )
            self.symbols[sym] = mkt
        return mkt

    def _update(self, mkt: _SymbolState, parents: list[_ParentState], batch: BookLike, a: int, b: int) -> None:
        if b <= a:
            return
        part = batch[a:b] if (a, b) != (0, len(batch)) else batch  # type: ignore[index]
        mkt.volume.update(part)
        mkt.volatility.update(part)
        trades = part.action == "T"
        if trades.any():
            mkt.cum_volume += float(part.size[trades].sum())
        for st in parents:
            st.impact.update(part)
            if st.impact_now is not None:
                st.impact_now.update(part)

    def _decide(self, st: _ParentState, mkt: _SymbolState, batch: BookLike, i: int, now_ns: int | None) -> ChildOrder | None:
        p = st.parent
        ts = int(batch.ts_event[i])
        k = int((ts - p.start_ns) // p.period_ns)
        if k >= p.n_periods or ts >= p.end_ns:
            st.finish("expired")
            self.counters["parent_expired"] += 1
            return None
        st.next_period = k + 1
        traded = mkt.cum_volume - st.cum_volume_at_decision if k > 0 else 0.0
        st.cum_volume_at_decision = mkt.cum_volume
        remaining = st.remaining
        periods_left = p.n_periods - k
        mid = 0.5 * (float(batch.bid_px[i, 0]) + float(batch.ask_px[i, 0]))
        age_ms = 0.0 if now_ns is None else (now_ns - ts) / 1e6
        reason = risk.book_reject_reason(float(batch.bid_px[i, 0]), float(batch.bid_sz[i, 0]),
                                         float(batch.ask_px[i, 0]), float(batch.ask_sz[i, 0]),
                                         age_ms, self.settings.risk)
        if self.kill_switch:
            reason = risk.KILL_SWITCH
        if reason is not None:
            self._skip(st, k, ts, remaining, mid, reason)
            return None
        beta, gamma = self._impact_forecast(st, periods_left, ts, remaining)
        vol = mkt.volume.forecast(periods_left, ts_ns=ts, profile=self.profile) * (p.period_s / mkt.volume.period_s)
        part = p.max_participation if p.max_participation is not None else self.settings.max_participation
        cap = np.where(vol > 0, part * vol, np.inf)
        sigma = mkt.volatility.sigma() * np.sqrt(p.period_s / mkt.volatility.period_s)
        max_child = self.settings.max_child_multiple * remaining / periods_left
        d = DecisionInput(p, k, periods_left, remaining, st.filled, beta, gamma, cap, vol, sigma, mid, ts,
                          traded, max_child)
        plan = st.policy.decide(d)
        if plan.fallback:
            self.counters[f"fallback:{plan.fallback}"] += 1
        planned = float(plan.schedule[0]) if len(plan.schedule) else 0.0
        st.last_plan = tuple(float(x) for x in plan.schedule)
        clamped = risk.clamp_child_quantity(planned, remaining, float(cap[0]), self.settings.risk)
        qty = st.rounder.round(clamped, remaining)
        if qty > clamped + 1e-9:  # rounding up (carry) must not break the cap: whole lots below it
            qty = float(p.lot_size * np.floor(clamped / p.lot_size + 1e-9))
        side_px, side_sz = (batch.ask_px[i], batch.ask_sz[i]) if p.side == "buy" else (batch.bid_px[i], batch.bid_sz[i])
        limit = risk.child_limit_price(p.side, side_px, side_sz, qty, self.settings.risk, p.limit_price)
        record = DecisionRecord(p.parent_id, k, ts, remaining, planned, qty, float(cap[0]),
                                float(beta[0]), float(gamma[0]), sigma, mid, plan)
        self.decisions.append(record)
        if qty <= 0 or limit is None:
            self.counters["no_child" if qty <= 0 else f"skipped:{risk.LIMIT_PRICE}"] += 1
            return None
        self.counters["child_orders"] += 1
        return ChildOrder(
            child_order_id=child_order_id(p.parent_id, k), parent_id=p.parent_id, symbol=p.symbol,
            side=p.side, quantity=qty, limit_price=limit, period_index=k, ts_event=ts,
            ts_init=self.clock() if self.clock else ts, remaining_before=remaining,
            plan=tuple(float(x) for x in plan.schedule[:5]), solver=plan.solver,
            impact=ImpactParams(float(beta[0]), float(gamma[0])),
        )

    def _impact_forecast(self, st: _ParentState, periods_left: int, ts: int, remaining: float,
                         ) -> tuple[FloatArray, FloatArray]:
        """``beta, gamma`` per remaining period, gamma floored by ``min_convexity``."""
        p = st.parent
        beta, gamma = st.impact.forecast(periods_left, ts_ns=ts, period_s=p.period_s, profile=self.profile)
        if st.impact_now is not None:
            now = st.impact_now.current()
            beta, gamma = beta.copy(), gamma.copy()
            beta[0], gamma[0] = now.beta, now.gamma
        floor = self.settings.min_convexity * beta / max(remaining / periods_left, p.lot_size)
        return beta, np.maximum(gamma, floor)

    def _skip(self, st: _ParentState, k: int, ts: int, remaining: float, mid: float, reason: str) -> None:
        self.counters[f"skipped:{reason}"] += 1
        self.decisions.append(DecisionRecord(st.parent.parent_id, k, ts, remaining, 0.0, 0.0, 0.0,
                                             float("nan"), float("nan"), float("nan"), mid, None, reason))

    # -------------------------------------------------------------- state
    def summary(self, parent_id: str) -> dict[str, Any]:
        st = self.parents[parent_id]
        return {"filled": st.filled, "remaining": st.remaining, "done": st.done,
                "average_price": st.notional / st.filled if st.filled else None}
