"""Intraday shapes of one generated day, varying from day to day around a common shape.

With ``tau`` the minutes since the open and ``T = 390`` (all shapes are 1 at
midday, where the exponentials vanish)::

    activity   u(tau) = 1 + a_o exp(-tau / 20) + a_c exp(-(T - tau) / 20)
    volatility v(tau) = 1 + v_o exp(-tau / 20) + v_c exp(-(T - tau) / 15)
    depth      w(tau) = exp(q_o exp(-tau / 20) + q_c exp(-(T - tau) / 20))

The common shape has ``a_o, a_c = 2.0, 1.5``, ``v_o, v_c = 1.8, 2.5`` and the
depth coefficients measured on FROG (``replay.synthetic.params.LIQUIDITY``).
``v_c`` is larger than ``v_o`` because the book is deeper at the close
(``w``) and a deeper book lets the mid lag the fair value: with it, the
realised 10-second mid volatility of the last 30 minutes is about 1.25x
midday in the sample (FROG: 1.38x).
:func:`draw_day_shape` multiplies each of the six amplitudes, and the day's
levels (events, volatility, spread, depth, opening price), by independent mean-one
lognormal factors ``exp(s z - s^2 / 2)`` with the log-sds of
``replay.synthetic.params.DAY_VARIATION``, so every day has a U shape but no
two days have the same one, and a profile learned from several days is the
average of shapes that each differ from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from replay.synthetic.params import DAY_VARIATION, LIQUIDITY, DayVariation

F64 = npt.NDArray[np.float64]
SESSION_MIN = 390.0


@dataclass(frozen=True, slots=True)
class DayShape:
    """Amplitudes of the day's intraday shapes and multipliers of its levels."""

    activity_open: float = 2.0
    activity_close: float = 1.5
    vol_open: float = 1.8
    vol_close: float = 2.5  # the deeper closing book damps the mid: realised close ~1.25x midday
    depth_open: float = LIQUIDITY.depth_open
    depth_close: float = LIQUIDITY.depth_close
    events_scale: float = 1.0
    vol_scale: float = 1.0
    spread_scale: float = 1.0
    depth_scale: float = 1.0
    price_scale: float = 1.0  # the day's opening fair value is price0 times this

    def activity(self, tau_min: F64) -> F64:
        """``u(tau)``: relative event intensity."""
        tau = np.asarray(tau_min, dtype=np.float64)
        return np.asarray(1.0 + self.activity_open * np.exp(-tau / 20.0)
                          + self.activity_close * np.exp(-(SESSION_MIN - tau) / 20.0))

    def volatility(self, tau_min: F64) -> F64:
        """``v(tau)``: relative volatility of the fair value (also widens the target spread)."""
        tau = np.asarray(tau_min, dtype=np.float64)
        return np.asarray(1.0 + self.vol_open * np.exp(-tau / 20.0)
                          + self.vol_close * np.exp(-(SESSION_MIN - tau) / 15.0))

    def depth(self, tau_min: F64) -> F64:
        """``w(tau)``: relative depth target."""
        tau = np.asarray(tau_min, dtype=np.float64)
        return np.asarray(np.exp(self.depth_open * np.exp(-tau / 20.0)
                                 + self.depth_close * np.exp(-(SESSION_MIN - tau) / 20.0)))


COMMON = DayShape()
_SHAPE_FIELDS = ("activity_open", "activity_close", "vol_open", "vol_close", "depth_open", "depth_close")


def draw_day_shape(rng: np.random.Generator, variation: DayVariation = DAY_VARIATION,
                   base: DayShape = COMMON) -> DayShape:
    """``base`` with every amplitude and level multiplied by a mean-one lognormal factor.

    Draws exactly one normal per field from ``rng`` (in the order of ``DayShape``'s
    fields), so the rest of the day's random stream does not depend on them.
    """
    z = rng.standard_normal(len(fields(DayShape)))
    sd = {name: variation.shape for name in _SHAPE_FIELDS} | {
        "events_scale": variation.events, "vol_scale": variation.vol,
        "spread_scale": variation.spread, "depth_scale": variation.depth,
        "price_scale": variation.price}
    changes = {f.name: getattr(base, f.name) * float(np.exp(sd[f.name] * zi - sd[f.name] ** 2 / 2))
               for f, zi in zip(fields(DayShape), z, strict=True)}
    return replace(base, **changes)
