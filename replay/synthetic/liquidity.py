"""Liquidity deviations: spread and depth around their intraday level, AR(1) per minute.

One model, used in both directions: :func:`measure_day` estimates it on a
real day (``bench/liquidity_stats.py`` on FROG), :func:`correlated_ar1`
simulates it for the generator (``replay.synthetic.day``).

The model
---------
For ``x`` = the quoted spread (ticks) or the top-5 depth (bid + ask shares of
the five best levels), observed as time-weighted means over the minutes
``m = 0..389`` of the session (the book sampled every second, previous tick),
with ``tau_m = m + 1/2`` minutes since the open and ``T = 390``::

    log x_m = L(tau_m) + d_m
    L(tau)  = c0 + c1 exp(-tau / 20) + c2 exp(-(T - tau) / 20)      (intraday level)
    d_m     = rho d_{m-1} + e_m,   e_m ~ N(0, sd^2 (1 - rho^2))       (deviation)

``rho`` is the per-minute persistence (a deviation's half-life is
``ln 2 / -ln rho`` minutes) and ``sd`` the stationary standard deviation of
``d`` (log units: ``sd = 0.3`` means the spread is typically 35 % above or
26 % below its level). The level is fitted per day by least squares on
``log x``; ``rho`` by the lag-1 regression of ``d_m`` on ``d_{m-1}`` pooled
over the days' consecutive minutes (pairs never span two days). Also
reported: the autocorrelations ``acf(1..5)`` and ``acf(2) / acf(1)``, an
estimate of ``rho`` that white measurement noise does not bias (for an
AR(1) both equal ``rho``).

The generator evaluates the deviation every second, an AR(1) whose
per-second persistence and sd are solved so that its *minute means* have
the measured ``rho`` and ``sd`` (:func:`per_second_params`), with
innovations correlated across spread and depth so that the stationary
correlation of the per-second deviations is the measured correlation (of
minute means; the two differ little).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from agent.core.model import NS_PER_S, BookLike

F64 = npt.NDArray[np.float64]
SESSION_MIN = 390
U_SCALE_MIN = 20.0  # the exp(-tau/20) time scale of the open and the close
TOP_LEVELS = 5


@dataclass(frozen=True, slots=True)
class Ar1Fit:
    """Per-minute AR(1) fit of a deviation series (see the module docstring)."""

    rho: float  # lag-1 regression slope
    sd: float  # stationary sd of the deviation
    innovation_sd: float  # sd of d_m - rho d_{m-1}
    pairs: int  # consecutive-minute pairs used
    acf: tuple[float, ...]  # autocorrelations at lags 1..5

    @property
    def half_life_min(self) -> float:
        """``ln 2 / -ln rho`` minutes (inf when rho >= 1, nan when rho <= 0)."""
        if self.rho >= 1:
            return math.inf
        return math.log(2.0) / -math.log(self.rho) if self.rho > 0 else math.nan

    @property
    def rho_from_acf(self) -> float:
        """``acf(2) / acf(1)``: rho, not biased by white measurement noise."""
        return self.acf[1] / self.acf[0] if len(self.acf) > 1 and self.acf[0] != 0 else math.nan


@dataclass(frozen=True, slots=True)
class SeriesFit:
    """Level and deviation of one liquidity series over one or more days."""

    level: tuple[float, float, float]  # (c0, c1, c2), averaged over the days
    median: float  # median of the minute means
    ar1: Ar1Fit


def level_basis(tau_min: F64) -> F64:
    """Columns ``1, exp(-tau/20), exp(-(T - tau)/20)`` of the intraday level ``L(tau)``."""
    tau = np.asarray(tau_min, dtype=np.float64)
    return np.stack([np.ones_like(tau), np.exp(-tau / U_SCALE_MIN),
                     np.exp(-(SESSION_MIN - tau) / U_SCALE_MIN)], axis=1)


def minute_means(book: BookLike, open_ns: int, minutes: int = SESSION_MIN, *,
                 tick: float = 0.01) -> tuple[F64, F64]:
    """Time-weighted minute means of the spread (ticks) and the top-5 depth (shares).

    The book is sampled at ``open_ns + s`` seconds (``s = 0..60 minutes - 1``),
    previous tick; seconds before the first row, or with an empty best level,
    are left out; a minute without any sample is NaN.
    """
    ts = np.asarray(book.ts_event, dtype=np.int64)
    grid = open_ns + np.arange(minutes * 60, dtype=np.int64) * NS_PER_S
    idx = np.searchsorted(ts, grid, side="right") - 1
    have = idx >= 0
    i = np.maximum(idx, 0)
    with np.errstate(invalid="ignore"):
        spread = (book.ask_px[i, 0] - book.bid_px[i, 0]) / tick
        depth = (book.bid_sz[i, :TOP_LEVELS].sum(axis=1) + book.ask_sz[i, :TOP_LEVELS].sum(axis=1))
        ok = have & np.isfinite(spread) & (spread > 0) & (depth > 0)

    def per_minute(x: F64) -> F64:
        v = np.where(ok, x, 0.0).reshape(minutes, 60).sum(axis=1)
        n = ok.reshape(minutes, 60).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.where(n > 0, v / n, np.nan))

    return per_minute(spread.astype(np.float64)), per_minute(depth.astype(np.float64))


def fit_level(log_x: F64) -> tuple[F64, F64]:
    """Least-squares level ``(c0, c1, c2)`` of a day's log minute means and the deviation ``d``.

    NaN minutes are left out of the fit and stay NaN in ``d``.
    """
    y = np.asarray(log_x, dtype=np.float64)
    basis = level_basis(np.arange(y.size, dtype=np.float64) + 0.5)
    ok = np.isfinite(y)
    if ok.sum() < 3:
        raise ValueError("fewer than 3 observed minutes: cannot fit an intraday level")
    coef, *_ = np.linalg.lstsq(basis[ok], y[ok], rcond=None)
    return np.asarray(coef, dtype=np.float64), np.asarray(y - basis @ coef, dtype=np.float64)


def fit_ar1(days: Sequence[F64], max_lag: int = 5) -> Ar1Fit:
    """AR(1) of deviation series (one array per day, NaN = missing), pooled within days.

    ``rho = sum d_m d_{m-1} / sum d_{m-1}^2`` over pairs of consecutive observed
    minutes of the same day (deviations are mean-zero by the level fit).
    """
    def pairs(lag: int) -> tuple[F64, F64]:
        a = [d[:-lag] for d in days if d.size > lag]
        b = [d[lag:] for d in days if d.size > lag]
        x, y = (np.concatenate(a), np.concatenate(b)) if a else (np.zeros(0), np.zeros(0))
        ok = np.isfinite(x) & np.isfinite(y)
        return x[ok], y[ok]

    x, y = pairs(1)
    if x.size < 3:
        raise ValueError("fewer than 3 consecutive-minute pairs: cannot fit an AR(1)")
    rho = float(x @ y / (x @ x))

    def corr(k: int) -> float:
        a, b = pairs(k)
        return float(np.corrcoef(a, b)[0, 1]) if a.size > 2 and a.std() > 0 and b.std() > 0 else math.nan

    acf = tuple(corr(k) for k in range(1, max_lag + 1))
    allv = np.concatenate([d[np.isfinite(d)] for d in days])
    return Ar1Fit(rho=rho, sd=float(np.sqrt(np.mean(allv**2))),
                  innovation_sd=float(np.std(y - rho * x)), pairs=int(x.size), acf=acf)


def measure_days(books: Sequence[BookLike], opens_ns: Sequence[int], *,
                 tick: float = 0.01) -> tuple[SeriesFit, SeriesFit, float]:
    """Fit the model to the spread and the depth of one symbol's days.

    Returns ``(spread, depth, corr)``; ``corr`` is the correlation of the two
    deviations over all observed minutes.
    """
    devs: dict[str, list[F64]] = {"spread": [], "depth": []}
    raw: dict[str, list[F64]] = {"spread": [], "depth": []}
    levels: dict[str, list[F64]] = {"spread": [], "depth": []}
    for book, open_ns in zip(books, opens_ns, strict=True):
        spread, depth = minute_means(book, open_ns, tick=tick)
        for name, x in (("spread", spread), ("depth", depth)):
            with np.errstate(divide="ignore", invalid="ignore"):
                coef, d = fit_level(np.log(x))
            levels[name].append(coef)
            devs[name].append(d)
            raw[name].append(x)
    s, q = np.concatenate(devs["spread"]), np.concatenate(devs["depth"])
    ok = np.isfinite(s) & np.isfinite(q)
    corr = float(np.corrcoef(s[ok], q[ok])[0, 1]) if ok.sum() > 2 else math.nan

    def series(name: str) -> SeriesFit:
        c = np.mean(levels[name], axis=0)
        x = np.concatenate(raw[name])
        return SeriesFit(level=(float(c[0]), float(c[1]), float(c[2])),
                         median=float(np.nanmedian(x)), ar1=fit_ar1(devs[name]))

    return series("spread"), series("depth"), corr


def correlated_ar1(rng: np.random.Generator, n: int, rho: tuple[float, float],
                   sd: tuple[float, float], corr: float) -> F64:
    """Two stationary AR(1) paths of length ``n`` (shape ``(2, n)``) with a given correlation.

    scipy's ``lfilter`` runs the recursion.

    ``x_t = rho_j x_{t-1} + e_t`` with innovation sds ``sd_j sqrt(1 - rho_j^2)`` and
    innovation correlation ``c = corr (1 - rho_0 rho_1) / sqrt((1 - rho_0^2)(1 - rho_1^2))``
    (clipped to [-1, 1]), which makes the stationary correlation of the paths
    ``corr``; ``x_0`` is drawn from the stationary law.
    """
    r = np.asarray(rho, dtype=np.float64)
    s = np.asarray(sd, dtype=np.float64)
    if not ((np.abs(r) < 1).all() and (s >= 0).all()):
        raise ValueError("need |rho| < 1 and sd >= 0")
    c = float(np.clip(corr * (1 - r[0] * r[1]) / np.sqrt((1 - r[0] ** 2) * (1 - r[1] ** 2)), -1, 1))
    z = rng.standard_normal((2, n))
    z[1] = c * z[0] + math.sqrt(1 - c * c) * z[1]
    # stationary start: x_0 ~ N(0, sd^2) with the stationary correlation
    z[1, 0] = corr * z[0, 0] + math.sqrt(max(1 - corr * corr, 0.0)) * rng.standard_normal()
    out = np.empty((2, n))
    for j in range(2):
        innov = s[j] * math.sqrt(1 - r[j] ** 2) * z[j]
        innov[0] = s[j] * z[j, 0]
        out[j] = lfilter([1.0], [1.0, -r[j]], innov)
    return out


def mean_moments(phi: float, n: int = 60) -> tuple[float, float]:
    """Variance and lag-1 autocorrelation of ``n``-step means of a unit-variance AR(1) ``phi``.

    With ``c(h) = phi^|h|`` the autocovariance of the steps::

        Var(mean)      = (1/n^2) sum_{i,j<n} c(i - j)
        Cov(mean, next) = (1/n^2) sum_{i,j<n} c(n + j - i)
    """
    i = np.arange(n)
    lag = i[None, :] - i[:, None]
    var = float(np.power(phi, np.abs(lag)).sum()) / n**2
    cov = float(np.power(phi, n + lag).sum()) / n**2
    return var, cov / var


def per_second_params(rho_minute: float, sd_minute: float, n: int = 60) -> tuple[float, float]:
    """Per-second ``(phi, sd)`` whose one-minute means have lag-1 autocorrelation ``rho_minute``
    and sd ``sd_minute`` (the quantities :func:`measure_days` estimates from minute means).

    Averaging raises the lag-1 autocorrelation of a persistent process (for
    ``phi = 0.8^(1/60)`` the minute means have 0.86), so ``phi`` is solved for
    (``brentq`` on :func:`mean_moments`, which increases with ``phi``); needs
    ``0 < rho_minute < 1``.
    """
    from scipy.optimize import brentq

    if not 0 < rho_minute < 1:
        raise ValueError(f"rho per minute must be in (0, 1), got {rho_minute}")
    phi = float(brentq(lambda x: mean_moments(x, n)[1] - rho_minute, 1e-9, 1 - 1e-12, xtol=1e-14))
    return phi, sd_minute / math.sqrt(mean_moments(phi, n)[0])
