"""Pre-trade checks: what the engine must never do (DESIGN.md section 8).

Never send an order on a stale (older than ``max_snapshot_age_ms``), crossed,
locked or one-sided book; never exceed the remaining quantity, the
participation cap or the parent's limit price; a kill switch stops new child
orders. Every refusal has a stable reason string (a metric label).

Venue rules
-----------
A venue rejects a limit price off its tick grid and a quantity that is not a
whole number of lots. :class:`InstrumentRules` holds one instrument's tick
(fixed, or by price band from a tick table: by default $0.01 at or above $1,
$0.0001 below, the US equity rule) and lot; :class:`VenueRules` holds the
default and per-symbol overrides. :func:`child_limit_price` rounds on the grid
with exact decimal arithmetic: away from the book for a marketable IOC (up for
a buy, down for a sell), and the parent's limit towards the inside (down for a
buy, up for a sell) so the child never goes past it.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from agent.core.impact.estimator import walk_levels
from agent.core.model import FloatArray, Side

STALE_BOOK = "stale_book"
CROSSED_BOOK = "crossed_book"
LOCKED_BOOK = "locked_book"
EMPTY_SIDE = "empty_side"
KILL_SWITCH = "kill_switch"
BELOW_LOT = "below_lot"
LIMIT_PRICE = "limit_price"

TickTable = tuple[tuple[float, float], ...]
"""``((min_price, tick), ...)`` sorted by ``min_price``, the first band starting at 0."""

DEFAULT_TICK_TABLE: TickTable = ((0.0, 0.0001), (1.0, 0.01))
"""$0.0001 below $1, $0.01 at or above $1 (US equities, Reg NMS rule 612)."""

_DIGITS = 12  # significant digits kept before rounding on the grid: drops float noise (0.30000000000000004)


def _dec(x: float) -> Decimal:
    """The shortest decimal that round-trips ``x`` (``repr``), so ``0.01`` is exactly 0.01."""
    return Decimal(repr(float(x)))


def _clean(x: float) -> Decimal:
    """``x`` as a decimal rounded to ``_DIGITS`` significant digits (arithmetic noise dropped)."""
    d = _dec(x)
    return d if d == 0 else round(d, _DIGITS - d.adjusted() - 1)


@functools.lru_cache(maxsize=4096)
def _round_price(rules: InstrumentRules, price: float, up: bool) -> float:
    """:meth:`InstrumentRules.round_price` (cached: a decision rounds prices the book repeats, and the
    exact decimal arithmetic is ~10 us a call)."""
    x = _clean(price)
    tick = _dec(rules.tick_at(price))
    n = (x / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    # rounding never leaves the band except onto its edge, which is on both grids (checked)
    return float(n * tick)


def tick_for(price: float, tick_table: TickTable = DEFAULT_TICK_TABLE) -> float:
    """The tick of the band of ``tick_table`` containing ``price`` (the first band below 0)."""
    tick = tick_table[0][1]
    for lo, t in tick_table:
        if price >= lo:
            tick = t
        else:
            break
    return tick


def on_grid(price: float, tick: float, tol: float = 1e-9) -> bool:
    """True when ``price / tick`` is a whole number within ``tol`` (or float precision, if coarser)."""
    n = price / tick
    return abs(n - round(n)) <= max(tol, 8 * np.finfo(float).eps * abs(n))


def _decimals(x: Decimal) -> int:
    exp = x.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _check_tick_table(table: TickTable) -> None:
    if not table or table[0][0] != 0.0:
        raise ValueError("a tick table starts with a band at price 0")
    if any(not t > 0 for _, t in table):
        raise ValueError("ticks must be positive")
    for (lo, t), (hi, t2) in itertools.pairwise(table):
        if not hi > lo:
            raise ValueError(f"tick table bands must be increasing: {lo} then {hi}")
        for tick in (t, t2):  # a band edge on both grids: rounding across it stays on the grid
            if (_dec(hi) % _dec(tick)) != 0:
                raise ValueError(f"tick table edge {hi} is not a multiple of the tick {tick}")


@dataclass(frozen=True, slots=True)
class InstrumentRules:
    """Tick and lot of one instrument.

    Parameters
    ----------
    tick : a fixed tick (dollars); None: the price band's tick from ``tick_table``.
    lot : shares per lot; None: the parent order's ``lot_size`` alone.
    tick_table : price bands used when ``tick`` is None (see :data:`DEFAULT_TICK_TABLE`).
    """

    tick: float | None = None
    lot: float | None = None
    tick_table: TickTable = DEFAULT_TICK_TABLE

    def __post_init__(self) -> None:
        if self.tick is not None and not self.tick > 0:
            raise ValueError(f"tick must be positive, got {self.tick}")
        if self.lot is not None and not self.lot > 0:
            raise ValueError(f"lot must be positive, got {self.lot}")
        _check_tick_table(self.tick_table)

    def tick_at(self, price: float) -> float:
        """The tick that applies to a limit price of ``price``."""
        return self.tick if self.tick is not None else tick_for(price, self.tick_table)

    def round_price(self, price: float, up: bool) -> float:
        """``price`` rounded onto the tick grid, up (ceiling) or down (floor); exact in decimal.

        The result is the double nearest to a whole number of ticks, so
        ``result / tick`` is an integer within float precision and it prints
        with the tick's decimals (``10.03``, never ``10.030000000000001``).
        """
        return _round_price(self, float(price), bool(up))

    def lot_for(self, parent_lot: float) -> float:
        """Shares per child lot: the least common multiple of the venue lot and the parent's lot."""
        if self.lot is None:
            return float(parent_lot)
        a, b = _dec(self.lot), _dec(parent_lot)
        scale = 10 ** max(_decimals(a), _decimals(b))
        return float(Decimal(math.lcm(int(a * scale), int(b * scale))) / scale)


@dataclass(frozen=True, slots=True)
class VenueRules:
    """Tick and lot rules: a default and per-symbol overrides (``symbols``: ``(symbol, rules)`` pairs)."""

    default: InstrumentRules = field(default_factory=InstrumentRules)
    symbols: tuple[tuple[str, InstrumentRules], ...] = ()

    def instrument(self, symbol: str) -> InstrumentRules:
        """The rules of ``symbol`` (the default when it has no override)."""
        for sym, rules in self.symbols:
            if sym == symbol:
                return rules
        return self.default


DEFAULT_INSTRUMENT = InstrumentRules()


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Hard limits applied to every child order.

    ``limit_slippage_bps`` is added beyond the worst level the child needs on
    the current book, so a small move during the order's latency still fills.
    ``venue`` gives each symbol's tick and lot.
    """

    max_snapshot_age_ms: float = 2_000.0
    max_child_shares: float = float("inf")
    limit_slippage_bps: float = 10.0
    venue: VenueRules = field(default_factory=VenueRules)


def book_reject_reason(
    bid_px: float, bid_sz: float, ask_px: float, ask_sz: float, age_ms: float, limits: RiskLimits
) -> str | None:
    """Why the top of book must not be traded on (None when it is fine)."""
    if not (bid_sz > 0 and ask_sz > 0 and np.isfinite(bid_px) and np.isfinite(ask_px)):
        return EMPTY_SIDE
    if bid_px > ask_px:
        return CROSSED_BOOK
    if bid_px == ask_px:
        return LOCKED_BOOK
    if age_ms > limits.max_snapshot_age_ms:
        return STALE_BOOK
    return None


def clamp_child_quantity(quantity: float, remaining: float, cap: float, limits: RiskLimits) -> float:
    """``min(quantity, remaining, cap, max_child_shares)``, never negative."""
    return float(max(0.0, min(quantity, remaining, cap, limits.max_child_shares)))


def child_limit_price(
    side: Side,
    px: FloatArray,
    sz: FloatArray,
    quantity: float,
    limits: RiskLimits,
    parent_limit: float | None = None,
    *,
    instrument: InstrumentRules = DEFAULT_INSTRUMENT,
) -> float | None:
    """IOC limit price for ``quantity`` shares on the current book, on the tick grid.

    ``px, sz``: the levels the child consumes (asks for a buy, bids for a
    sell), best first. The limit is the worst level the quantity reaches on the
    visible book (the last visible level when it is not deep enough), moved by
    ``limit_slippage_bps`` away from the mid and rounded onto ``instrument``'s
    grid away from the book (up for a buy, down for a sell); then bounded by
    the parent's limit rounded onto the grid towards the inside (down for a
    buy, up for a sell). Returns None when that bound is beyond the best level
    (the child could not fill at all).
    """
    # scalar over the <= 10 levels (numpy's per-call cost was most of this function's time); the
    # same numbers as a cumsum and searchsorted(side="left"): the first level whose running depth
    # reaches the quantity, else the last usable one
    worst = math.nan
    depth = 0.0
    for price, size in zip(np.asarray(px, dtype=np.float64).tolist(), np.asarray(sz, dtype=np.float64).tolist(),
                           strict=True):
        if size > 0 and math.isfinite(price):
            if math.isnan(worst):
                best = price
            worst = price
            depth += size
            if depth >= quantity:
                break
    if math.isnan(worst):
        return None
    slip = limits.limit_slippage_bps * 1e-4
    buy = side == "buy"
    limit = instrument.round_price(worst * (1 + slip) if buy else worst * (1 - slip), up=buy)
    if parent_limit is not None:
        bound = instrument.round_price(parent_limit, up=not buy)
        if (buy and best > bound) or (not buy and best < bound):
            return None
        limit = min(limit, bound) if buy else max(limit, bound)
    return limit


def fillable_within(side: Side, px: FloatArray, sz: FloatArray, limit: float) -> float:
    """Visible shares available at or better than ``limit`` on one side."""
    filled, _ = walk_levels(px[None, :], sz[None, :], np.inf, limit, buy=side == "buy")
    return float(filled[0])
