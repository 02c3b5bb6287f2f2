"""One decision of one parent order on one snapshot row: forecasts -> policy -> risk -> child order.

Called by :meth:`agent.core.engine.ExecutionEngine.on_book` on the first
tradable row at or after the parent's next period boundary:

1. the period index ``k`` from event time (a parent past its end expires);
2. pre-trade book checks (stale, crossed, locked, empty; the kill switch):
   a refused book skips the period, recorded with its reason;
3. forecasts over the remaining periods, per slot: impact ``beta_k, gamma_k``
   (gamma floored by ``min_convexity``), volume ``V_k`` (cap
   ``max_participation * V_k``) and ``sigma`` -- all in the parent's own period;
   with ``forecast = "reverting"`` slot 0 is this row's own book walk and later
   slots revert to level x profile (:mod:`agent.core.forecast.cost_forecast`);
4. the policy's plan; its first slot clamped (remaining, cap, max child),
   rounded to the lot with carry, and priced (IOC limit through the levels it
   needs plus slippage, never past the parent's limit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.core import risk
from agent.core.forecast.cost_forecast import SlotForecast, floor_gamma
from agent.core.forecast.profile import IntradayProfile
from agent.core.market import SymbolMarket
from agent.core.model import BookLike, ChildOrder, FloatArray, ImpactParams, child_order_id
from agent.core.parent_state import EXPIRED, BookResult, ParentState
from agent.core.policy import DecisionInput, DecisionRecord, EngineSettings


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision reads of the engine (settings, profile, clock, kill switch) and its counters."""

    settings: EngineSettings
    profile: IntradayProfile | None
    clock: Callable[[], int] | None
    kill_switch: bool
    counters: Counter[str]


def decide(eng: Context, st: ParentState, mkt: SymbolMarket, batch: BookLike, i: int,
           now_ns: int | None, out: BookResult) -> None:
    """Decide period ``k`` of ``st`` on row ``i`` of ``batch``; append to ``out`` (see the module docstring)."""
    p, s = st.parent, eng.settings
    ts = int(batch.ts_event[i])
    k = int((ts - p.start_ns) // st.period_ns)
    n_periods = p.n_periods
    if k >= n_periods or ts >= p.end_ns:
        st.finish(EXPIRED)
        eng.counters["parent_expired"] += 1
        return
    st.next_period = k + 1
    traded = max(0.0, mkt.cum_volume - st.cum_volume_at_decision) if k > 0 else 0.0  # >= 0 after a restore too
    st.cum_volume_at_decision = mkt.cum_volume
    remaining, periods_left = st.remaining, n_periods - k
    bid, ask = float(batch.bid_px[i, 0]), float(batch.ask_px[i, 0])
    mid = 0.5 * (bid + ask)
    age_ms = 0.0 if now_ns is None else (now_ns - ts) / 1e6
    reason = risk.book_reject_reason(bid, float(batch.bid_sz[i, 0]), ask, float(batch.ask_sz[i, 0]),
                                     age_ms, s.risk)
    if eng.kill_switch:
        reason = risk.KILL_SWITCH
    if reason is not None:
        _count_skip(eng, st, reason)
        out.decisions.append(DecisionRecord(p.parent_id, k, ts, remaining, 0.0, 0.0, 0.0, float("nan"),
                                            float("nan"), float("nan"), mid, None, reason))
        return
    slots = reverting_forecast(st, mkt, batch, i, periods_left, ts)
    beta, gamma = impact_forecast(eng, st, periods_left, ts, remaining, slots)
    vol = (slots.volume if slots is not None and slots.volume is not None
           else mkt.volume.forecast(periods_left, ts_ns=ts, profile=eng.profile, period_s=p.period_s))
    part = p.max_participation if p.max_participation is not None else s.max_participation
    cap = np.where(vol > 0, part * vol, np.inf)
    sigma = mkt.volatility.sigma(p.period_s)
    max_child = s.max_child_multiple * remaining / periods_left
    d = DecisionInput(p, k, periods_left, remaining, st.filled, beta, gamma, cap, vol, sigma, mid, ts,
                      traded, max_child)
    plan = st.policy.decide(d)
    if plan.fallback:
        eng.counters[f"fallback:{plan.fallback}"] += 1
    planned = float(plan.schedule[0]) if len(plan.schedule) else 0.0
    schedule = np.asarray(plan.schedule, dtype=np.float64)
    st.last_plan = tuple(schedule.tolist())
    clamped = risk.clamp_child_quantity(planned, remaining, float(cap[0]), s.risk)
    qty = st.rounder.round(clamped, remaining)
    lot = st.rounder.lot_size  # the parent's lot and the venue's, whole multiples of both
    if qty > clamped + 1e-9:  # rounding up (carry) must not break the cap: whole lots below it
        qty = float(lot * np.floor(clamped / lot + 1e-9))
    side_px, side_sz = (batch.ask_px[i], batch.ask_sz[i]) if p.side == "buy" else (batch.bid_px[i], batch.bid_sz[i])
    limit = risk.child_limit_price(p.side, side_px, side_sz, qty, s.risk, p.limit_price,
                                   instrument=s.risk.venue.instrument(p.symbol))
    refused = risk.LIMIT_PRICE if qty > 0 and limit is None else None  # the parent's limit: no price to send
    out.decisions.append(DecisionRecord(p.parent_id, k, ts, remaining, planned, qty, float(cap[0]),
                                        float(beta[0]), float(gamma[0]), sigma, mid, plan, refused))
    if qty <= 0 or limit is None:
        if refused is None:
            eng.counters["no_child"] += 1
        else:
            _count_skip(eng, st, refused)
        return
    eng.counters["child_orders"] += 1
    st.last_child_ts = ts
    out.children.append(ChildOrder(
        child_order_id=child_order_id(p.parent_id, k), parent_id=p.parent_id, symbol=p.symbol,
        side=p.side, quantity=qty, limit_price=limit, period_index=k, ts_event=ts,
        ts_init=eng.clock() if eng.clock else ts, remaining_before=remaining,
        plan=tuple(schedule[:5].tolist()), solver=plan.solver,
        impact=ImpactParams(float(beta[0]), float(gamma[0])),
    ))


def _count_skip(eng: Context, st: ParentState, reason: str) -> None:
    """A period skipped for ``reason``: the engine's counter and the parent's own count (``GET /parents``)."""
    eng.counters[f"skipped:{reason}"] += 1
    st.skipped[reason] = st.skipped.get(reason, 0) + 1


def reverting_forecast(st: ParentState, mkt: SymbolMarket, batch: BookLike, i: int, periods_left: int,
                       ts: int) -> SlotForecast | None:
    """The reverting forecast (slot 0 from row ``i``'s own book walk), None when the setting is ``ewma``."""
    if st.forecaster is None or mkt.sampler is None:
        return None
    now = st.forecaster.now(mkt.sampler, batch, i)
    return st.forecaster.forecast(now, mkt.sampler, periods_left, ts_ns=ts, period_s=st.parent.period_s)


def impact_forecast(eng: Context, st: ParentState, periods_left: int, ts: int, remaining: float,
                    slots: SlotForecast | None = None) -> tuple[FloatArray, FloatArray]:
    """``beta, gamma`` per remaining period, gamma floored at ``min_convexity * beta / max(R / P, lot)``.

    From ``slots`` (the reverting forecast) when given, else the ``ewma`` model: the
    parent's EW estimate times the profile (slot 0 from ``impact_now`` when set).
    """
    p, s = st.parent, eng.settings
    if slots is not None:
        beta, gamma = slots.beta, slots.gamma
    else:
        beta, gamma = st.impact.forecast(periods_left, ts_ns=ts, period_s=p.period_s, profile=eng.profile)
        if st.impact_now is not None:
            now = st.impact_now.current()
            beta, gamma = beta.copy(), gamma.copy()
            beta[0], gamma[0] = now.beta, now.gamma
    return beta, floor_gamma(beta, gamma, remaining=remaining, periods_left=periods_left, lot=p.lot_size,
                             min_convexity=s.min_convexity)
