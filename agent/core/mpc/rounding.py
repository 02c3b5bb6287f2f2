"""Lot rounding of the current slot, with the rounding residual carried forward."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LotRounder:
    """Round the current slot to the lot size and carry the residual forward.

    ``q = min(lot * round((planned + carry) / lot), lot * floor(remaining / lot))``,
    then if less than one lot would be left over and the target covers at least
    half of that odd tail, the tail is sent too (so an order of 1050 shares with
    lot 100 can finish). ``carry = planned + carry - q``, clipped to one lot.
    Never returns more than ``remaining`` nor a negative quantity.
    """

    lot_size: float = 1.0
    carry: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not self.lot_size > 0:
            raise ValueError("lot_size must be positive")

    def round(self, planned: float, remaining: float) -> float:
        """Quantity to send now for a planned ``planned`` with ``remaining`` left."""
        lot = self.lot_size
        rem = max(float(remaining), 0.0)
        target = max(float(planned), 0.0) + self.carry
        q = lot * math.floor(target / lot + 0.5) if target > 0 else 0.0
        q = min(q, lot * math.floor(rem / lot + 1e-9))
        tail = rem - q
        if 0 < tail < lot - 1e-9 and target - q >= 0.5 * tail:
            q = rem
        q = max(q, 0.0)
        self.carry = float(min(max(target - q, -lot), lot))
        return q

    def state(self) -> dict[str, float]:
        return {"lot_size": self.lot_size, "carry": self.carry}

    @classmethod
    def from_state(cls, state: dict[str, float]) -> LotRounder:
        return cls(lot_size=float(state["lot_size"]), carry=float(state["carry"]))
