"""Seeded generator of realistic synthetic MBP-10 days (the embedded sample).

``generate_day(seed, symbols, date)`` simulates one US session (09:30-16:00
New York time) for each symbol and returns a ``SyntheticDay`` (columns of
integer cents / shares / ns); ``.to_batch()`` gives the ``feeds.book.BookBatch``
and ``replay.synthetic.csv_out.write_csv_zst`` writes Databento's MBP-10 CSV
layout; ``python -m replay.synthetic`` writes one file per day.
Everything is drawn from ``numpy.random.Generator(PCG64)`` streams spawned
from ``SeedSequence([seed, crc32(symbol), date.toordinal()])`` (one stream
for the day's shape, one for the liquidity deviations, one for the events),
so a symbol's day depends neither on the other symbols generated with it
nor on the other days.

The model (tau = minutes since the open, T = 390, prices in ticks of $0.01)
------------------------------------------------------------------------------
Intraday shapes ``u`` (activity), ``v`` (volatility) and ``w`` (depth), U-shaped
and 1 at midday, with amplitudes and day levels that vary from day to day
around a common shape: ``replay.synthetic.intraday``.

Liquidity deviations: the target spread and the depth target leave their
intraday level by ``exp(d_s)`` and ``exp(d_q)``, where ``d_s, d_q`` are
stationary AR(1) processes evaluated every second whose one-minute means
have the persistence and sds *measured on FROG* (``replay.synthetic.params.LIQUIDITY``,
model and estimator in ``replay.synthetic.liquidity``): deviations revert
over minutes (half-lives 1.5 and 2.1 min), so the book a trader meets now
says something about the next few minutes and little about the next hour.

Event times: clusters arrive as an inhomogeneous Poisson process with
intensity ``prop. u(tau)`` (inverse-CDF sampling of the integrated intensity);
each cluster holds ``1 + Geometric`` events (mean ``CLUSTER_MEAN``) separated
by exponential gaps (mean ``CLUSTER_GAP_S``): the bursts real feeds show.

Fair value (ticks) at event times ``t_i``, Student-t(4) shocks scaled to unit
variance, ``sigma`` set so that the open-to-close sd is ``daily_vol * p0``
(times the day's volatility multiplier)::

    f_i = f_{i-1} + sigma v(tau_i) sqrt(t_i - t_{i-1}) z_i,
    sigma^2 = (daily_vol * p0 / tick)^2 / integral_0^T v(tau)^2 dtau

Target spread and depth (whole ticks; ``U_i ~ U[0, 1)``; ``k_s, k_q`` the
day's level multipliers)::

    s_i  = max(1, floor(k_s s0 v(tau_i)^eta exp(d_s(t_i)) + U_i)),
    a_b  = floor(f - (s - 1)/2),  a_a = a_b + s
    Q*_i = k_q Q* w(tau_i) exp(d_q(t_i))

Events (``replay.synthetic.book.simulate``): a market order with probability
``trade_prob``, a buy with probability ``1 / (1 + exp(-(f - mid) / kappa))``;
otherwise a book event on a random side: a modify (share ``modify_prob``), a
cancel with probability ``Q / (Q + Q*_i)`` choosing a level with weight
``size * h(d)`` (``h = 20`` for quotes through the anchor, 5 beyond ``K``
ticks, else 1: cancel rate proportional to queue size, stale quotes fade
first), or an add at distance ``d ~ (1 + d)^k_d exp(-d / L)``, d = 0..K-1,
behind the anchor, so equilibrium depth grows with distance from the touch.
``Q`` is the side's depth within ``K`` ticks; because adds arrive at a fixed
rate and cancels scale with ``Q``, depth reverts to ``~Q*_i`` gradually after a
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
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from feeds.book import BookBatch
from replay.synthetic.book import BookParams, EventDraws, simulate
from replay.synthetic.intraday import DayShape, draw_day_shape
from replay.synthetic.liquidity import correlated_ar1, per_second_params
from replay.synthetic.params import LIQUIDITY, LiquidityParams, SymbolParams, params_for

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
NS = 1_000_000_000
SESSION_MIN = 390.0
CLUSTER_MEAN = 1.6
CLUSTER_GAP_S = 3e-4
PUBLISHER_ID = 0  # synthetic: not a real Databento publisher
SEQUENCE_START = 1_000_000


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


def _event_times(rng: np.random.Generator, p: SymbolParams, shape: DayShape, t0: int,
                 t1: int) -> I64:
    """Clustered inhomogeneous-Poisson event times in [t0, t1), sorted, ns."""
    seconds = (t1 - t0) / NS
    grid = np.linspace(0.0, seconds, int(seconds) + 1)
    lam = shape.activity(grid / 60.0)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (lam[1:] + lam[:-1]) * np.diff(grid))])
    day = np.linspace(0.0, SESSION_MIN * 60.0, int(SESSION_MIN * 60.0) + 1)
    per_day = float(np.trapezoid(shape.activity(day / 60.0), day))
    events = p.events * shape.events_scale
    n_clusters = int(rng.poisson(events / CLUSTER_MEAN * cum[-1] / per_day))
    starts = np.interp(np.sort(rng.uniform(0.0, cum[-1], n_clusters)), cum, grid)
    sizes = rng.geometric(1.0 / CLUSTER_MEAN, n_clusters)
    gaps = np.cumsum(rng.exponential(CLUSTER_GAP_S, int(sizes.sum())))
    head = np.repeat(np.cumsum(sizes) - sizes, sizes)
    t = np.repeat(starts, sizes) + (gaps - gaps[head])
    ns = t0 + np.floor(t * NS).astype(np.int64)
    return np.sort(ns[ns < t1])


def deviations(rng: np.random.Generator, seconds: int,
               liquidity: LiquidityParams = LIQUIDITY) -> F64:
    """Spread and depth log-deviations ``(d_s, d_q)`` at each second ``0..seconds`` (shape ``(2, n)``).

    Per-second AR(1) processes whose one-minute means have the per-minute
    ``rho`` and ``sd`` of ``liquidity`` (``replay.synthetic.liquidity.per_second_params``).
    """
    (phi_s, sd_s), (phi_q, sd_q) = (per_second_params(liquidity.spread_rho, liquidity.spread_sd),
                                    per_second_params(liquidity.depth_rho, liquidity.depth_sd))
    return correlated_ar1(rng, seconds + 1, (phi_s, phi_q), (sd_s, sd_q), liquidity.corr)


def _fair_value(rng: np.random.Generator, p: SymbolParams, shape: DayShape, ts: I64,
                tau: F64) -> F64:
    tgrid = np.linspace(0.0, SESSION_MIN, 3901)
    v2_int = float(np.trapezoid(shape.volatility(tgrid) ** 2, tgrid * 60.0))
    open_ticks = p.price0 * shape.price_scale * 100.0
    sigma = shape.vol_scale * p.daily_vol * open_ticks / np.sqrt(v2_int)
    dt = np.diff(ts, prepend=ts[0]) / NS
    z = rng.standard_t(4, len(ts)) / np.sqrt(2.0)
    return np.asarray(open_ticks + np.cumsum(sigma * shape.volatility(tau) * np.sqrt(dt) * z))


def event_draws(rng: np.random.Generator, p: SymbolParams, shape: DayShape, dev: F64, ts: I64,
           t0: int) -> EventDraws:
    """Every random input of the events at ``ts`` (see the module docstring for the formulas).

    ``dev`` is :func:`deviations` (per second from ``t0``): the target spread is
    ``s0 v^eta exp(d_s)`` dithered to whole ticks and the depth target
    ``Q* w exp(d_q)``, both times the day's level multipliers.
    """
    n = len(ts)
    tau = (ts - t0) / NS / 60.0
    sec = np.minimum((ts - t0) // NS, dev.shape[1] - 1)
    fair = _fair_value(rng, p, shape, ts, tau)
    level = shape.spread_scale * p.spread0 * shape.volatility(tau) ** p.spread_eta
    spread = np.maximum(1, np.floor(level * np.exp(dev[0, sec]) + rng.random(n))).astype(np.int64)
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
        depth_target=shape.depth_scale * p.depth_target * shape.depth(tau) * np.exp(dev[1, sec]),
    )  # fmt: skip


def _initial_levels(rng: np.random.Generator, p: SymbolParams, target: float) -> I64:
    d = np.arange(p.profile_ticks)
    w = (1.0 + d) ** p.depth_k * np.exp(-d / p.depth_l)
    sizes = _lots(rng, 4000, p.alpha_add, p.odd_lot_prob)
    n = max(int(np.searchsorted(np.cumsum(sizes), target)), 4)
    where = rng.choice(len(d), size=n, p=w / w.sum())
    prof = np.bincount(where, weights=sizes[:n], minlength=len(d)).astype(np.int64)
    prof[0] = max(prof[0], 100)  # a quote at the touch to start from
    return prof


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticDay:
    """Rows of one or more symbols interleaved by ``ts_recv`` (prices in integer cents).

    ``shapes`` holds each symbol's drawn ``DayShape`` (not written to files).
    """

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
    shapes: dict[str, DayShape] = field(default_factory=dict)

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


def day_streams(seed: int, symbol: str, day: Date) -> tuple[np.random.Generator, ...]:
    """The three independent streams (shape, deviations, events) of ``symbol`` on ``day``."""
    ss = np.random.SeedSequence([seed, zlib.crc32(symbol.encode()), day.toordinal()])
    return tuple(np.random.Generator(np.random.PCG64(c)) for c in ss.spawn(3))


def _symbol_rows(seed: int, symbol: str, day: Date, t0: int, t1: int,
                 liquidity: LiquidityParams) -> tuple[dict[str, np.ndarray], DayShape]:
    p = params_for(symbol)
    shape_rng, dev_rng, rng = day_streams(seed, symbol, day)
    shape = draw_day_shape(shape_rng)
    dev = deviations(dev_rng, int((t1 - t0) // NS), liquidity)
    ts = _event_times(rng, p, shape, t0, t1)
    draws = event_draws(rng, p, shape, dev, ts, t0)
    params = BookParams(p.profile_ticks, p.modify_prob, p.side_scale_ticks, p.improve_prob,
                        _initial_levels(rng, p, float(draws.depth_target[0])))
    window = 4 * p.profile_ticks + 200
    grid = int(p.price0 * shape.price_scale * 200) + 2 * window
    rows = simulate(draws, params, grid=grid, window=window)
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
    }, shape  # fmt: skip


def generate_day(
    seed: int,
    symbols: list[str] | tuple[str, ...],
    day: str | Date = "2025-04-03",
    *,
    tz: str = "America/New_York",
    open_hm: str = "09:30",
    close_hm: str = "16:00",
    liquidity: LiquidityParams = LIQUIDITY,
) -> SyntheticDay:
    """Simulate ``symbols`` over one session and interleave their rows by ``ts_recv``.

    ``liquidity``: the spread and depth deviation processes (default: measured on FROG).
    ``flags`` is 128 (F_LAST) on the last row of each run of rows sharing a
    symbol and ``ts_event``, else 0; ``sequence`` counts rows from 1,000,000.
    """
    if not symbols:
        raise ValueError("generate_day needs at least one symbol")
    d = Date.fromisoformat(day) if isinstance(day, str) else day
    t0, t1 = session_bounds(d, tz, open_hm, close_hm)
    made = [_symbol_rows(seed, s, d, t0, t1, liquidity) for s in symbols]
    parts = [m[0] for m in made]
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
        shapes={s: m[1] for s, m in zip(symbols, made, strict=True)},
    )  # fmt: skip


def generate_batch(
    seed: int, symbols: list[str] | tuple[str, ...], day: str | Date = "2025-04-03"
) -> BookBatch:
    """Shortcut: ``generate_day(...).to_batch()``."""
    return generate_day(seed, symbols, day).to_batch()
