"""Per-period impact, volume and volatility fits from historical data (``mpc-agent fit``).

:func:`fit_periods` cuts a day into periods of ``period_s`` seconds aligned
to the clock (UTC multiples of the period), and for each period fits
``g(x) = beta x + gamma x^2`` and ``alpha x^(1+delta)`` to the average cost
curve of its snapshots (the same cost model as the planner and the fill
simulator), counts traded volume and measures mid volatility. The top-level
``beta``, ``gamma`` and ``cap`` lists are valid input for
``mpc-agent plan --impact`` (``cap = participation * expected volume``).

Output is strict JSON: missing values are ``null``, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import DataError
from agent.core.forecast.profile import bucket_stats
from agent.core.impact.estimator import default_sizes, depth_sizes, fit_power_law, fit_quadratic
from agent.core.model import NS_PER_S, Side
from feeds.book import BookBatch
from replay.session import SAMPLE

SAMPLE_PATH = SAMPLE  # the embedded sample's last day

__all__ = ["SAMPLE_PATH", "fit_periods", "impact_from_files"]


def _num(x: float) -> float | None:
    """Finite float or None (strict JSON)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS_PER_S, tz=UTC).isoformat().replace("+00:00", "Z")


def _nearest_fill(values: np.ndarray) -> np.ndarray:
    """Replace NaNs by the nearest finite value (earlier one on ties); all-NaN stays NaN."""
    ok = np.flatnonzero(np.isfinite(values))
    if ok.size == 0 or ok.size == values.size:
        return values
    idx = np.arange(values.size)
    right = np.clip(np.searchsorted(ok, idx), 0, ok.size - 1)
    left = np.clip(right - 1, 0, ok.size - 1)
    pick = np.where(np.abs(ok[left] - idx) <= np.abs(ok[right] - idx), ok[left], ok[right])
    return np.asarray(values[pick])


def _smoothed(volume: np.ndarray, covered: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of volume over observed periods (NaN where none is observed)."""
    kernel = np.ones(window)
    lo = (window - 1) // 2
    n = volume.size
    num = np.convolve(np.where(covered, volume, 0.0), kernel, mode="full")[lo:lo + n]
    den = np.convolve(covered.astype(np.float64), kernel, mode="full")[lo:lo + n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(den > 0, num / den, np.nan))


def fit_periods(
    batch: BookBatch,
    *,
    side: Side,
    period_s: float = 60.0,
    quantity: float | None = None,
    participation: float = 0.1,
    n_periods: int | None = None,
    sizes: np.ndarray | None = None,
    sample_s: float = 10.0,
    smooth_s: float = 1800.0,
    penalty_ticks: float = 3.0,
    tick: float = 0.01,
) -> dict[str, Any]:
    """Fit impact, volume and volatility per period of one symbol's snapshots.

    Parameters
    ----------
    batch : validated snapshots of a single symbol, in time order.
    side : ``buy`` walks the asks, ``sell`` the bids.
    period_s : period length; periods start at UTC multiples of it.
    quantity : parent quantity; the fitting grid is ``default_sizes(quantity,
        n)`` (up to 4x the TWAP slice). Without it, the grid goes up to the
        median visible depth of the side.
    participation : max participation; ``cap = participation * volume_expected``
        where the expected volume is the period's traded volume averaged over a
        centred ``smooth_s`` window (a single period of a thin name is mostly 0).
    n_periods : number of periods to report (default: all periods the data spans).
        Periods without data take beta/gamma/cap from the nearest period with data.
    sizes : explicit fitting grid (overrides ``quantity``).
    sample_s : mid sampling step for the volatility.
    """
    if len(batch) == 0:
        raise DataError("no snapshots to fit; check --data, --symbol and the rejected-row counts")
    symbols = batch.symbols()
    if len(symbols) > 1:
        raise DataError(f"data holds several symbols {symbols[:5]}; choose one with --symbol")
    if not period_s > 0 or not 0 < participation <= 1:
        raise ValueError("period_s must be positive and participation in (0, 1]")
    period_ns = round(period_s * NS_PER_S)
    ts = batch.ts_event
    origin = int(ts[0]) // period_ns * period_ns
    spanned = int((int(ts[-1]) - origin) // period_ns) + 1
    n = spanned if n_periods is None else int(n_periods)
    if n <= 0:
        raise ValueError("n_periods must be positive")
    if sizes is not None:
        grid = np.asarray(sizes, dtype=np.float64)
    elif quantity is not None:
        grid = default_sizes(quantity, n)
    else:
        grid = depth_sizes(batch, side=side)
    st = bucket_stats(batch, lambda t: (t - origin) // period_ns, n, grid, side=side,
                      sample_s=sample_s, penalty_ticks=penalty_ticks, tick=tick)
    fits = np.full((6, n), np.nan)  # beta, gamma, r2q, alpha, delta, r2p
    for i in np.flatnonzero(st.snapshots > 0):
        q = fit_quadratic(grid, st.curve[i])
        p = fit_power_law(grid, st.curve[i])
        fits[:, i] = (q.beta, q.gamma, q.r2, p.alpha, p.delta, p.r2)
    if not np.isfinite(fits[0]).any():
        raise DataError(f"no period has a usable {side} book (both sides of the book are needed)")
    sigma = st.sigma(period_s)
    covered = st.covered_s > 0
    volume = np.where(covered | (st.volume > 0), st.volume, np.nan)
    expected = _smoothed(st.volume, covered | (st.volume > 0), max(1, round(smooth_s / period_s)))
    beta, gamma, exp_fill = (_nearest_fill(fits[0]), _nearest_fill(fits[1]), _nearest_fill(expected))
    cap = participation * np.nan_to_num(exp_fill, nan=0.0)
    periods = [
        {
            "start": _iso(origin + k * period_ns),
            "snapshots": int(st.snapshots[k]), "excluded": int(st.excluded[k]),
            "beta": _num(fits[0, k]), "gamma": _num(fits[1, k]),
            "alpha": _num(fits[3, k]), "delta": _num(fits[4, k]),
            "r2_quadratic": _num(fits[2, k]), "r2_power": _num(fits[5, k]),
            "volume": _num(volume[k]), "volume_expected": _num(expected[k]),
            "sigma": _num(sigma[k]),
            "extrapolated_fraction": _num(st.extrapolated_fraction[k]),
            "mid": _num(st.mid[k]),
        }
        for k in range(n)
    ]
    valid = st.snapshots.sum()
    ext_total = float(np.nansum(st.extrapolated_fraction * st.snapshots) / valid) if valid else math.nan
    finite_sigma = sigma[np.isfinite(sigma)]
    return {
        "symbol": symbols[0], "side": side, "period_s": float(period_s),
        "start": _iso(origin), "n_periods": n, "quantity": quantity, "participation": participation,
        "sizes": [float(x) for x in grid],
        "snapshots": int(valid), "excluded": int(st.excluded.sum()),
        "extrapolated_fraction": _num(ext_total),
        "sigma": _num(float(np.median(finite_sigma))) if finite_sigma.size else None,
        "beta": [float(x) for x in beta], "gamma": [float(x) for x in gamma],
        "cap": [float(x) for x in cap],
        "periods": periods,
    }


def impact_from_files(
    paths: Sequence[str | Path] | str | Path | None,
    fmt: str = "auto",
    symbol: str | None = None,
    side: Side = "buy",
    period_s: float = 60.0,
    n_periods: int | None = None,
    quantity: float | None = None,
    participation: float = 0.1,
) -> dict[str, Any]:
    """Read ``paths`` (one path or several; default: the embedded sample day) and run :func:`fit_periods`.

    ``symbol`` defaults to the data's first symbol by name (as ``replay``'s). The result also
    carries ``"files"`` and ``"rejected"`` (rows dropped by validation, per reason).
    """
    from feeds.files.readers import read_book

    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        if not SAMPLE_PATH.exists():
            raise DataError(f"no --data given and the embedded sample {SAMPLE_PATH} is missing; pass --data PATH")
        paths = [SAMPLE_PATH]
    res = read_book(list(paths), fmt, symbol=symbol)
    batch = res.batch
    if len(batch) == 0:
        raise DataError(f"no usable snapshot in {res.files or list(paths)}"
                        + (f" for symbol {symbol!r}" if symbol else ""))
    if symbol is None:
        batch = batch.for_symbol(min(batch.symbols()))
    out = fit_periods(batch, side=side, period_s=period_s, quantity=quantity,
                      participation=participation, n_periods=n_periods)
    out["files"] = [str(f) for f in res.files]
    out["rejected"] = dict(res.rejected)
    return out
