"""Seeded generator of realistic synthetic MBP-10 days (the embedded sample).

``generate_day(seed, symbols, date)`` simulates one US session (09:30-16:00
New York time) for each symbol and returns a ``SyntheticDay`` (columns of
integer cents / shares / ns); ``.to_batch()`` gives the ``feeds.book.BookBatch``
and ``replay.synthetic.csv_out.write_csv_zst`` writes Databento's MBP-10 CSV layout.
Everything is drawn from ``numpy.random.Generator(PCG64)`` seeded by
``SeedSequence([seed, crc32(symbol)])``, so a symbol's day does not depend on
which other symbols are generated with it.

The model (tau = minutes since the open, T = 390, prices in ticks of $0.01)
------------------------------------------------------------------------------
Intraday shapes (U-shaped, ``= 1`` at midday)::

    activity  u(tau) = 1 + 2.0 exp(-tau / 20) + 1.5 exp(-(T - tau) / 20)
    volatility v(tau) = 1 + 1.8 exp(-tau / 20) + 1.5 exp(-(T - tau) / 15)

Event times: clusters arrive as an inhomogeneous Poisson process with
intensity ``prop. u(tau)`` (inverse-CDF sampling of the integrated intensity);
each cluster holds ``1 + Geometric`` events (mean ``CLUSTER_MEAN``) separated
by exponential gaps (mean ``CLUSTER_GAP_S``): the bursts real feeds show.

Fair value (ticks) at event times ``t_i``, Student-t(4) shocks scaled to unit
variance, ``sigma`` set so that the open-to-close sd is ``daily_vol * p0``::

    f_i = f_{i-1} + sigma v(tau_i) sqrt(t_i - t_{i-1}) z_i,
    sigma^2 = (daily_vol * p0 / tick)^2 / integral_0^T v(tau)^2 dtau

Target spread (whole ticks, widening with volatility; ``U_i ~ U[0, 1)``)::

    s_i = max(1, floor(s0 * v(tau_i)^eta + U_i)),   a_b = floor(f - (s - 1)/2),  a_a = a_b + s

Events (``replay.synthetic.book.simulate``): a market order with probability
``trade_prob``, a buy with probability ``1 / (1 + exp(-(f - mid) / kappa))``;
otherwise a book event on a random side: a modify (share ``modify_prob``), a
cancel with probability ``Q / (Q + Q*)`` choosing a level with weight
``size * h(d)`` (``h = 20`` for quotes through the anchor, 5 beyond ``K``
ticks, else 1: cancel rate proportional to queue size, stale quotes fade
first), or an add at distance ``d ~ (1 + d)^k_d exp(-d / L)``, d = 0..K-1,
behind the anchor, so equilibrium depth grows with distance from the touch.
``Q`` is the side's depth within ``K`` ticks; because adds arrive at a fixed
rate and cancels scale with ``Q``, depth reverts to ``~Q*`` gradually after a
sweep. An add at or through the opposite best is marketable: it trades
through the levels up to its limit (Databento ``T`` + ``C`` rows per level,
``T`` side = aggressor) and the remainder rests. While the spread is wider
than ``s``, an add improves the quote instead with probability
``improve_prob``, at the price inside the spread nearest its anchor, so a
spread opened by a trade closes within seconds, not at once. The fair value
drives the mid through aggressive flow and stale-quote cancels; the book can
never lock or cross. Only events that touch the ten visible levels produce a
row (MBP-10), so a row count is below the simulated event count.

Sizes: adds/cancels are round lots ``100 * (1 + floor(Lomax(alpha_add)))``
(capped at 100 lots) except odd lots ``U{1..99}`` with probability
``odd_lot_prob``; market orders are ``mo_scale * (1 + Lomax(alpha_mo))``
rounded to lots (odd lots likewise), capped at ``mo_cap`` and at 80 % of the
visible opposite depth; modifies change a level by +/- whole lots.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from datetime import date as Date
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from feeds.book import BookBatch
from replay.synthetic.book import BookParams, EventDraws, simulate

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
NS = 1_000_000_000
SESSION_MIN = 390.0
CLUSTER_MEAN = 1.6
CLUSTER_GAP_S = 3e-4
PUBLISHER_ID = 0  # synthetic: not a real Databento publisher
SEQUENCE_START = 1_000_000


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """Per-symbol parameters of the model (see the module docstring)."""

    instrument_id: int
    price0: float  # opening fair value, dollars
    daily_vol: float  # open-to-close sd of the fair value, fraction of price0
    events: float  # expected number of simulated events per day
    spread0: float  # s0, ticks
    spread_eta: float  # eta
    trade_prob: float
    modify_prob: float
    profile_ticks: int  # K
    depth_k: float  # k_d
    depth_l: float  # L, ticks
    depth_target: float  # Q*, shares per side within K ticks
    alpha_add: float
    odd_lot_prob: float
    mo_scale: float
    alpha_mo: float
    mo_cap: int
    side_scale_ticks: float  # kappa
    improve_prob: float  # p_imp


PROFILES: dict[str, SymbolProfile] = {
    # liquid: ~1-2 tick spread, deep contiguous book, ~$50
    "SYNA": SymbolProfile(
        instrument_id=900001, price0=50.0, daily_vol=0.015, events=95_000,
        spread0=1.05, spread_eta=1.0, trade_prob=0.05, modify_prob=0.05,
        profile_ticks=30, depth_k=0.3, depth_l=10.0, depth_target=60_000,
        alpha_add=1.6, odd_lot_prob=0.08, mo_scale=100.0, alpha_mo=1.3, mo_cap=25_000,
        side_scale_ticks=0.5, improve_prob=0.6,
    ),
    # illiquid: wide spread, thin sparse book with gaps (like FROG), ~$30
    "SYNB": SymbolProfile(
        instrument_id=900002, price0=30.0, daily_vol=0.03, events=90_000,
        spread0=3.5, spread_eta=1.0, trade_prob=0.05, modify_prob=0.05,
        profile_ticks=50, depth_k=0.4, depth_l=30.0, depth_target=4_000,
        alpha_add=1.5, odd_lot_prob=0.35, mo_scale=50.0, alpha_mo=1.4, mo_cap=3_000,
        side_scale_ticks=2.0, improve_prob=0.3,
    ),
}  # fmt: skip


def profile_for(symbol: str) -> SymbolProfile:
    """The symbol's profile; unknown symbols get SYNA's dynamics with a derived id and price."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    return replace(
        PROFILES["SYNA"], instrument_id=910000 + h % 90000, price0=20.0 + (h % 8000) / 100.0
    )


def activity(tau_min: F64) -> F64:
    """``u(tau) = 1 + 2.0 exp(-tau/20) + 1.5 exp(-(390 - tau)/20)``."""
    return 1.0 + 2.0 * np.exp(-tau_min / 20.0) + 1.5 * np.exp(-(SESSION_MIN - tau_min) / 20.0)


def volatility(tau_min: F64) -> F64:
    """``v(tau) = 1 + 1.8 exp(-tau/20) + 1.5 exp(-(390 - tau)/15)``."""
    return 1.0 + 1.8 * np.exp(-tau_min / 20.0) + 1.5 * np.exp(-(SESSION_MIN - tau_min) / 15.0)


def session_bounds(
    day: str | Date, tz: str = "America/New_York", open_hm: str = "09:30", close_hm: str = "16:00"
) -> tuple[int, int]:
    """UTC ns of the session's open and close on ``day`` in the exchange time zone."""
    d = Date.fromisoformat(day) if isinstance(day, str) else day
    zone = ZoneInfo(tz)

    def at(hm: str) -> int:
        h, m = (int(x) for x in hm.split(":"))
        return int(datetime(d.year, d.month, d.day, h, m, tzinfo=zone).timestamp()) * NS

    return at(open_hm), at(close_hm)


def _lots(rng: np.random.Generator, n: int, alpha: float, odd: float) -> I64:
    lots = np.minimum(1 + np.floor(rng.pareto(alpha, n)), 100).astype(np.int64) * 100
    return np.where(rng.random(n) < odd, rng.integers(1, 100, n), lots)


def _event_times(rng: np.random.Generator, p: SymbolProfile, t0: int, t1: int) -> I64:
    """Clustered inhomogeneous-Poisson event times in [t0, t1), sorted, ns."""
    seconds = (t1 - t0) / NS
    grid = np.linspace(0.0, seconds, int(seconds) + 1)
    lam = activity(grid / 60.0)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (lam[1:] + lam[:-1]) * np.diff(grid))])
    day = np.linspace(0.0, SESSION_MIN * 60.0, int(SESSION_MIN * 60.0) + 1)
    per_day = float(np.trapezoid(activity(day / 60.0), day))
    n_clusters = int(rng.poisson(p.events / CLUSTER_MEAN * cum[-1] / per_day))
    starts = np.interp(np.sort(rng.uniform(0.0, cum[-1], n_clusters)), cum, grid)
    sizes = rng.geometric(1.0 / CLUSTER_MEAN, n_clusters)
    gaps = np.cumsum(rng.exponential(CLUSTER_GAP_S, int(sizes.sum())))
    head = np.repeat(np.cumsum(sizes) - sizes, sizes)
    t = np.repeat(starts, sizes) + (gaps - gaps[head])
    ns = t0 + np.floor(t * NS).astype(np.int64)
    return np.sort(ns[ns < t1])


def _draws(rng: np.random.Generator, p: SymbolProfile, ts: I64, t0: int) -> EventDraws:
    n = len(ts)
    tau = (ts - t0) / NS / 60.0
    v = volatility(tau)
    tgrid = np.linspace(0.0, SESSION_MIN, 3901)
    v2_int = float(np.trapezoid(volatility(tgrid) ** 2, tgrid * 60.0))
    sigma = p.daily_vol * p.price0 * 100.0 / np.sqrt(v2_int)
    dt = np.diff(ts, prepend=ts[0]) / NS
    z = rng.standard_t(4, n) / np.sqrt(2.0)
    fair = p.price0 * 100.0 + np.cumsum(sigma * v * np.sqrt(dt) * z)
    spread = np.maximum(1, np.floor(p.spread0 * v**p.spread_eta + rng.random(n))).astype(np.int64)
    d = np.arange(p.profile_ticks)
    w = (1.0 + d) ** p.depth_k * np.exp(-d / p.depth_l)
    dist = np.minimum(
        np.searchsorted(np.cumsum(w) / w.sum(), rng.random(n), side="right"), len(d) - 1
    )
    mo = np.minimum(p.mo_scale * (1.0 + rng.pareto(p.alpha_mo, n)), p.mo_cap)
    mo_lots = np.maximum(np.round(mo / 100.0), 1).astype(np.int64) * 100
    mo_size = np.where(
        rng.random(n) < p.odd_lot_prob, np.floor(mo % 99).astype(np.int64) + 1, mo_lots
    )
    mod = (1 + np.floor(rng.pareto(2.5, n))).astype(np.int64) * 100
    return EventDraws(
        fair=fair, spread=spread, kind_u=rng.random(n), side_u=rng.random(n), pick_u=rng.random(n),
        cancel_u=rng.random(n), bid_side=rng.random(n) < 0.5, dist=dist.astype(np.int64),
        add_size=_lots(rng, n, p.alpha_add, p.odd_lot_prob),
        cancel_size=_lots(rng, n, p.alpha_add, p.odd_lot_prob),
        mod_size=np.where(rng.random(n) < 0.5, -mod, mod), mo_size=mo_size,
        trade_prob=np.full(n, p.trade_prob),
    )  # fmt: skip


def _initial_levels(rng: np.random.Generator, p: SymbolProfile) -> I64:
    d = np.arange(p.profile_ticks)
    w = (1.0 + d) ** p.depth_k * np.exp(-d / p.depth_l)
    sizes = _lots(rng, 4000, p.alpha_add, p.odd_lot_prob)
    n = max(int(np.searchsorted(np.cumsum(sizes), p.depth_target)), 4)
    where = rng.choice(len(d), size=n, p=w / w.sum())
    prof = np.bincount(where, weights=sizes[:n], minlength=len(d)).astype(np.int64)
    prof[0] = max(prof[0], 100)  # a quote at the touch to start from
    return prof


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticDay:
    """Rows of one or more symbols interleaved by ``ts_recv`` (prices in integer cents)."""

    ts_event: I64
    ts_recv: I64
    ts_in_delta: I64
    symbol: npt.NDArray[np.str_]
    instrument_id: I64
    action: npt.NDArray[np.str_]
    side: npt.NDArray[np.str_]
    depth: I64
    price: I64
    size: I64
    flags: I64
    sequence: I64
    bid: I64  # (n, 3, 10): price cents (-1 empty) / size / order count
    ask: I64
    publisher_id: int = PUBLISHER_ID

    def __len__(self) -> int:
        return len(self.ts_event)

    def to_batch(self) -> BookBatch:
        """The rows as a ``BookBatch`` (dollars = cents / 100, NaN price for empty levels)."""

        def px(c: I64) -> F64:
            return np.where(c < 0, np.nan, c / 100.0)

        return BookBatch(
            ts_event=self.ts_event.copy(), symbol=self.symbol.copy(), action=self.action.copy(),
            side=self.side.copy(), price=px(self.price), size=self.size.astype(np.float64),
            bid_px=px(self.bid[:, 0]), bid_sz=self.bid[:, 1].astype(np.float64),
            ask_px=px(self.ask[:, 0]), ask_sz=self.ask[:, 1].astype(np.float64),
            ts_recv=self.ts_recv.copy(),
        )  # fmt: skip


def _symbol_rows(seed: int, symbol: str, t0: int, t1: int) -> dict[str, np.ndarray]:
    p = profile_for(symbol)
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]))
    )
    ts = _event_times(rng, p, t0, t1)
    draws = _draws(rng, p, ts, t0)
    params = BookParams(
        p.profile_ticks,
        p.depth_target,
        p.modify_prob,
        p.side_scale_ticks,
        p.improve_prob,
        _initial_levels(rng, p),
    )
    window = 4 * p.profile_ticks + 200
    rows = simulate(draws, params, grid=int(p.price0 * 200) + 2 * window, window=window)
    latency = np.round(rng.lognormal(np.log(20e3), 0.5, len(ts))).astype(np.int64)
    in_delta = np.round(rng.lognormal(np.log(170e3), 0.3, len(ts))).astype(np.int64)
    ev = rows.event
    m = len(ev)
    return {
        "ts_event": ts[ev], "ts_recv": np.maximum.accumulate(ts[ev] + latency[ev]),
        "ts_in_delta": in_delta[ev], "symbol": np.full(m, symbol),
        "instrument_id": np.full(m, p.instrument_id, np.int64), "action": rows.action,
        "side": rows.side, "depth": rows.depth, "price": rows.price, "size": rows.size,
        "bid": rows.bid, "ask": rows.ask,
    }  # fmt: skip


def generate_day(
    seed: int,
    symbols: list[str] | tuple[str, ...],
    day: str | Date = "2025-04-03",
    *,
    tz: str = "America/New_York",
    open_hm: str = "09:30",
    close_hm: str = "16:00",
) -> SyntheticDay:
    """Simulate ``symbols`` over one session and interleave their rows by ``ts_recv``.

    ``flags`` is 128 (F_LAST) on the last row of each run of rows sharing a
    symbol and ``ts_event``, else 0; ``sequence`` counts rows from 1,000,000.
    """
    if not symbols:
        raise ValueError("generate_day needs at least one symbol")
    t0, t1 = session_bounds(day, tz, open_hm, close_hm)
    parts = [_symbol_rows(seed, s, t0, t1) for s in symbols]
    cols = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    order = np.argsort(cols["ts_recv"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    n = len(order)
    last = np.ones(n, bool)
    last[:-1] = (cols["symbol"][1:] != cols["symbol"][:-1]) | (
        cols["ts_event"][1:] != cols["ts_event"][:-1]
    )
    return SyntheticDay(
        ts_event=cols["ts_event"], ts_recv=cols["ts_recv"], ts_in_delta=cols["ts_in_delta"],
        symbol=cols["symbol"], instrument_id=cols["instrument_id"], action=cols["action"],
        side=cols["side"], depth=cols["depth"], price=cols["price"], size=cols["size"],
        flags=np.where(last, 128, 0).astype(np.int64),
        sequence=SEQUENCE_START + np.arange(n, dtype=np.int64), bid=cols["bid"], ask=cols["ask"],
    )  # fmt: skip


def generate_batch(
    seed: int, symbols: list[str] | tuple[str, ...], day: str | Date = "2025-04-03"
) -> BookBatch:
    """Shortcut: ``generate_day(...).to_batch()``."""
    return generate_day(seed, symbols, day).to_batch()
