"""What the engine keeps per parent order, and the outcomes of feeding it.

:class:`ParentState` is the engine's record of one parent order: progress
from fills only (``filled``, ``notional``; fills de-duplicated on ``fill_id``
in one set, here), the next period to decide, the lot-rounding carry, the last
plan, the periods skipped by reason (``skipped``) and its lifecycle ``status``. :class:`BookResult` is what
``ExecutionEngine.on_book`` returns; :class:`FillOutcome` what ``on_fill`` says.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from agent.core.forecast.cost_forecast import ParentForecaster
from agent.core.impact.parent_fit import ParentImpact
from agent.core.model import ChildOrder, ParentOrder
from agent.core.mpc.rounding import LotRounder
from agent.core.policy import DecisionRecord, Policy

ACTIVE, COMPLETED, CANCELLED, EXPIRED = "active", "completed", "cancelled", "expired"
STATUSES = (ACTIVE, COMPLETED, CANCELLED, EXPIRED)


class FillOutcome(enum.Enum):
    """What :meth:`agent.core.engine.ExecutionEngine.on_fill` did with a fill."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # fill_id seen before for this parent (redelivery): ignored
    UNKNOWN_PARENT = "unknown_parent"
    PARENT_DONE = "parent_done"  # the parent completed: nothing left to fill


@dataclass(slots=True)
class ParentState:
    """The engine's record of one parent order (see the module docstring)."""

    parent: ParentOrder
    policy: Policy
    impact: ParentImpact
    impact_now: ParentImpact | None
    rounder: LotRounder
    filled: float = 0.0
    notional: float = 0.0
    next_period: int = 0
    status: str = ACTIVE
    cum_volume_at_decision: float = 0.0
    fill_ids: set[str] = field(default_factory=set)
    last_plan: tuple[float, ...] = ()
    last_child_ts: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)  # periods decided without a child, by reason
    forecaster: ParentForecaster | None = None  # the reverting forecast on this parent's size grid
    period_ns: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.period_ns = self.parent.period_ns

    def due_ns(self) -> int:
        """Event time of the next decision (the start of period ``next_period``)."""
        return self.parent.start_ns + self.next_period * self.period_ns

    @property
    def done(self) -> bool:
        return self.status != ACTIVE

    def finish(self, status: str) -> None:
        self.status = status

    @property
    def remaining(self) -> float:
        return max(0.0, self.parent.quantity - self.filled)

    @property
    def average_price(self) -> float | None:
        return self.notional / self.filled if self.filled else None


@dataclass(slots=True)
class BookResult:
    """What one ``on_book`` call decided: child orders and every decision record (skips included)."""

    children: list[ChildOrder] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)

    def extend(self, other: BookResult) -> None:
        self.children.extend(other.children)
        self.decisions.extend(other.decisions)
