"""Intraday profile and the per-bucket market statistics it is learned from.

:func:`bucket_stats` reduces a batch of snapshots to per-bucket statistics
(average cost curve, traded volume, covered time, squared mid returns) for
any bucketing of event time: periods of a day (``mpc-agent fit``) or
times of day (:class:`IntradayProfile`). Everything is vectorised
(``bincount`` over rows); only the per-bucket fits loop, over <= a few
hundred buckets.

Time of day is seconds since local midnight in the profile's time zone
(``tz``, e.g. America/New_York for US equities, so a profile learned in
summer applies in winter: the open stays at 09:30 local); ``tz="UTC"``
(the default of direct construction) uses UTC time of day.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.core.impact.curves import curves_from_book, depth_sizes
from agent.core.impact.fit import fit_quadratic
from agent.core.model import NS_PER_S, BookLike, Side

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
KINDS = ("beta", "gamma", "volume", "sigma")
DAY_NS = 86_400 * NS_PER_S
#: Smallest factor kept (relative to the day's mean), so that ratios stay finite.
FACTOR_FLOOR = 0.05


def mid_of(book: BookLike) -> FloatArray:
    """Mid of the top of book; NaN when either side is empty."""
    with np.errstate(invalid="ignore"):
        ok = (book.bid_sz[:, 0] > 0) & (book.ask_sz[:, 0] > 0)
        return np.asarray(np.where(ok, 0.5 * (book.bid_px[:, 0] + book.ask_px[:, 0]), np.nan))


def sample_grid(ts: IntArray, mid: FloatArray, sample_ns: int, first_ns: int,
                max_gap_ns: int) -> tuple[IntArray, FloatArray, npt.NDArray[np.bool_]]:
    """Previous-tick sample of the mid on the grid ``first_ns + j * sample_ns < ts[-1]``.

    Parameters
    ----------
    ts, mid : event times (non-decreasing) and mids of the usable events.
    first_ns : first grid time (a multiple of ``sample_ns`` for chunk invariance).
    max_gap_ns : a grid point inside a gap between consecutive events longer
        than this (a session break) is *stale*.

    Returns
    -------
    grid : grid times strictly before the last event (later events cannot change them).
    value : mid of the last event at or before each grid time (NaN before the first).
    fresh : False for stale points.
    """
    if ts.size == 0 or first_ns >= ts[-1]:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    count = int((int(ts[-1]) - 1 - first_ns) // sample_ns) + 1
    grid = first_ns + np.arange(count, dtype=np.int64) * sample_ns
    pos = np.searchsorted(ts, grid, side="right") - 1
    have = pos >= 0
    value = np.where(have, mid[np.maximum(pos, 0)], np.nan)
    nxt = np.minimum(pos + 1, ts.size - 1)  # exists: every grid time is before ts[-1]
    fresh = have & ((ts[nxt] - ts[np.maximum(pos, 0)]) <= max_gap_ns)
    return grid, value, fresh


def covered_intervals(ts: IntArray, max_gap_ns: int) -> tuple[IntArray, IntArray]:
    """Consecutive event intervals ``[a, b)`` no longer than ``max_gap_ns`` (session time covered)."""
    if ts.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = ts[:-1], ts[1:]
    keep = (b - a) <= max_gap_ns
    return a[keep], b[keep]


@dataclass(frozen=True, slots=True, eq=False)
class BucketStats:
    """Per-bucket reductions of a batch (``m`` buckets, ``g`` sizes).

    ``curve`` is the equally weighted average cost curve of the bucket's
    usable snapshots (NaN rows for empty buckets); ``excluded`` counts rows
    without a usable book (walked side empty or no mid); ``volume`` the traded
    shares (action T); ``covered_s`` the session seconds observed;
    ``sq_returns`` / ``n_returns`` the squared previous-tick mid returns on
    the ``sample_s`` grid.
    """

    sizes: FloatArray
    snapshots: IntArray
    excluded: IntArray
    curve: FloatArray
    extrapolated_fraction: FloatArray
    mid: FloatArray
    volume: FloatArray
    covered_s: FloatArray
    sq_returns: FloatArray
    n_returns: IntArray
    sample_s: float

    def sigma(self, period_s: float) -> FloatArray:
        """Mid volatility per period, dollars: ``sqrt(sum r^2 / (n * sample_s) * period_s)``; NaN without returns."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.sqrt(self.sq_returns / (self.n_returns * self.sample_s) * period_s))

    def volume_rate(self) -> FloatArray:
        """Traded shares per covered second; NaN for buckets never observed."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.where(self.covered_s > 0, self.volume / self.covered_s, np.nan))


def bucket_stats(book: BookLike, bucket_of: Callable[[IntArray], IntArray], n_buckets: int,
                 sizes: FloatArray, *, side: Side, sample_s: float = 10.0, max_gap_s: float = 900.0,
                 penalty_ticks: float = 3.0, tick: float = 0.01) -> BucketStats:
    """Reduce ``book`` to :class:`BucketStats`; ``bucket_of(ts_ns)`` maps times to 0..n_buckets-1 (others ignored)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    ts = np.asarray(book.ts_event, dtype=np.int64)

    def index(t: IntArray) -> IntArray:
        i = np.asarray(bucket_of(t), dtype=np.int64)
        return np.where((i >= 0) & (i < n_buckets), i, n_buckets)  # n_buckets = dropped

    def count(i: IntArray, w: FloatArray | None = None) -> FloatArray:
        return np.bincount(i, weights=w, minlength=n_buckets + 1)[:n_buckets].astype(np.float64)

    curves = curves_from_book(book, sizes, side=side, penalty_ticks=penalty_ticks, tick=tick)
    iv = index(ts[curves.valid])
    snaps = count(iv)
    cost_v, ext_v = curves.cost[curves.valid], curves.extrapolated[curves.valid]
    sums = np.stack([count(iv, cost_v[:, j]) for j in range(sizes.size)], axis=1)
    ext = count(iv, ext_v.sum(axis=1).astype(np.float64))
    mids = count(iv, curves.mid[curves.valid])
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = sums / snaps[:, None]
        ext_frac = ext / (snaps * sizes.size)
        mid = mids / snaps
    trades = np.asarray(book.action) == "T"
    volume = count(index(ts[trades]), np.asarray(book.size, dtype=np.float64)[trades])
    a, b = covered_intervals(ts, int(max_gap_s * NS_PER_S))
    covered = count(index(a), (b - a).astype(np.float64) / NS_PER_S)
    sample_ns = round(sample_s * NS_PER_S)
    m_all = mid_of(book)
    ok = np.isfinite(m_all)
    t_ok = ts[ok]
    first = -(-int(t_ok[0]) // sample_ns) * sample_ns if t_ok.size else 0
    grid, value, fresh = sample_grid(t_ok, m_all[ok], sample_ns, first, int(max_gap_s * NS_PER_S))
    good = fresh[1:] & fresh[:-1]
    r = np.diff(value)[good]
    ir = index(grid[1:][good])
    excluded = count(index(ts[~curves.valid])).astype(np.int64)
    return BucketStats(sizes=sizes, snapshots=snaps.astype(np.int64), excluded=excluded, curve=curve,
                       extrapolated_fraction=ext_frac, mid=mid, volume=volume, covered_s=covered,
                       sq_returns=count(ir, r * r), n_returns=count(ir).astype(np.int64),
                       sample_s=float(sample_s))


def quadratic_per_bucket(stats: BucketStats) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``beta, gamma, r2`` of the quadratic fitted to each bucket's average curve (NaN when empty)."""
    m = stats.curve.shape[0]
    out = np.full((3, m), np.nan)
    for i in np.flatnonzero(stats.snapshots > 0):
        f = fit_quadratic(stats.sizes, stats.curve[i])
        out[:, i] = (f.beta, f.gamma, f.r2)
    return out[0], out[1], out[2]


def time_of_day_s(ts_ns: IntArray | int, tz: str = "UTC") -> FloatArray:
    """Seconds since local midnight in ``tz`` of each event time (exact across DST changes).

    The UTC offset is looked up once per distinct UTC date (at 12:00 UTC, i.e.
    during the US and European sessions), so the cost does not grow with the
    number of timestamps.
    """
    t = np.asarray(ts_ns, dtype=np.int64)
    if tz == "UTC":
        return np.asarray((t % DAY_NS).astype(np.float64) / NS_PER_S)
    days = t // DAY_NS
    uniq, inv = np.unique(days, return_inverse=True)
    off = np.array([_utc_offset_ns(int(d), tz) for d in uniq], dtype=np.int64)
    return np.asarray(((t + off[inv].reshape(t.shape)) % DAY_NS).astype(np.float64) / NS_PER_S)


@functools.lru_cache(maxsize=4096)
def _utc_offset_ns(utc_day: int, tz: str) -> int:
    noon = datetime.fromtimestamp(utc_day * 86_400 + 43_200, ZoneInfo(tz))
    return int((noon.utcoffset() or timedelta(0)).total_seconds()) * NS_PER_S


@dataclass(frozen=True, slots=True, eq=False)
class IntradayProfile:
    """Multiplicative time-of-day factors for ``beta``, ``gamma``, ``volume`` and ``sigma``.

    ``factors[kind][j]`` is the level at time of day ``centres_s[j]`` (seconds
    since midnight in ``tz``) relative to the day's mean: each learning day's
    bucket values are divided by that day's mean over its observed buckets,
    averaged over the days and renormalised to mean 1 over the buckets, so
    ``mean_j factors[kind][j] = 1`` (up to the floor ``FACTOR_FLOOR``).
    Between bucket centres the factor is interpolated linearly, beyond the
    first/last centre it is constant. The flat profile has no buckets and
    every ratio is 1.

    Provenance and spread (all optional, carried through JSON):
    ``levels[kind]`` the mean over days of the day's mean level (beta in $
    per share, gamma in $ per share^2, volume in shares per second, sigma in $
    per sqrt(second); empty for a pooled profile, which is a shape only);
    ``dispersion[kind][j]`` the standard deviation of the normalised factor
    across the learning days (across symbols for a pooled profile);
    ``symbols``/``dates`` where it was learned; ``pooled`` True when the shape
    is pooled over symbols (a prior for a symbol without history of its own).
    """

    bucket_s: float = 1800.0
    centres_s: FloatArray = field(default_factory=lambda: np.zeros(0))
    factors: dict[str, FloatArray] = field(default_factory=dict)
    days: int = 0
    tz: str = "UTC"
    levels: dict[str, float] = field(default_factory=dict)
    dispersion: dict[str, FloatArray] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    pooled: bool = False

    @classmethod
    def flat(cls) -> IntradayProfile:
        return cls()

    @property
    def is_flat(self) -> bool:
        return self.centres_s.size == 0

    def factor(self, kind: str, ts_ns: IntArray | int) -> FloatArray:
        """Profile factor of ``kind`` at the given event times."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        t = np.asarray(ts_ns, dtype=np.int64)
        f = self.factors.get(kind)
        if self.is_flat or f is None:
            return np.ones(t.shape)
        return np.asarray(np.interp(time_of_day_s(t, self.tz), self.centres_s, f), dtype=np.float64)

    def ratio(self, kind: str, ts_from_ns: int, ts_to_ns: IntArray) -> FloatArray:
        """``factor(kind, ts_to) / factor(kind, ts_from)``: scales today's level to later slots."""
        return np.asarray(self.factor(kind, ts_to_ns) / self.factor(kind, ts_from_ns))

    @classmethod
    def learn(cls, books: Sequence[BookLike], *, bucket_s: float = 1800.0, side: Side | str = "buy",
              sizes: FloatArray | None = None, sample_s: float = 10.0, max_gap_s: float = 900.0,
              penalty_ticks: float = 3.0, tick: float = 0.01, tz: str = "UTC",
              symbols: Sequence[str] = (), dates: Sequence[str] = ()) -> IntradayProfile:
        """Learn the profile from one book per day (flat when ``books`` is empty).

        Per day and time-of-day bucket: ``beta, gamma`` from the quadratic fit
        of the bucket's average cost curve (``sizes``, default: up to the
        median visible depth of the first day; ``side="both"`` averages the
        buy and sell fits), volume as shares per covered second, sigma from
        the realised variance rate. Each day's values are divided by that
        day's mean over its observed buckets, averaged over the days,
        renormalised to mean 1 and floored at ``FACTOR_FLOOR``.
        ``symbols``/``dates`` only label the result.
        """
        books = [b for b in books if len(b) > 0]
        if not books:
            return cls.flat()
        m = math.ceil(86_400 / bucket_s)
        sides: tuple[Side, ...] = ("buy", "sell") if side == "both" else (cast(Side, side),)
        grids = {s: depth_sizes(books[0], side=s) if sizes is None else np.asarray(sizes, np.float64)
                 for s in sides}

        def bucket_of(t: IntArray) -> IntArray:
            return (time_of_day_s(t, tz) // bucket_s).astype(np.int64)

        raw = np.stack([_day_values(b, bucket_of, m, grids, sample_s=sample_s, max_gap_s=max_gap_s,
                                    penalty_ticks=penalty_ticks, tick=tick) for b in books])
        mean = _nanmean(raw, axis=2, keepdims=True)  # (days, kinds, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            shape = np.where(mean > 0, raw / mean, np.nan)
        seen = np.isfinite(shape).any(axis=(0, 1))
        if not seen.any():
            return cls.flat()
        centres = np.asarray((np.arange(m)[seen] + 0.5) * bucket_s, dtype=np.float64)
        factors = _normalised(_nanmean(shape, axis=0)[:, seen], centres)
        dispersion = ({k: np.asarray(_nanstd(shape[:, j, seen]), np.float64) for j, k in enumerate(KINDS)}
                      if len(books) > 1 else {})
        day_means = _nanmean(mean[:, :, 0], axis=0)
        levels = {k: float(v) for k, v in zip(KINDS, day_means, strict=True) if math.isfinite(v)}
        return cls(bucket_s=float(bucket_s), centres_s=centres, factors=factors, days=len(books),
                   tz=tz, levels=levels, dispersion=dispersion, symbols=tuple(symbols),
                   dates=tuple(dates))

    @classmethod
    def pool(cls, profiles: Sequence[IntradayProfile]) -> IntradayProfile:
        """Pooled shape: the equally weighted mean over ``profiles`` (one per symbol), mean 1.

        Each profile is evaluated at the union of the bucket centres; all must
        share ``bucket_s`` and ``tz``. The result has no ``levels`` (a shape
        only), ``pooled=True``, and ``dispersion`` across the profiles.
        """
        use = [p for p in profiles if not p.is_flat]
        if not use:
            return cls.flat()
        if len({(p.bucket_s, p.tz) for p in use}) > 1:
            raise ValueError("cannot pool profiles with different bucket_s or tz")
        centres = np.unique(np.concatenate([p.centres_s for p in use]))
        at = np.stack([[np.interp(centres, p.centres_s, p.factors.get(k, np.ones_like(p.centres_s)))
                        for k in KINDS] for p in use])  # (profiles, kinds, buckets)
        first = use[0]
        return cls(bucket_s=first.bucket_s, centres_s=centres, factors=_normalised(at.mean(axis=0), centres),
                   days=sum(p.days for p in use), tz=first.tz,
                   dispersion={k: at[:, j].std(axis=0) for j, k in enumerate(KINDS)} if len(use) > 1 else {},
                   symbols=tuple(dict.fromkeys(s for p in use for s in p.symbols)),
                   dates=tuple(sorted({d for p in use for d in p.dates})), pooled=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists of floats)."""
        return {"bucket_s": self.bucket_s, "tz": self.tz, "days": self.days, "pooled": self.pooled,
                "symbols": list(self.symbols), "dates": list(self.dates),
                "centres_s": self.centres_s.tolist(),
                "factors": {k: v.tolist() for k, v in self.factors.items()},
                "levels": dict(self.levels),
                "dispersion": {k: v.tolist() for k, v in self.dispersion.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntradayProfile:
        """Inverse of :meth:`to_dict` (fields added later are optional)."""
        def arrays(key: str) -> dict[str, FloatArray]:
            out = {str(k): np.asarray(v, dtype=np.float64) for k, v in d.get(key, {}).items()}
            unknown = set(out) - set(KINDS)
            if unknown:
                raise ValueError(f"unknown profile kinds {sorted(unknown)} in {key!r}")
            return out

        centres = np.asarray(d.get("centres_s", []), dtype=np.float64)
        factors = arrays("factors")
        if any(v.shape != centres.shape for v in factors.values()):
            raise ValueError("every factor list must have one value per bucket centre")
        return cls(bucket_s=float(d.get("bucket_s", 1800.0)), centres_s=centres, factors=factors,
                   days=int(d.get("days", 0)), tz=str(d.get("tz", "UTC")),
                   levels={str(k): float(v) for k, v in d.get("levels", {}).items()},
                   dispersion=arrays("dispersion"), symbols=tuple(d.get("symbols", ())),
                   dates=tuple(d.get("dates", ())), pooled=bool(d.get("pooled", False)))


def _day_values(book: BookLike, bucket_of: Callable[[IntArray], IntArray], m: int,
                grids: dict[Side, FloatArray], *, sample_s: float, max_gap_s: float,
                penalty_ticks: float, tick: float) -> FloatArray:
    """One day's (beta, gamma, volume rate, sigma rate) per bucket, shape ``(4, m)``; NaN = unseen."""
    fits = []
    st: BucketStats | None = None
    for side, grid in grids.items():
        st = bucket_stats(book, bucket_of, m, grid, side=side, sample_s=sample_s,
                          max_gap_s=max_gap_s, penalty_ticks=penalty_ticks, tick=tick)
        fits.append(quadratic_per_bucket(st)[:2])
    assert st is not None
    beta, gamma = _nanmean(np.array(fits), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_rate = np.where(st.n_returns > 0, st.sq_returns / (st.n_returns * sample_s), np.nan)
    return np.stack([beta, gamma, st.volume_rate(), np.sqrt(var_rate)])


def _normalised(rows: FloatArray, centres: FloatArray) -> dict[str, FloatArray]:
    """Per kind: NaN buckets interpolated, divided by the mean (1 when unknown), floored."""
    out: dict[str, FloatArray] = {}
    for j, kind in enumerate(KINDS):
        row = rows[j]
        fill = np.isfinite(row)
        row = np.interp(centres, centres[fill], row[fill]) if fill.any() else np.ones_like(centres)
        mean = float(row.mean())
        out[kind] = np.maximum(row / mean if mean > 0 else np.ones_like(row), FACTOR_FLOOR)
    return out


def _nanmean(a: FloatArray, axis: int, keepdims: bool = False) -> FloatArray:
    """``np.nanmean`` without the 'Mean of empty slice' warning (all-NaN buckets are expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(a, axis=axis, keepdims=keepdims))


def _nanstd(a: FloatArray) -> FloatArray:
    """Sample sd over axis 0 ignoring NaN (0 where fewer than two values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nan_to_num(np.nanstd(a, axis=0, ddof=1), nan=0.0))
