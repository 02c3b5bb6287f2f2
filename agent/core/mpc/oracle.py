"""Exact solutions used as test oracle and solver fallback, and the model cost.

Separable problem (no risk term), for ``gamma_k > 0``::

    minimise  sum_k beta_k x_k + gamma_k x_k^2
    s.t.      sum_k x_k = R,   0 <= x_k <= u_k

KKT: ``beta_k + 2 gamma_k x_k - nu + mu_k^+ - mu_k^- = 0`` gives

    x_k(nu) = clip((nu - beta_k) / (2 gamma_k), 0, u_k)

``S(nu) = sum_k x_k(nu)`` is piecewise linear and non-decreasing with
breakpoints ``beta_k`` (slot k starts) and ``beta_k + 2 gamma_k u_k`` (slot k
saturates). Sorting the breakpoints and accumulating slopes gives ``S`` at every
breakpoint in O(n log n); nu is then found by linear interpolation on the
segment where ``S`` crosses ``R``. If ``sum_k u_k < R`` completion is impossible:
``x = u`` and the shortfall ``R - sum_k u_k`` is reported.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agent.core.model import FloatArray

ArrayLike = npt.ArrayLike


def _as_float(a: ArrayLike) -> FloatArray:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def solve_separable_exact(remaining: float, beta: ArrayLike, gamma: ArrayLike,
                          cap: ArrayLike | None = None) -> tuple[FloatArray, float]:
    """Exact minimiser of the separable QP (module docstring).

    Parameters
    ----------
    remaining : R, shares to trade (>= 0).
    beta, gamma : per-slot linear and quadratic impact, ``gamma > 0``.
    cap : per-slot upper bounds ``u_k >= 0`` (``np.inf`` allowed); None = no caps.

    Returns
    -------
    (x, shortfall) : the schedule and ``max(0, R - sum u)``.

    Raises
    ------
    ValueError : non-finite beta/gamma, ``gamma <= 0``, negative or NaN caps.
    """
    b = _as_float(beta)
    g = _as_float(gamma)
    u = np.full_like(b, np.inf) if cap is None else _as_float(cap)
    if not (b.shape == g.shape == u.shape):
        raise ValueError("beta, gamma and cap must have the same length")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(g)) and np.all(g > 0)):
        raise ValueError("beta must be finite and gamma finite and > 0")
    if np.any(np.isnan(u)) or np.any(u < 0):
        raise ValueError("caps must be >= 0 (np.inf for none)")
    r = float(remaining)
    if not np.isfinite(r):
        raise ValueError("remaining must be finite")
    n = b.size
    if n == 0 or r <= 0:
        return np.zeros(n), max(r, 0.0) if n == 0 else 0.0
    total_cap = float(np.sum(u))
    if total_cap <= r:
        return np.where(np.isfinite(u), u, 0.0), r - total_cap
    inv = 1.0 / (2.0 * g)
    finite = np.isfinite(u)
    top = b + 2.0 * g * np.where(finite, u, 0.0)
    pts = np.concatenate((b, top[finite]))
    dslope = np.concatenate((inv, -inv[finite]))
    order = np.argsort(pts, kind="stable")
    pts = pts[order]
    slope_after = np.cumsum(dslope[order])  # slope of S on [pts[i], pts[i+1])
    s_at = np.concatenate(([0.0], np.cumsum(slope_after[:-1] * np.diff(pts))))
    i = int(np.searchsorted(s_at, r, side="left")) - 1  # s_at[i] < r <= s_at[i+1]
    i = min(max(i, 0), pts.size - 1)
    slope = slope_after[i]
    nu = pts[i] + (r - s_at[i]) / slope if slope > 0 else pts[i]
    x = np.clip((nu - b) * inv, 0.0, u)
    # remove the floating-point residual on the free slots (sum x = R exactly)
    free = (x > 0) & (x < u)
    if np.any(free):
        x[free] += (r - x.sum()) * inv[free] / inv[free].sum()
        x = np.clip(x, 0.0, u)
    return x, 0.0


def even_split(remaining: float, cap: ArrayLike) -> tuple[FloatArray, float]:
    """Even split of ``remaining`` under caps (water filling).

    ``x_k = min(u_k, t)`` with the level t chosen so that ``sum_k x_k = R``;
    when ``sum_k u_k < R``, ``x = u`` and the shortfall is ``R - sum_k u_k``.
    NaN caps are treated as 0 (unknown capacity is not used).
    """
    u = _as_float(cap)
    u = np.where(np.isnan(u), 0.0, np.maximum(u, 0.0))
    r = max(float(remaining), 0.0)
    n = u.size
    if n == 0:
        return np.zeros(0), r
    total = float(np.sum(u))
    if total <= r:
        return np.where(np.isfinite(u), u, 0.0), r - total
    us = np.sort(u)
    # level t on segment: sum_{u_k < t} u_k + (#u_k >= t) * t = R
    below = np.concatenate(([0.0], np.cumsum(us[:-1])))
    count_above = n - np.arange(n)
    with np.errstate(invalid="ignore"):
        t_cand = (r - below) / count_above
    ok = t_cand <= us
    k = int(np.argmax(ok))
    return np.minimum(u, t_cand[k]), 0.0


def model_cost(x: ArrayLike, beta: ArrayLike, gamma: ArrayLike, *, remaining: float | None = None,
               risk_aversion: float = 0.0, sigma: float = 0.0) -> float:
    """Model cost in dollars of a per-period schedule.

    ``sum_k beta_k x_k + gamma_k x_k^2 + L sigma^2 sum_k r_k^2`` with
    ``r_k = R - sum_{j<=k} x_j`` (R defaults to ``sum x``), sigma in dollars per
    period (tau = one period).
    """
    xs = _as_float(x)
    cost = float(np.dot(_as_float(beta), xs) + np.dot(_as_float(gamma), xs * xs))
    w = float(risk_aversion) * float(sigma) ** 2
    if w > 0:
        r0 = float(xs.sum()) if remaining is None else float(remaining)
        inv = r0 - np.cumsum(xs)
        cost += w * float(np.dot(inv, inv))
    return cost


def active_set_qp(h: FloatArray, c: FloatArray, cap: FloatArray, total: float, x0: FloatArray,
                  *, tol: float = 1e-9, max_iter: int = 25) -> FloatArray | None:
    """Exact solution by a primal-dual active-set method, started from ``x0``.

    ``minimise c'x + x'Hx/2  s.t.  1'x = total,  0 <= x <= cap`` with H positive
    definite. For the current guess of the sets L (x = 0), U (x = cap) and F
    (free), the equality-constrained KKT system

        [H_FF  1] [ x_F]   [-c_F - H_FB x_B      ]
        [1'    0] [-nu ] = [total - 1'x_B        ]

    is solved; the multipliers ``mu = H x + c - nu`` must be >= 0 on L and <= 0
    on U, and x_F within its bounds. Violators change set and the step repeats.
    Used to finish an OSQP solution whose polishing failed; the OSQP solution
    gives a nearly right active set, so one or two steps usually suffice.

    Returns None when it does not converge in ``max_iter`` steps or the KKT
    system is singular.
    """
    n = c.size
    fin = np.isfinite(cap)
    scale = max(abs(total) / max(n, 1), 1e-12)
    lo = x0 <= 1e-3 * scale
    up = fin & (x0 >= cap - 1e-3 * scale) & ~lo
    for _ in range(max_iter):
        free = ~(lo | up)
        x = np.where(up, np.where(fin, cap, 0.0), 0.0)
        f = np.flatnonzero(free)
        rest = total - x.sum()
        if f.size:
            kkt = np.empty((f.size + 1, f.size + 1))
            kkt[:-1, :-1] = h[np.ix_(f, f)]
            kkt[:-1, -1] = 1.0
            kkt[-1, :-1] = 1.0
            kkt[-1, -1] = 0.0
            rhs = np.concatenate((-c[f] - h[f] @ x, [rest]))
            try:
                sol = np.linalg.solve(kkt, rhs)
            except np.linalg.LinAlgError:
                return None
            x[f] = sol[:-1]
            nu = -sol[-1]
            grad = h @ x + c
        else:
            if abs(rest) > tol * max(abs(total), 1.0):
                return None
            grad = h @ x + c
            g_up = grad[up].max() if up.any() else -np.inf
            g_lo = grad[lo].min() if lo.any() else np.inf
            if g_up <= g_lo + tol * max(1.0, float(np.abs(grad).max())):
                return x
            nu = 0.5 * (g_up + g_lo)
        mu = grad - nu
        gtol = tol * max(1.0, float(np.abs(grad).max()))
        xtol = tol * scale
        to_lo = free & (x < -xtol)
        to_up = free & fin & (x > cap + xtol)
        lo_out = lo & (mu < -gtol)
        up_out = up & (mu > gtol)
        if not (to_lo.any() or to_up.any() or lo_out.any() or up_out.any()):
            return np.clip(x, 0.0, cap)
        lo = (lo & ~lo_out) | to_lo
        up = (up & ~up_out) | to_up
    return None


def slot_qp(q: FloatArray, g: FloatArray, w: float, r0: float, m: FloatArray, a: FloatArray,
            aa: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Dense ``(H, c)`` of the (blocked) execution QP with the inventory eliminated.

    With ``r = r0 - L x`` (L lower-triangular ones) the objective
    ``sum_k q_k x_k + g_k x_k^2 + w (m_k r_k^2 + 2 a_k r_k x_k + aa_k x_k^2)``
    equals ``c'x + x'Hx/2 + const`` with

        H = 2 diag(g + w aa) + 2 w L'ML - 2 w (AL + L'A),
        c = q - 2 w r0 L'm + 2 w r0 a,

    ``(L'ML)_ij = sum_{k >= max(i, j)} m_k``, ``(AL)_ij = a_i [j <= i]``.
    """
    n = q.size
    idx = np.arange(n)
    suffix = np.cumsum(m[::-1])[::-1]
    lower = idx[:, None] >= idx[None, :]
    h = 2.0 * w * suffix[np.maximum.outer(idx, idx)]
    h -= 2.0 * w * (np.where(lower, a[:, None], 0.0) + np.where(lower.T, a[None, :], 0.0))
    h[idx, idx] += 2.0 * (g + w * aa)
    c = q - 2.0 * w * r0 * suffix + 2.0 * w * r0 * a
    return h, c


def repair_sum(x: FloatArray, cap: FloatArray, target: float) -> FloatArray:
    """Remove the solver's small residual so that ``sum x = target`` within the caps.

    The residual is spread over the slots that can absorb it, proportionally
    to their room (up: ``cap - x``, finite part; down: ``x``).
    """
    for _ in range(3):
        d = target - float(x.sum())
        if abs(d) <= 1e-12 * max(abs(target), 1.0):
            break
        room = np.where(np.isfinite(cap), cap - x, max(target, 1.0)) if d > 0 else x.copy()
        tot = float(room.sum())
        if tot <= 0:
            break
        x = np.clip(x + d * room / tot, 0.0, cap)
    return x


def fallback_schedule(remaining: float, beta: FloatArray, gamma: FloatArray, cap: FloatArray,
                      previous: FloatArray | None, *, exact_ok: bool
                      ) -> tuple[FloatArray, float, str]:
    """Plan used when the QP solver fails: ``(schedule, shortfall, name)``.

    In order: the exact separable solution (``exact_ok``, valid data); the
    previous plan's last ``P`` periods rescaled to the remainder, clipped to the
    caps, with what the clipping removed spread evenly over the room left
    (``fallback-shifted``); an even split under the caps (``fallback-even``).
    NaN caps count as 0 (unknown capacity is not used).
    """
    n = beta.size
    caps = np.where(np.isnan(cap), 0.0, np.maximum(cap, 0.0))
    shortfall = max(0.0, remaining - float(caps.sum()))
    if exact_ok:
        try:
            x, shortfall = solve_separable_exact(remaining, beta, gamma, caps)
            return x, shortfall, "exact"
        except ValueError:
            pass
    if previous is not None and previous.size >= n:
        base = previous[previous.size - n:]
        if base.sum() > 0:
            cand = np.minimum(base * ((remaining - shortfall) / base.sum()), caps)
            top, _ = even_split(remaining - shortfall - cand.sum(), caps - cand)
            return cand + top, shortfall, "fallback-shifted"
    x, shortfall = even_split(remaining, caps)
    return x, shortfall, "fallback-even"
