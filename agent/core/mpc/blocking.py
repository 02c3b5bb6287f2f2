"""Move blocking: map the remaining periods onto the QP's fixed number of slots.

The receding-horizon QP has a fixed number of slots ``S`` chosen when the
parent order starts. When ``P`` periods remain and ``P <= S`` every slot is one
period and slots ``P..S-1`` are inactive (cap 0). When ``P > S`` the first
``F`` slots stay one period each ("fine") and the remaining ``P - F`` periods
are split as evenly as possible into ``S - F`` *blocks* (the larger blocks
last), so the horizon always reaches the deadline.

A block ``k`` of ``m`` periods ``j`` carries one decision ``x_k`` spread over
its periods with weights ``w_j`` (``sum_j w_j = 1``): proportional to the caps
when every cap in the block is finite and positive (equal participation),
evenly otherwise. The aggregation below is *exact* for that expansion:

    cost_k(x)  = sum_j beta_j w_j x + gamma_j (w_j x)^2
               = beta_k x + gamma_k x^2,   beta_k = sum_j w_j beta_j,
                                           gamma_k = sum_j w_j^2 gamma_j
                 (= mean(beta) x + mean(gamma)/m x^2 for even weights)
    cap_k      = min_j u_j / w_j           (= sum_j u_j for cap weights, m u for even)
    risk_k     = sum_j r_j^2 with r_j = r_k + a_j x,  a_j = 1 - sum_{i<=j} w_i
               = m r_k^2 + 2 (sum_j a_j) r_k x + (sum_j a_j^2) x^2

where ``r_k`` is the inventory left at the end of the block. So the blocked QP
is the full QP restricted to schedules that are piecewise "even" in blocks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from agent.core.model import FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class Layout:
    """How ``n_periods`` remaining periods map onto ``len(sizes)`` slots.

    ``sizes[k]`` is the number of periods of slot k (0 for an inactive slot past
    the deadline); ``starts[k]`` the index of its first period.
    """

    sizes: IntArray
    starts: IntArray
    n_periods: int

    @property
    def n_active(self) -> int:
        """Number of slots that hold at least one period."""
        return int(np.count_nonzero(self.sizes))

    def slot_of_period(self, period: IntArray) -> IntArray:
        """Index of the slot containing each (in-range) period index."""
        act = self.n_active
        idx = np.searchsorted(self.starts[:act], period, side="right") - 1
        return np.asarray(np.minimum(np.maximum(idx, 0), max(act - 1, 0)), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Aggregated:
    """Slot coefficients (length S; inactive slots have zeros and cap 0).

    ``weights`` (length P) is the within-slot split of each slot's decision
    over its periods; ``risk_m``, ``risk_a``, ``risk_aa`` are the coefficients
    of ``m r^2 + 2 a r x + aa x^2`` in the module docstring.
    """

    beta: FloatArray
    gamma: FloatArray
    cap: FloatArray
    weights: FloatArray
    risk_m: FloatArray
    risk_a: FloatArray
    risk_aa: FloatArray


@functools.lru_cache(maxsize=4096)
def make_layout(n_periods: int, n_slots: int, fine_slots: int) -> Layout:
    """Layout of ``n_periods`` periods on ``n_slots`` slots with ``fine_slots`` unblocked.

    Parameters
    ----------
    n_periods : remaining periods P >= 0.
    n_slots : fixed number of QP slots S >= 1.
    fine_slots : slots kept at one period when blocking is needed; clipped to
        ``[1, S - 1]`` so that at least one block exists.

    Layouts are cached (every parent with the same shape asks for the same ones) and their
    arrays are read-only.
    """
    if n_slots < 1:
        raise ValueError("n_slots must be >= 1")
    sizes = np.zeros(n_slots, dtype=np.int64)
    if n_periods <= n_slots:
        sizes[:n_periods] = 1
    else:
        nf = min(max(fine_slots, 1), n_slots - 1) if n_slots > 1 else 0
        nb = n_slots - nf
        base, extra = divmod(n_periods - nf, nb)
        sizes[:nf] = 1
        sizes[nf:] = base
        if extra:
            sizes[n_slots - extra:] += 1
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    sizes.flags.writeable = starts.flags.writeable = False  # cached and shared: read-only
    return Layout(sizes=sizes, starts=starts, n_periods=n_periods)


def aggregate(layout: Layout, beta: FloatArray, gamma: FloatArray, cap: FloatArray) -> Aggregated:
    """Exact block coefficients (module docstring) for per-period ``beta, gamma, cap``."""
    s = len(layout.sizes)
    act = layout.n_active
    sizes = layout.sizes[:act]
    starts = layout.starts[:act]
    out = {k: np.zeros(s) for k in ("beta", "gamma", "cap", "m", "a", "aa")}
    if act == 0:
        return Aggregated(out["beta"], out["gamma"], out["cap"], np.zeros(0),
                          out["m"], out["a"], out["aa"])
    if act == layout.n_periods:  # one period per slot: the identity (same values, fewer array passes)
        return _unblocked(s, act, beta, gamma, cap)
    m = sizes.astype(np.float64)
    if np.isfinite(cap).all():  # the usual case (caps from volume and the trust region): fewer passes
        cap_sum = np.add.reduceat(cap, starts)
        if (cap_sum > 0).all():
            return _by_cap(s, act, sizes, starts, m, beta, gamma, cap, cap_sum)
    m_per = np.repeat(m, sizes)
    finite = np.isfinite(cap)
    n_fin = np.add.reduceat(finite.astype(np.int64), starts)
    cap_fin = np.where(finite, cap, 0.0)
    cap_sum = np.add.reduceat(cap_fin, starts)
    by_cap = (n_fin == sizes) & (cap_sum > 0)
    by_cap_per = np.repeat(by_cap, sizes)
    cap_sum_per = np.repeat(np.where(by_cap, cap_sum, 1.0), sizes)
    w = np.where(by_cap_per, cap_fin / cap_sum_per, 1.0 / m_per)
    out["beta"][:act] = np.add.reduceat(w * beta, starts)
    out["gamma"][:act] = np.add.reduceat(w * w * gamma, starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(w > 0, cap / np.where(w > 0, w, 1.0), np.inf)
    out["cap"][:act] = np.where(by_cap, cap_sum, np.minimum.reduceat(ratio, starts))
    # a_j = 1 - cumulative weight within the block (0 at the block's last period)
    cw = np.cumsum(w)
    block_base = np.repeat(cw[starts] - w[starts], sizes)
    a = np.minimum(np.maximum(1.0 - (cw - block_base), 0.0), 1.0)
    out["m"][:act] = m
    out["a"][:act] = np.add.reduceat(a, starts)
    out["aa"][:act] = np.add.reduceat(a * a, starts)
    return Aggregated(out["beta"], out["gamma"], out["cap"], w, out["m"], out["a"], out["aa"])


def _by_cap(s: int, act: int, sizes: IntArray, starts: IntArray, m: FloatArray, beta: FloatArray,
            gamma: FloatArray, cap: FloatArray, cap_sum: FloatArray) -> Aggregated:
    """:func:`aggregate` when every cap is finite and every block's total positive: cap weights
    in every block (the same operations as the general path takes for such blocks)."""
    out = {k: np.zeros(s) for k in ("beta", "gamma", "cap", "m", "a", "aa")}
    w = cap / np.repeat(cap_sum, sizes)
    out["beta"][:act] = np.add.reduceat(w * beta, starts)
    out["gamma"][:act] = np.add.reduceat(w * w * gamma, starts)
    out["cap"][:act] = cap_sum
    cw = np.cumsum(w)
    a = np.minimum(np.maximum(1.0 - (cw - np.repeat(cw[starts] - w[starts], sizes)), 0.0), 1.0)
    out["m"][:act] = m
    out["a"][:act] = np.add.reduceat(a, starts)
    out["aa"][:act] = np.add.reduceat(a * a, starts)
    return Aggregated(out["beta"], out["gamma"], out["cap"], w, out["m"], out["a"], out["aa"])


def _unblocked(s: int, act: int, beta: FloatArray, gamma: FloatArray, cap: FloatArray) -> Aggregated:
    """:func:`aggregate` when every active slot holds one period: weights 1, the data unchanged,
    ``m = 1`` and ``a = aa = 0`` (a block's last period has nothing left to trade in it)."""
    b, g, u = np.zeros(s), np.zeros(s), np.zeros(s)
    b[:act], g[:act], u[:act] = beta, gamma, cap
    m = np.zeros(s)
    m[:act] = 1.0
    return Aggregated(b, g, u, np.ones(act), m, np.zeros(s), np.zeros(s))


def expand(layout: Layout, x_slots: FloatArray, weights: FloatArray) -> FloatArray:
    """Per-period schedule from slot decisions: ``x_j = w_j x_k`` for period j in slot k."""
    act = layout.n_active
    return np.repeat(x_slots[:act], layout.sizes[:act]) * weights


def collapse(layout: Layout, x_periods: FloatArray) -> FloatArray:
    """Slot totals (length S) of a per-period schedule of length ``layout.n_periods``."""
    out = np.zeros(len(layout.sizes))
    act = layout.n_active
    if act:
        out[:act] = np.add.reduceat(x_periods, layout.starts[:act])
    return out
