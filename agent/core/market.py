"""Per-symbol market state: everything the engine learns from a symbol's books, once per symbol.

Every snapshot row of a symbol updates, once whatever the number of parent
orders on it: the traded-volume and volatility estimators (rates per second of
event time; each parent converts them to its own period) and the
exponentially weighted cost curves of both sides
(:class:`agent.core.impact.symbol_curve.SymbolCostCurve`, one per side and
half-life). A parent order keeps only what depends on its size range: the fit
of its quadratic on its own sizes (``agent.core.impact.parent_fit.ParentImpact``).
Engine cost per row therefore grows with symbols, not with parent orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.core.forecast.profile import IntradayProfile
from agent.core.forecast.reversion import ReversionSettings
from agent.core.forecast.sampler import BookSampler
from agent.core.forecast.volume import VolatilityEstimator, VolumeEstimator
from agent.core.impact.symbol_curve import SymbolCostCurve, update_curves
from agent.core.model import SIDES, BookLike, Side

RATE_UNIT_S = 1.0
"""The symbol estimators count per second of event time; a parent scales to ``period_s``."""


@dataclass(frozen=True, slots=True)
class MarketSettings:
    """What the symbol estimators need (a subset of ``EngineSettings``)."""

    impact_half_lives_s: tuple[float, ...] = (300.0,)
    volume_half_life_s: float = 1800.0
    volatility_half_life_s: float = 1800.0
    penalty_ticks: float = 3.0
    tick: float = 0.01
    reversion: ReversionSettings | None = None  # the reverting forecast's book sampler (None: off)


@dataclass(slots=True)
class SymbolMarket:
    """One symbol's estimators (see the module docstring)."""

    symbol: str
    volume: VolumeEstimator
    volatility: VolatilityEstimator
    curves: dict[tuple[Side, float], SymbolCostCurve] = field(default_factory=dict)
    cum_volume: float = 0.0
    sampler: BookSampler | None = None
    updates: int = 0
    """Batches added since this object was created (memory only: tells a writer the state moved)."""

    @classmethod
    def create(cls, symbol: str, s: MarketSettings, profile: IntradayProfile | None = None) -> SymbolMarket:
        curves = {(side, hl): SymbolCostCurve(side, half_life_s=hl, penalty_ticks=s.penalty_ticks, tick=s.tick)
                  for side in SIDES for hl in s.impact_half_lives_s}
        sampler = None if s.reversion is None else BookSampler(s.reversion, profile=profile)
        return cls(symbol, VolumeEstimator(RATE_UNIT_S, half_life_s=s.volume_half_life_s),
                   VolatilityEstimator(RATE_UNIT_S, half_life_s=s.volatility_half_life_s), curves,
                   sampler=sampler)

    def curve(self, side: Side, half_life_s: float) -> SymbolCostCurve:
        """The cost curve of ``side`` at ``half_life_s`` (created empty when first asked for)."""
        key = (side, float(half_life_s))
        c = self.curves.get(key)
        if c is None:
            any_curve = next(iter(self.curves.values()), None)
            c = SymbolCostCurve(side, half_life_s=half_life_s,
                                penalty_ticks=any_curve.penalty_ticks if any_curve else 3.0,
                                tick=any_curve.tick if any_curve else 0.01)
            self.curves[key] = c
        return c

    def update(self, part: BookLike) -> None:
        """Add a time-ordered batch of this symbol's rows to every estimator."""
        if not len(part):
            return
        self.updates += 1
        self.volume.update(part)
        self.volatility.update(part)
        trades = part.action == "T"
        if trades.any():
            self.cum_volume += float(part.size[trades].sum())
        groups: dict[float, list[SymbolCostCurve]] = {}
        for c in self.curves.values():  # the two sides of a half-life in one pass
            groups.setdefault(c.half_life_s, []).append(c)
        for same in groups.values():
            update_curves(same, part)
        if self.sampler is not None:
            self.sampler.update(part)

    def assign(self, other: SymbolMarket) -> None:
        """Take ``other``'s estimators in place (a restore with newer state): views keep working."""
        self.volume, self.volatility = other.volume, other.volatility
        self.curves, self.cum_volume = other.curves, other.cum_volume
        self.updates += 1
        if self.sampler is not None and other.sampler is not None:  # the profile is the engine's
            other.sampler.profile = self.sampler.profile
        self.sampler = other.sampler if other.sampler is not None else self.sampler

    @property
    def last_ts(self) -> int:
        """Newest event time seen (very negative before any row)."""
        return self.volume.last_ts if self.volume.last_ts is not None else -(2**62)

    def state(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "volume": self.volume.state(), "volatility": self.volatility.state(),
                "cum_volume": self.cum_volume,
                "curves": [c.state() for c in self.curves.values()],
                "sampler": None if self.sampler is None else self.sampler.state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolMarket:
        curves = [SymbolCostCurve.from_state(c) for c in state["curves"]]
        return cls(str(state["symbol"]), VolumeEstimator.from_state(state["volume"]),
                   VolatilityEstimator.from_state(state["volatility"]),
                   {(c.side, c.half_life_s): c for c in curves}, float(state["cum_volume"]),
                   None if state.get("sampler") is None else BookSampler.from_state(state["sampler"]))
