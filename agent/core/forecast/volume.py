"""Traded volume and mid volatility per period, exponentially weighted in event time.

``VolumeEstimator`` gives the participation cap ``x_k <= rho * V_k``;
``VolatilityEstimator`` gives ``sigma`` (dollars per period) for the risk term.
Both keep a few sufficient statistics decayed by ``2^(-dt / half_life)`` when
event time advances, so updating in chunks equals one update at once, and
their state is a JSON-able dict. ``IntradayProfile`` (agent.core.forecast.profile) is
re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agent.core.errors import DataError
from agent.core.forecast.profile import (
    FloatArray,
    IntArray,
    IntradayProfile,
    covered_intervals,
    mid_of,
    sample_grid,
)
from agent.core.model import NS_PER_S, BookLike

__all__ = ["IntradayProfile", "VolatilityEstimator", "VolumeEstimator"]

LN2 = math.log(2.0)


def _decay(dt_ns: int | IntArray, half_life_s: float) -> Any:
    """``2 ** (-dt / half_life)`` for time differences in ns."""
    return np.exp2(-np.asarray(dt_ns, dtype=np.float64) / NS_PER_S / half_life_s)


def _check_state(state: dict[str, Any], kind: str) -> None:
    if state.get("kind") != kind or state.get("version") != 1:
        raise DataError(f"not a {kind} v1 state: kind={state.get('kind')!r} version={state.get('version')!r}")


class VolumeEstimator:
    r"""Shares traded per period from trade events (action ``T``), EWMA over event time.

    With ``T`` the latest event time and ``h`` the half-life, the trade sum
    :math:`S = \sum_i v_i 2^{-(T-t_i)/h}` and the observed session time
    :math:`E = \sum_{[a,b]} \int_a^b 2^{-(T-u)/h} du
    = \frac{h}{\ln 2}\sum (2^{-(T-b)/h} - 2^{-(T-a)/h})` over consecutive
    event intervals no longer than ``max_gap_s`` (overnight gaps are not
    session time) give ``per_period = period_s * S / E``.

    Cold start: before any covered interval ``per_period()`` returns
    ``prior_per_period`` (default 0: no cap information). With
    ``prior_s > 0`` the prior acts as ``prior_s`` seconds of pseudo-history:
    ``period_s * (S + r0 prior_s) / (E + prior_s)``, ``r0 = prior_per_period / period_s``.
    """

    def __init__(self, period_s: float, *, half_life_s: float = 1800.0, max_gap_s: float = 900.0,
                 prior_per_period: float = 0.0, prior_s: float = 0.0) -> None:
        if not (period_s > 0 and half_life_s > 0 and max_gap_s > 0):
            raise ValueError("period_s, half_life_s and max_gap_s must be positive")
        self.period_s = float(period_s)
        self.half_life_s = float(half_life_s)
        self.max_gap_s = float(max_gap_s)
        self.prior_per_period = float(prior_per_period)
        self.prior_s = float(prior_s)
        self.traded = 0.0  # S
        self.exposure_s = 0.0  # E
        self.total_traded = 0.0  # undiscounted, for reports
        self.last_ts: int | None = None

    def update(self, book: BookLike) -> None:
        """Add a time-ordered batch: trades add volume, every event extends the observed time."""
        if len(book) == 0:
            return
        ts = np.asarray(book.ts_event, dtype=np.int64)
        ts_all = np.concatenate([[self.last_ts], ts]) if self.last_ts is not None else ts
        ref = int(ts_all.max())
        if self.last_ts is not None:
            d = float(_decay(ref - self.last_ts, self.half_life_s))
            self.traded *= d
            self.exposure_s *= d
        a, b = covered_intervals(ts_all, int(self.max_gap_s * NS_PER_S))
        if a.size:
            h = self.half_life_s / LN2
            self.exposure_s += float(h * (_decay(ref - b, self.half_life_s) - _decay(ref - a, self.half_life_s)).sum())
        trades = np.asarray(book.action) == "T"
        if trades.any():
            v = np.asarray(book.size, dtype=np.float64)[trades]
            self.traded += float(v @ _decay(ref - ts[trades], self.half_life_s))
            self.total_traded += float(v.sum())
        self.last_ts = ref

    def rate_per_s(self) -> float:
        """Shares per second of session time (prior rate before data)."""
        r0 = self.prior_per_period / self.period_s
        den = self.exposure_s + self.prior_s
        return (self.traded + r0 * self.prior_s) / den if den > 0 else r0

    def per_period(self) -> float:
        """Current estimate of shares traded per period of ``period_s`` seconds."""
        return self.rate_per_s() * self.period_s

    def forecast(self, n_slots: int, *, ts_ns: int, profile: IntradayProfile | None = None,
                 period_s: float | None = None) -> FloatArray:
        """``V_k`` for slots ``k = 0..n_slots-1`` of ``period_s`` (default: the estimator's) from ``ts_ns``.

        ``V_k = rate_per_s * P * r_volume(T, ts_ns + k * P)`` with the profile ratio ``r`` (1 when flat).
        """
        period = self.period_s if period_s is None else float(period_s)
        v = np.full(n_slots, self.rate_per_s() * period)
        if profile is not None and n_slots > 0:
            t = int(ts_ns) + np.arange(n_slots, dtype=np.int64) * round(period * NS_PER_S)
            v = v * profile.ratio("volume", int(self.last_ts if self.last_ts is not None else ts_ns), t)
        return v

    def state(self) -> dict[str, Any]:
        return {"kind": "volume", "version": 1, "period_s": self.period_s, "half_life_s": self.half_life_s,
                "max_gap_s": self.max_gap_s, "prior_per_period": self.prior_per_period,
                "prior_s": self.prior_s, "traded": self.traded, "exposure_s": self.exposure_s,
                "total_traded": self.total_traded, "last_ts": self.last_ts}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> VolumeEstimator:
        _check_state(state, "volume")
        est = cls(state["period_s"], half_life_s=state["half_life_s"], max_gap_s=state["max_gap_s"],
                  prior_per_period=state["prior_per_period"], prior_s=state["prior_s"])
        est.traded = float(state["traded"])
        est.exposure_s = float(state["exposure_s"])
        est.total_traded = float(state["total_traded"])
        est.last_ts = None if state["last_ts"] is None else int(state["last_ts"])
        return est


class VolatilityEstimator:
    r"""Volatility of the mid in dollars per period, EW realised variance on a sampling grid.

    The mid is sampled previous-tick on the absolute grid ``j * sample_s``
    (absolute, so chunking cannot move it), and returns
    :math:`r_j = m(g_j) - m(g_{j-1})` between fresh points (last event no older
    than ``max_gap_s``: overnight jumps are left out) are weighted by
    :math:`w_j = 2^{-(T-g_j)/h}`. Then

    .. math:: \sigma = \sqrt{\frac{\sum_j w_j r_j^2}{\sum_j w_j\, s}\; P}

    with ``s = sample_s`` and ``P = period_s``. Sampling every few seconds
    rather than every event keeps quote flicker from inflating sigma.
    ``sigma()`` is 0 before the first return (no risk term without data).
    """

    def __init__(self, period_s: float, *, half_life_s: float = 1800.0, sample_s: float = 10.0,
                 max_gap_s: float = 900.0) -> None:
        if not (period_s > 0 and half_life_s > 0 and sample_s > 0 and max_gap_s > 0):
            raise ValueError("period_s, half_life_s, sample_s and max_gap_s must be positive")
        self.period_s = float(period_s)
        self.half_life_s = float(half_life_s)
        self.sample_s = float(sample_s)
        self.max_gap_s = float(max_gap_s)
        self.sq_sum = 0.0
        self.weight = 0.0
        self.returns = 0
        self.last_grid: int | None = None  # last grid time processed
        self.last_grid_mid = math.nan
        self.last_grid_fresh = False
        self.last_event_ts: int | None = None
        self.last_event_mid = math.nan

    @property
    def sample_ns(self) -> int:
        return round(self.sample_s * NS_PER_S)

    def update(self, book: BookLike) -> None:
        """Add a time-ordered batch; rows with an empty side are ignored."""
        mid = mid_of(book)
        ok = np.isfinite(mid)
        if not ok.any():
            return
        ts, m = np.asarray(book.ts_event, dtype=np.int64)[ok], mid[ok]
        if self.last_event_ts is not None:
            ts = np.concatenate([[self.last_event_ts], ts])
            m = np.concatenate([[self.last_event_mid], m])
        step = self.sample_ns
        first = self.last_grid + step if self.last_grid is not None else -(-int(ts[0]) // step) * step
        grid, value, fresh = sample_grid(ts, m, step, first, int(self.max_gap_s * NS_PER_S))
        self.last_event_ts, self.last_event_mid = int(ts[-1]), float(m[-1])
        if grid.size == 0:
            return
        carried = self.last_grid is not None
        ends = grid if carried else grid[1:]  # grid time at which each return ends
        if self.last_grid is not None:
            value = np.concatenate([[self.last_grid_mid], value])
            fresh = np.concatenate([[self.last_grid_fresh], fresh])
            d = float(_decay(int(grid[-1]) - self.last_grid, self.half_life_s))
            self.sq_sum *= d
            self.weight *= d
        good = fresh[1:] & fresh[:-1]
        r = np.diff(value)[good]
        w = _decay(int(grid[-1]) - ends[good], self.half_life_s)
        self.sq_sum += float(w @ (r * r))
        self.weight += float(w.sum())
        self.returns += int(r.size)
        self.last_grid = int(grid[-1])
        self.last_grid_mid, self.last_grid_fresh = float(value[-1]), bool(fresh[-1])

    def variance_rate(self) -> float:
        """Dollars^2 per second (0 before data)."""
        return self.sq_sum / (self.weight * self.sample_s) if self.weight > 0 else 0.0

    def sigma(self, period_s: float | None = None) -> float:
        """Mid volatility in dollars per ``period_s`` (default: the estimator's period)."""
        return math.sqrt(self.variance_rate() * (self.period_s if period_s is None else period_s))

    def state(self) -> dict[str, Any]:
        return {"kind": "volatility", "version": 1, "period_s": self.period_s,
                "half_life_s": self.half_life_s, "sample_s": self.sample_s, "max_gap_s": self.max_gap_s,
                "sq_sum": self.sq_sum, "weight": self.weight, "returns": self.returns,
                "last_grid": self.last_grid,
                "last_grid_mid": None if math.isnan(self.last_grid_mid) else self.last_grid_mid,
                "last_grid_fresh": self.last_grid_fresh, "last_event_ts": self.last_event_ts,
                "last_event_mid": None if math.isnan(self.last_event_mid) else self.last_event_mid}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> VolatilityEstimator:
        _check_state(state, "volatility")
        est = cls(state["period_s"], half_life_s=state["half_life_s"], sample_s=state["sample_s"],
                  max_gap_s=state["max_gap_s"])
        est.sq_sum, est.weight, est.returns = float(state["sq_sum"]), float(state["weight"]), int(state["returns"])
        est.last_grid = None if state["last_grid"] is None else int(state["last_grid"])
        est.last_grid_mid = math.nan if state["last_grid_mid"] is None else float(state["last_grid_mid"])
        est.last_grid_fresh = bool(state["last_grid_fresh"])
        est.last_event_ts = None if state["last_event_ts"] is None else int(state["last_event_ts"])
        est.last_event_mid = math.nan if state["last_event_mid"] is None else float(state["last_event_mid"])
        return est
