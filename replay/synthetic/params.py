"""Parameters of the synthetic market: per symbol, liquidity deviations, day-to-day variation.

Where the numbers come from
---------------------------
- ``LIQUIDITY`` (persistence and size of the spread and depth deviations, the
  depth's intraday level) is *measured* on the real FROG day
  (Databento MBP-10, 2025-04-03, 33,286 events) with
  ``python bench/liquidity_stats.py --data ../shared/data/FROG_2025-04-03.mbp10.csv.gz``
  (model in ``replay.synthetic.liquidity``)::

      series   rho/min  acf2/acf1  half-life  sd (log)  innov sd  c_open  c_close
      spread    0.634     0.557    1.5 min     0.318     0.244    3.009   -0.426
      depth5    0.719     0.713    2.1 min     0.309     0.217    0.270    0.786
      corr(spread dev, depth dev) = 0.059

  The spread's own intraday level is not taken from FROG (its first minutes,
  after an illiquid open, are 20x the midday spread): the generator widens
  the spread with volatility instead (``s0 v(tau)^eta``).
- ``DAY_VARIATION`` cannot be measured from one day: it is an assumption in
  line with the usual stylised facts (daily volume varies by a few tens of
  percent from day to day, volatility likewise, the open and close bulges
  change in size, spreads and depth vary less). Each generated day draws its
  multipliers as ``exp(s z - s^2 / 2)``, ``z ~ N(0, 1)`` (mean 1).
- ``PARAMS``: the two made-up symbols, chosen by hand to look like a liquid
  large-cap (SYNA) and like FROG (SYNB: wide, thin, gappy book). ``events``
  is kept low (32,000 simulated events, ~20,000 rows a day per symbol) so
  that five days of two symbols stay near 6 MB compressed; trade sizes are
  scaled up to keep realistic daily volumes (SYNA ~1.5-2.5 M shares, SYNB
  ~0.3-0.45 M), which makes per-minute market volume lumpier than in a real
  liquid name (about a dozen trades a minute).

What the book makes of the deviations
-------------------------------------
The deviations above drive the *targets* (spread anchor, depth target);
the realised book adds its own minute-scale noise (trades open gaps that
close within seconds, sweeps empty levels). Measured on the sample with the
same estimator (``python bench/liquidity_stats.py``, all five days pooled),
the realised depth deviation is close to FROG's persistence but larger, and
the realised spread deviation is about half as persistent as FROG's
(see ``data/sample/README.md`` for the table). Matching both would need a
different book model, not other numbers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class SymbolParams:
    """Per-symbol parameters of the model (see ``replay.synthetic.day``)."""

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
    depth_target: float  # Q*, shares per side within K ticks (midday level)
    alpha_add: float
    odd_lot_prob: float
    mo_scale: float
    alpha_mo: float
    mo_cap: int
    side_scale_ticks: float  # kappa
    improve_prob: float  # p_imp


@dataclass(frozen=True, slots=True)
class LiquidityParams:
    """Spread and depth deviations (AR(1) per minute, log units) and the depth's level shape."""

    spread_rho: float = 0.634
    spread_sd: float = 0.318
    depth_rho: float = 0.719
    depth_sd: float = 0.309
    corr: float = 0.059
    depth_open: float = 0.270  # c_open of log depth: exp(c_open e^(-tau/20)) at the open
    depth_close: float = 0.786  # c_close: exp(c_close e^(-(390-tau)/20)) at the close


@dataclass(frozen=True, slots=True)
class DayVariation:
    """Log-sds of the per-day multipliers (assumed; see the module docstring)."""

    events: float = 0.25  # activity level (events, hence volume, per day)
    vol: float = 0.25  # daily volatility
    spread: float = 0.10  # spread level s0
    depth: float = 0.15  # depth level Q*
    shape: float = 0.30  # each open / close bulge amplitude (activity, volatility, depth)
    price: float = 0.03  # the opening fair value (days are independent, not a continuous path)


LIQUIDITY = LiquidityParams()
DAY_VARIATION = DayVariation()

PARAMS: dict[str, SymbolParams] = {
    # liquid: ~1-2 tick spread, deep contiguous book, ~$50
    "SYNA": SymbolParams(
        instrument_id=900001, price0=50.0, daily_vol=0.015, events=32_000,
        spread0=1.05, spread_eta=1.5, trade_prob=0.05, modify_prob=0.05,
        profile_ticks=30, depth_k=0.3, depth_l=10.0, depth_target=80_000,
        alpha_add=1.6, odd_lot_prob=0.08, mo_scale=420.0, alpha_mo=1.3, mo_cap=25_000,
        side_scale_ticks=0.5, improve_prob=0.9,
    ),
    # illiquid: wide spread, thin sparse book with gaps (like FROG), ~$30
    "SYNB": SymbolParams(
        instrument_id=900002, price0=30.0, daily_vol=0.03, events=32_000,
        spread0=3.5, spread_eta=1.0, trade_prob=0.05, modify_prob=0.05,
        profile_ticks=50, depth_k=0.4, depth_l=30.0, depth_target=4_000,
        alpha_add=1.5, odd_lot_prob=0.35, mo_scale=140.0, alpha_mo=1.4, mo_cap=3_000,
        side_scale_ticks=2.0, improve_prob=0.3,
    ),
}  # fmt: skip


def params_for(symbol: str) -> SymbolParams:
    """The symbol's parameters; unknown symbols get SYNA's dynamics with a derived id and price."""
    if symbol in PARAMS:
        return PARAMS[symbol]
    h = zlib.crc32(symbol.encode())
    return replace(PARAMS["SYNA"], instrument_id=910000 + h % 90000, price0=20.0 + (h % 8000) / 100.0)
