"""Frozen domain types shared by the core, the feeds and the replay.

Units (DESIGN.md section 3): time in int nanoseconds since the epoch (UTC),
prices in float dollars, quantities in shares, costs in dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Side = Literal["buy", "sell"]
SIDES: tuple[Side, Side] = ("buy", "sell")
NS_PER_S = 1_000_000_000

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class BookLike(Protocol):
    """What the core needs of a batch of MBP snapshots (``feeds.book.BookBatch``).

    Arrays are best level first; empty levels are NaN price / 0 size.
    """

    @property
    def ts_event(self) -> IntArray: ...  # (n,)
    @property
    def bid_px(self) -> FloatArray: ...  # (n, levels)
    @property
    def bid_sz(self) -> FloatArray: ...
    @property
    def ask_px(self) -> FloatArray: ...
    @property
    def ask_sz(self) -> FloatArray: ...
    @property
    def action(self) -> npt.NDArray[np.str_]: ...  # (n,) single characters A/C/M/T/F/R/N
    @property
    def side(self) -> npt.NDArray[np.str_]: ...  # (n,) A (ask) / B (bid) / N
    @property
    def price(self) -> FloatArray: ...  # (n,) price of the event (trade price for T)
    @property
    def size(self) -> FloatArray: ...  # (n,) size of the event (trade size for T)

    def __len__(self) -> int: ...


def opposite(side: Side) -> Side:
    """The other side: ``buy`` <-> ``sell``."""
    return "sell" if side == "buy" else "buy"


def sign(side: Side) -> int:
    """+1 for a buy, -1 for a sell (cost = sign * (price - mid) * qty)."""
    return 1 if side == "buy" else -1


@dataclass(frozen=True, slots=True)
class ParentOrder:
    """A trader's instruction: trade ``quantity`` shares between start and end.

    ``n_periods`` = ceil((end - start) / period); the agent decides once per
    period on the first snapshot at or after each period boundary.
    """

    parent_id: str
    symbol: str
    side: Side
    quantity: float
    start_ns: int
    end_ns: int
    period_s: float = 60.0
    max_participation: float | None = None
    risk_aversion: float = 0.0
    limit_price: float | None = None
    lot_size: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if not (self.quantity > 0 and np.isfinite(self.quantity)):
            raise ValueError(f"quantity must be a positive number of shares, got {self.quantity}")
        if self.end_ns <= self.start_ns:
            raise ValueError("end must be after start")
        if not self.period_s > 0:
            raise ValueError("period_s must be positive")
        if self.max_participation is not None and not 0 < self.max_participation <= 1:
            raise ValueError("max_participation must be in (0, 1]")
        if self.risk_aversion < 0:
            raise ValueError("risk_aversion must be >= 0")
        if self.limit_price is not None and not self.limit_price > 0:
            raise ValueError("limit_price must be positive")
        if not self.lot_size > 0:
            raise ValueError("lot_size must be positive")

    @property
    def period_ns(self) -> int:
        return round(self.period_s * NS_PER_S)

    @property
    def n_periods(self) -> int:
        return int(-(-(self.end_ns - self.start_ns) // self.period_ns))

    def period_start_ns(self, k: int) -> int:
        """Event time at which period ``k`` (0-based) begins."""
        return self.start_ns + k * self.period_ns


@dataclass(frozen=True, slots=True)
class ImpactParams:
    """Temporary impact per period: ``g(x) = beta*x + gamma*x**2`` dollars for x shares.

    ``alpha, delta`` describe the power-law fit ``alpha * x**(1+delta)`` (analysis only).
    """

    beta: float
    gamma: float
    alpha: float = float("nan")
    delta: float = float("nan")


@dataclass(frozen=True, slots=True)
class SolverInfo:
    name: str
    status: str
    iterations: int
    solve_us: float


@dataclass(frozen=True, slots=True)
class Plan:
    """Result of one planning step over the remaining periods.

    ``schedule[j]`` is the planned number of shares for remaining period j
    (blocked slots already expanded to periods). ``shortfall`` is the quantity
    the caps make impossible to complete by the deadline (0 when feasible).
    ``fallback`` names the fallback used (None when the solver succeeded).
    """

    schedule: FloatArray
    objective: float
    shortfall: float
    solver: SolverInfo
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class ChildOrder:
    """An IOC instruction for one period; ``child_order_id = f"{parent_id}:{period_index}"``."""

    child_order_id: str
    parent_id: str
    symbol: str
    side: Side
    quantity: float
    limit_price: float
    period_index: int
    ts_event: int
    ts_init: int
    remaining_before: float
    plan: tuple[float, ...] = ()
    solver: SolverInfo | None = None
    impact: ImpactParams | None = None
    time_in_force: str = "IOC"


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution report for a child order; de-duplicated by ``fill_id``."""

    fill_id: str
    child_order_id: str
    parent_id: str
    quantity: float
    price: float
    ts_event: int


def child_order_id(parent_id: str, period_index: int) -> str:
    """Deterministic id, so a replayed decision is recognisable downstream."""
    return f"{parent_id}:{period_index}"


