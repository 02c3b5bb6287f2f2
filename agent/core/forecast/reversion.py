r"""Online long-run level and persistence (AR(1)) of a positive series' relative deviations.

A :class:`ReversionEstimator` is fed samples ``y_j > 0`` of one quantity (a
snapshot's fitted ``beta`` or ``gamma``, the traded volume rate) on the
absolute event-time grid ``t_j = j * sample_s``, already divided by the
intraday profile factor of their time of day (deseasonalised). It keeps

* the **long-run level**, an exponentially weighted mean in event time
  (half-life ``H_L = level_half_life_s``, bias-corrected like the other
  estimators: weights sum, not one)::

      L = sum_j w_j y_j / sum_j w_j,        w_j = 2^{-(T - t_j) / H_L}

* the **relative deviation** of each sample from the level *before* it
  (out of sample), winsorised to ``[-1, c]`` (``c = deviation_cap``) so that
  a single extreme snapshot cannot dominate::

      d_j = clip(y_j / L_{j-1} - 1, -1, c)

* the **persistence** of the deviation at lag ``l = m * sample_s``
  (``m = round(lag_s / sample_s)``), the least-squares slope through the
  origin of ``d_j`` on ``d_{j-m}`` -- exactly the forecast rule
  ``E[d_{j+m} | d_j] = rho d_j`` -- with exponential forgetting of the
  pairs (half-life ``H_M = memory_half_life_s``, weights ``v``) and
  shrinkage towards a prior ``rho_0`` that counts as ``n_0 = prior_s /
  sample_s`` pairs::

      S_xy = sum v d_{j-m} d_j,   S_xx = sum v d_{j-m}^2,   n = sum v
      rho_l = clip((S_xy + n_0 rho_0 S_xx / n) / (S_xx + n_0 S_xx / n), 0, 1 - 1e-9)
            = clip((n rho_ols + n_0 rho_0) / (n + n_0), 0, 1 - 1e-9)

  (``rho_l = rho_0`` before any pair). ``rho_0 = 2^{-l / prior_half_life_s}``.
  The defaults make a cold start behave like the earlier (EWMA) model: for
  the cost an infinite prior half-life (``rho_0 = 1``: a deviation persists,
  so every slot is priced like now and the plan is an even split: no timing
  bet without evidence); for the volume a zero one (``rho_0 = 0``: the
  level, as the EWMA caps had it -- persistence one would turn one quiet
  minute into a near-zero cap for the whole horizon).

Relative rather than log deviations: the planner's cost is linear in
``beta`` (and in ``gamma``), so what it needs is the conditional *mean* in
levels, which the linear rule gives directly; ``1 + a d >= 0`` for ``d >= -1``
and ``0 <= a <= 1`` keeps every forecast non-negative. (Log deviations would
forecast the conditional median and need a floor for ``gamma``, whose
snapshot fits are often at their floor when the order fits in the top level.)

**Period-length aware.** The persistence over ``s`` seconds of event time is
``rho(s) = rho_l^(s / l)`` (a per-second rate ``rho_l^(1/l)``), so parents
with different periods use consistent forecasts. Samples are equally spaced,
so the overlapping pairs of a lag ``m > 1`` use all the data.

**Known limit.** A real deviation is not exactly AR(1): on FROG the
autocorrelation of the snapshot's ``beta`` deviation from a 30-minute level
is 0.59, 0.49, 0.48 at 1, 2, 3 minutes (a persistent part plus transient
noise), so a one-lag fit understates persistence beyond one period. The
issue's one-parameter model is kept; ``bench/forecast_skill.py`` measures
what it costs (k-step errors against the alternatives).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agent.core.errors import DataError
from agent.core.model import NS_PER_S, FloatArray, IntArray

__all__ = ["RHO_MAX", "ReversionEstimator", "ReversionSettings"]

#: Upper clip of the persistence per lag (strictly below one: deviations revert eventually).
RHO_MAX = 1.0 - 1e-9


@dataclass(frozen=True, slots=True)
class ReversionSettings:
    """Parameters of the reverting forecast (seconds of event time; see the module docstring).

    ``sample_s`` is the sampling grid of the book; ``lag_s`` the lag at which
    persistence is estimated (one minute: the default period); ``level_half_life_s``
    the long-run level's half-life (300 s: without an intraday profile the level
    must follow the intraday shape itself -- a 30-minute half-life lags the
    U-shape by most of an hour and biased FROG's level up by ~4 bps; with a
    profile a slower level is as good, see ``bench/mpc_ablation.py``); ``memory_half_life_s`` the forgetting of
    the persistence statistics; ``prior_half_life_s`` / ``prior_s`` the prior
    on the deviation's half-life and its weight in seconds of data
    (``volume_prior_half_life_s`` for the volume; see the module docstring);
    ``deviation_cap`` the winsorisation of relative deviations; ``max_gap_s``
    the longest gap between events still counted as session time.
    """

    sample_s: float = 10.0
    lag_s: float = 60.0
    level_half_life_s: float = 300.0
    memory_half_life_s: float = 7200.0
    prior_half_life_s: float = math.inf
    volume_prior_half_life_s: float = 0.0
    prior_s: float = 600.0
    deviation_cap: float = 3.0
    max_gap_s: float = 900.0

    def __post_init__(self) -> None:
        positive = (self.sample_s, self.lag_s, self.level_half_life_s, self.memory_half_life_s,
                    self.deviation_cap, self.max_gap_s)
        non_negative = (self.prior_half_life_s, self.volume_prior_half_life_s, self.prior_s)
        if not all(v > 0 for v in positive) or not all(v >= 0 for v in non_negative):
            raise ValueError("reversion settings must be positive (priors non-negative)")

    @property
    def lag_samples(self) -> int:
        """``m = max(1, round(lag_s / sample_s))``."""
        return max(1, round(self.lag_s / self.sample_s))

    @property
    def sample_ns(self) -> int:
        return round(self.sample_s * NS_PER_S)

    @property
    def prior_rho(self) -> float:
        """``rho_0 = 2^(-l / prior_half_life_s)`` at the lag ``l = m * sample_s`` (0 for a zero half-life)."""
        h = self.prior_half_life_s
        return min(RHO_MAX, math.exp2(-self.lag_samples * self.sample_s / h)) if h > 0 else 0.0

    def for_volume(self) -> ReversionSettings:
        """The same settings with the volume's prior half-life as the prior."""
        return replace(self, prior_half_life_s=self.volume_prior_half_life_s)


class ReversionEstimator:
    """Level and persistence of one deseasonalised positive series (module docstring)."""

    VERSION = 1

    def __init__(self, settings: ReversionSettings | None = None) -> None:
        self.settings = settings or ReversionSettings()
        self.level_sum = 0.0  # sum w y
        self.level_weight = 0.0  # sum w
        self.samples = 0  # undiscounted count of samples in the level
        self.sxy = 0.0
        self.sxx = 0.0
        self.pairs = 0.0  # n, discounted
        self.pair_index: int | None = None  # grid index of the last pair
        self.recent: dict[int, float] = {}  # grid index -> deviation, the last m samples
        self.last_index: int | None = None  # grid index of the last sample (the level's time)
        st = self.settings
        self._m, self._cap = st.lag_samples, st.deviation_cap
        self._level_step = math.exp2(-st.sample_s / st.level_half_life_s)  # decay per grid step
        self._memory_step = math.exp2(-st.sample_s / st.memory_half_life_s)
        self.last_deviation = math.nan  # the latest sample's deviation ...
        self.last_deviation_index: int | None = None  # ... and its grid index

    # -------------------------------------------------------------- reads
    @property
    def ready(self) -> bool:
        """True once the level has seen a positive sample."""
        return self.level_weight > 0.0 and self.level_sum > 0.0

    @property
    def level(self) -> float:
        """Long-run (deseasonalised) level ``L``; raises ``DataError`` before data."""
        if not self.ready:
            raise DataError("the reversion estimator has no sample yet")
        return self.level_sum / self.level_weight

    @property
    def lag_s(self) -> float:
        """Effective lag ``l = m * sample_s`` of the persistence, seconds."""
        return self.settings.lag_samples * self.settings.sample_s

    def rho_lag(self) -> float:
        """Persistence per lag ``l``, shrunk towards the prior and clipped to ``[0, 1)``."""
        rho0 = self.settings.prior_rho
        if self.pairs <= 0.0 or self.sxx <= 0.0:
            return rho0
        n0 = self.settings.prior_s / self.settings.sample_s
        rho = (self.sxy + n0 * rho0 * self.sxx / self.pairs) / (self.sxx * (1.0 + n0 / self.pairs))
        return min(RHO_MAX, max(0.0, rho))

    def persistence(self, seconds: float | FloatArray) -> FloatArray:
        """``rho(s) = rho_l^(s / l)``: the share of a deviation left after ``s`` seconds."""
        s = np.maximum(np.asarray(seconds, dtype=np.float64), 0.0)
        return np.asarray(self.rho_lag() ** (s / self.lag_s), dtype=np.float64)

    def deviation(self, value: float) -> float:
        """``clip(value / L - 1, -1, c)`` for a deseasonalised value (0 before data)."""
        if not self.ready:
            return 0.0
        return self.clip(value / self.level - 1.0)

    def clip(self, d: float) -> float:
        return min(self.settings.deviation_cap, max(-1.0, d)) if math.isfinite(d) else 0.0

    # ------------------------------------------------------------ updates
    def add(self, index: IntArray, values: FloatArray) -> None:
        """Add samples at grid indices ``index`` (``t = index * sample_s``, increasing).

        Missing grid points (stale book, non-finite values) are simply not
        passed: a pair needs both ends present. Deviations start once the
        level holds ``m`` samples.
        """
        idx = np.asarray(index, dtype=np.int64)
        val = np.asarray(values, dtype=np.float64)
        for j, y in zip(idx.tolist(), val.tolist(), strict=True):
            if self.last_index is not None and j <= self.last_index:
                continue  # already seen (a replayed chunk)
            if math.isfinite(y):
                self._add_one(j, y)

    def _add_one(self, j: int, y: float) -> None:
        m = self._m
        if self.samples >= m and self.level_sum > 0.0:
            d = y * self.level_weight / self.level_sum - 1.0
            d = -1.0 if d < -1.0 else (self._cap if d > self._cap else d)
            prev = self.recent.pop(j - m, None)
            if prev is not None:
                if self.pair_index is not None:
                    decay = self._memory_step ** (j - self.pair_index)
                    self.sxy, self.sxx, self.pairs = self.sxy * decay, self.sxx * decay, self.pairs * decay
                self.sxy += prev * d
                self.sxx += prev * prev
                self.pairs += 1.0
                self.pair_index = j
            self.recent[j] = d
            self.last_deviation, self.last_deviation_index = d, j
        if len(self.recent) > m:
            self.recent = {k: v for k, v in self.recent.items() if k > j - m}
        if self.last_index is not None:
            decay = self._level_step ** (j - self.last_index)
            self.level_sum *= decay
            self.level_weight *= decay
        self.level_sum += y if y > 0.0 else 0.0
        self.level_weight += 1.0
        self.samples += 1
        self.last_index = j

    # -------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """JSON-able state (settings and sufficient statistics)."""
        return {"kind": "reversion", "version": self.VERSION, "settings": dict(_settings_dict(self.settings)),
                "level_sum": self.level_sum, "level_weight": self.level_weight,
                "samples": self.samples, "sxy": self.sxy, "sxx": self.sxx, "pairs": self.pairs,
                "pair_index": self.pair_index, "recent": [[k, v] for k, v in sorted(self.recent.items())],
                "last_index": self.last_index, "last_deviation_index": self.last_deviation_index,
                "last_deviation": None if math.isnan(self.last_deviation) else self.last_deviation}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReversionEstimator:
        """Rebuild from :meth:`state`; raises ``DataError`` for another kind or version."""
        if state.get("kind") != "reversion" or state.get("version") != cls.VERSION:
            raise DataError(f"not a reversion v{cls.VERSION} state")
        est = cls(ReversionSettings(**{k: math.inf if v is None else float(v)
                                       for k, v in state["settings"].items()}))
        est.level_sum, est.level_weight = float(state["level_sum"]), float(state["level_weight"])
        est.samples = int(state["samples"])
        est.sxy, est.sxx, est.pairs = float(state["sxy"]), float(state["sxx"]), float(state["pairs"])
        est.pair_index = None if state["pair_index"] is None else int(state["pair_index"])
        est.recent = {int(k): float(v) for k, v in state["recent"]}
        est.last_index = None if state["last_index"] is None else int(state["last_index"])
        est.last_deviation = math.nan if state["last_deviation"] is None else float(state["last_deviation"])
        idx = state["last_deviation_index"]
        est.last_deviation_index = None if idx is None else int(idx)
        return est


@functools.lru_cache(maxsize=64)
def _settings_dict(s: ReversionSettings) -> dict[str, float | None]:
    """Settings as JSON numbers (an infinite value as None: strict JSON has no Infinity); cached per
    settings (frozen), every state record of a parent carries them: callers copy it."""
    values = {f: float(getattr(s, f)) for f in ReversionSettings.__dataclass_fields__}
    return {k: (None if math.isinf(v) else v) for k, v in values.items()}
