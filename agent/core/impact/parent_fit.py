"""A parent order's view of its symbol's cost curve: the fit on the parent's own size range.

The symbol's EW-average cost curve (:class:`agent.core.impact.symbol_curve.SymbolCostCurve`)
is shared by every parent on the symbol; what depends on the parent is its
fitting grid (a few times its even slice, :func:`agent.core.impact.curves.default_sizes`)
and so its fitted ``beta, gamma``. The fit is cached until the symbol curve
changes, so it is computed at most once per decision, not per row.
"""

from __future__ import annotations

import numpy as np

from agent.core.forecast.profile import IntradayProfile
from agent.core.impact.fit import (
    GAMMA_FLOOR,
    GridQuadratic,
    PowerLawFit,
    QuadraticFit,
    fit_power_law,
)
from agent.core.impact.symbol_curve import FloatArray, SymbolCostCurve
from agent.core.market import SymbolMarket
from agent.core.model import NS_PER_S, ImpactParams, Side


class ParentImpact:
    """``beta, gamma`` of one parent order, fitted on ``sizes`` from a shared symbol curve.

    Same reading interface as :class:`agent.core.impact.estimator.OnlineImpactEstimator`
    (``ready``, ``current()``, ``forecast()``, ``last_ts``), without walking a book itself.
    """

    def __init__(self, market: SymbolMarket, side: Side, half_life_s: float, sizes: FloatArray) -> None:
        self.market, self.side, self.half_life_s = market, side, float(half_life_s)
        self.sizes = np.asarray(sizes, dtype=np.float64)
        self._grid = GridQuadratic(self.sizes)
        self._quad: QuadraticFit | None = None
        self._version, self._curve_id = -1, 0

    @property
    def curve(self) -> SymbolCostCurve:
        """The symbol's curve (looked up each time: a restore may replace the symbol's estimators)."""
        return self.market.curve(self.side, self.half_life_s)

    @property
    def ready(self) -> bool:
        return self.curve.ready

    @property
    def last_ts(self) -> int | None:
        return self.curve.last_ts

    def average_curve(self) -> FloatArray:
        """The symbol's EW-average cost at this parent's sizes (dollars)."""
        return self.curve.average_at(self.sizes)

    @property
    def extrapolated_fraction(self) -> float:
        return self.curve.extrapolated_fraction_at(self.sizes)

    def quadratic(self) -> QuadraticFit:
        """The quadratic fit of :meth:`average_curve` (cached per curve update): all a decision needs."""
        if self._quad is None or self._version != self.curve.version or self._curve_id != id(self.curve):
            self._quad = self._grid.fit(self.average_curve())
            self._version, self._curve_id = self.curve.version, id(self.curve)
        return self._quad

    def fits(self) -> tuple[QuadraticFit, PowerLawFit]:
        """Quadratic and power-law fits (the power law is for analysis only, never cached)."""
        return self.quadratic(), fit_power_law(self.sizes, self.average_curve())

    def current(self) -> ImpactParams:
        """Current ``beta, gamma``; raises ``DataError`` before data."""
        quad = self.quadratic()
        return ImpactParams(quad.beta, quad.gamma)

    def forecast(self, n_slots: int, *, ts_ns: int, period_s: float,
                 profile: IntradayProfile | None = None) -> tuple[FloatArray, FloatArray]:
        """``beta, gamma`` of the current fit for ``n_slots`` slots, scaled by the profile
        (:func:`profile_scaled`)."""
        p = self.current()
        return profile_scaled(p.beta, p.gamma, n_slots, ts_ns=ts_ns, period_s=period_s,
                              ref_ts=self.last_ts, profile=profile)


def profile_scaled(beta: float, gamma: float, n_slots: int, *, ts_ns: int, period_s: float,
                   ref_ts: int | None, profile: IntradayProfile | None) -> tuple[FloatArray, FloatArray]:
    """``beta_k = beta * r_beta(T, ts_ns + k * period)`` for ``k = 0..n_slots-1``, gamma likewise
    (floored at ``GAMMA_FLOOR``); ``r`` is the intraday profile's ratio from the time of the
    estimate ``T = ref_ts`` (``ts_ns`` when None), 1 when there is no profile."""
    b = np.full(n_slots, beta)
    g = np.full(n_slots, gamma)
    if profile is not None and n_slots > 0:
        t = int(ts_ns) + np.arange(n_slots, dtype=np.int64) * round(period_s * NS_PER_S)
        ref = int(ref_ts if ref_ts is not None else ts_ns)
        b = b * profile.ratio("beta", ref, t)
        g = np.maximum(g * profile.ratio("gamma", ref, t), GAMMA_FLOOR)
    return b, g
