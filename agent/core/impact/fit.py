"""Least-squares fits of impact cost curves: constrained quadratic and power law.

Both fits take a grid of order sizes ``x_j`` and costs ``c_j`` (dollars above
mid, one curve or many stacked rows) with optional non-negative weights, and
return the coefficients with their coefficient of determination ``R^2``
computed in levels (dollars), so the two models are comparable.

Kept free of anything but numpy and the standard library (core layering rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Smallest ``gamma`` a quadratic fit returns (dollars per share^2), keeping the QP strictly convex.
GAMMA_FLOOR = 1e-12


@dataclass(frozen=True, slots=True)
class QuadraticFit:
    """``g(x) = beta * x + gamma * x**2``; ``r2`` is NaN when the data has no variance."""

    beta: float
    gamma: float
    r2: float

    def __call__(self, x: FloatArray | float) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        return np.asarray(self.beta * x + self.gamma * x * x, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PowerLawFit:
    """``g(x) = alpha * x**(1 + delta)``; ``r2`` is computed in levels (dollars)."""

    alpha: float
    delta: float
    r2: float

    def __call__(self, x: FloatArray | float) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        return np.asarray(self.alpha * np.power(x, 1.0 + self.delta), dtype=np.float64)


def _points(
    sizes: FloatArray, cost: FloatArray, weights: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Flatten (g,) sizes against (g,) or (n, g) costs into finite weighted points."""
    x = np.asarray(sizes, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    stacked = c.ndim == 2
    if c.ndim == 1:
        c = c[None, :]
    if c.shape[-1] != x.shape[0]:
        raise ValueError(f"cost has {c.shape[-1]} columns but there are {x.shape[0]} sizes")
    if weights is None:
        w = np.ones_like(c)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if stacked and w.ndim == 1:
            w = w[:, None]  # one weight per curve
        w = np.broadcast_to(w, c.shape)
    xx = np.broadcast_to(x, c.shape)
    keep = np.isfinite(c) & np.isfinite(w) & (w > 0)
    return xx[keep], c[keep], w[keep]


def quadratic_from_moments(
    sw: float, sx2: float, sx3: float, sx4: float, sc: float, sxc: float, sx2c: float, scc: float,
    *, gamma_floor: float = GAMMA_FLOOR,
) -> QuadraticFit:
    r"""Constrained least squares from weighted sufficient statistics.

    Minimises :math:`\sum_j w_j (c_j - \beta x_j - \gamma x_j^2)^2` subject to
    :math:`\beta \ge 0,\ \gamma \ge \gamma_{floor}` with the moments
    ``sw = sum w``, ``sx2 = sum w x^2``, ``sx3 = sum w x^3``, ``sx4 = sum w x^4``,
    ``sc = sum w c``, ``sxc = sum w x c``, ``sx2c = sum w x^2 c``, ``scc = sum w c^2``.

    The problem is a convex QP in two variables: the unconstrained solution of
    the 2x2 normal equations is optimal when feasible; otherwise the optimum
    lies on an edge of the feasible quadrant, where each 1-D problem has a
    closed form that is clipped to the edge. The best feasible candidate wins.
    ``R^2 = 1 - SSE / SST`` with ``SST = scc - sc^2 / sw``.
    """
    if not sw > 0 or not sx2 > 0:
        return QuadraticFit(0.0, gamma_floor, math.nan)

    def sse(b: float, g: float) -> float:
        return scc - 2.0 * (b * sxc + g * sx2c) + b * b * sx2 + 2.0 * b * g * sx3 + g * g * sx4

    candidates: list[tuple[float, float]] = []
    det = sx2 * sx4 - sx3 * sx3
    if det > 1e-12 * sx2 * sx4:
        b = (sxc * sx4 - sx2c * sx3) / det
        g = (sx2 * sx2c - sx3 * sxc) / det
        if b >= 0.0 and g >= gamma_floor:
            candidates.append((b, g))
    if not candidates:
        candidates.append((0.0, max(gamma_floor, sx2c / sx4)))  # beta = 0 edge
        candidates.append((max(0.0, (sxc - gamma_floor * sx3) / sx2), gamma_floor))  # gamma floor edge
    beta, gamma = min(candidates, key=lambda bg: sse(*bg))
    sst = scc - sc * sc / sw
    scale = max(abs(scc), 1e-300)
    r2 = 1.0 - max(sse(beta, gamma), 0.0) / sst if sst > 1e-12 * scale else math.nan
    return QuadraticFit(float(beta), float(gamma), float(r2))


def fit_quadratic(
    sizes: FloatArray, cost: FloatArray, weights: FloatArray | None = None,
    *, gamma_floor: float = GAMMA_FLOOR,
) -> QuadraticFit:
    r"""Fit ``beta x + gamma x^2`` to cost curves with ``beta >= 0``, ``gamma >= gamma_floor``.

    Parameters
    ----------
    sizes : (g,) order sizes in shares.
    cost : (g,) one curve or (n, g) stacked curves, dollars above mid; NaN
        points (invalid snapshots) are ignored.
    weights : optional (n,) per curve or broadcastable to ``cost``.

    Returns
    -------
    QuadraticFit with ``R^2`` over the weighted points (NaN without variance).
    """
    x, c, w = _points(sizes, cost, weights)
    x2 = x * x
    return quadratic_from_moments(
        float(w.sum()), float((w * x2).sum()), float((w * x2 * x).sum()), float((w * x2 * x2).sum()),
        float((w * c).sum()), float((w * x * c).sum()), float((w * x2 * c).sum()), float((w * c * c).sum()),
        gamma_floor=gamma_floor,
    )


class GridQuadratic:
    """:func:`fit_quadratic` of one curve on a fixed size grid, the size moments computed once.

    A parent order fits its quadratic on the same sizes at every decision; only the costs
    change. ``fit(cost)`` returns exactly what ``fit_quadratic(sizes, cost)`` returns (the
    same reductions over the same arrays) when every cost is finite, and falls back to it
    otherwise.
    """

    def __init__(self, sizes: FloatArray, *, gamma_floor: float = GAMMA_FLOOR) -> None:
        self.x = np.ascontiguousarray(sizes, dtype=np.float64).reshape(-1)
        self.x2 = self.x * self.x
        self.gamma_floor = gamma_floor
        self._moments = (float(self.x.size), float(self.x2.sum()), float((self.x2 * self.x).sum()),
                         float((self.x2 * self.x2).sum()))

    def fit(self, cost: FloatArray) -> QuadraticFit:
        c = np.asarray(cost, dtype=np.float64)
        if c.shape != self.x.shape or not np.isfinite(c).all():
            return fit_quadratic(self.x, c, gamma_floor=self.gamma_floor)
        sw, sx2, sx3, sx4 = self._moments
        return quadratic_from_moments(sw, sx2, sx3, sx4, float(c.sum()), float((self.x * c).sum()),
                                      float((self.x2 * c).sum()), float((c * c).sum()),
                                      gamma_floor=self.gamma_floor)


def fit_power_law(
    sizes: FloatArray, cost: FloatArray, weights: FloatArray | None = None
) -> PowerLawFit:
    r"""Fit ``alpha x^(1+delta)`` with ``delta >= 0`` by weighted least squares in logs.

    :math:`\log c = \log\alpha + (1+\delta)\log x` over the points with
    ``x > 0, c > 0``. A cost curve from a book walk is convex with ``C(0)=0``,
    so its log-log slope is at least 1; when noise makes the fitted slope
    smaller, ``delta`` is clamped to 0 and ``log alpha`` re-fitted as the
    weighted mean of ``log c - log x``. ``R^2`` is computed in levels.
    Returns NaN coefficients when no point has a positive cost.
    """
    x, c, w = _points(sizes, cost, weights)
    pos = (x > 0) & (c > 0)
    if not pos.any():
        return PowerLawFit(math.nan, math.nan, math.nan)
    lx, lc, wp = np.log(x[pos]), np.log(c[pos]), w[pos]
    sw = wp.sum()
    mx, mc = (wp * lx).sum() / sw, (wp * lc).sum() / sw
    vxx = (wp * (lx - mx) ** 2).sum()
    slope = (wp * (lx - mx) * (lc - mc)).sum() / vxx if vxx > 0 else 1.0
    if slope < 1.0:
        slope = 1.0
    log_alpha = (wp * (lc - slope * lx)).sum() / sw
    alpha, delta = float(np.exp(log_alpha)), float(slope - 1.0)
    pred = alpha * np.power(x, slope)
    sst = float((w * (c - (w * c).sum() / w.sum()) ** 2).sum())
    sse = float((w * (c - pred) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else math.nan
    return PowerLawFit(alpha, delta, float(r2))
