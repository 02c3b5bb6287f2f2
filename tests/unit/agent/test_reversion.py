"""ReversionEstimator: known-answer persistence of an AR(1) deviation, prior shrinkage, state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.core.errors import DataError
from agent.core.forecast.reversion import RHO_MAX, ReversionEstimator, ReversionSettings

LEVEL = 0.03
STEP = 10.0  # seconds between samples


def ar1_series(phi: float, n: int, seed: int, sd: float = 0.15) -> np.ndarray:
    """``y_j = LEVEL (1 + d_j)``, ``d_j = phi d_{j-1} + e_j`` stationary with sd ``sd``."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n) * sd * math.sqrt(1.0 - phi * phi)
    d = np.empty(n)
    d[0] = rng.standard_normal() * sd
    for j in range(1, n):
        d[j] = phi * d[j - 1] + e[j]
    assert d.min() > -1.0  # the clip never binds: the test is about the AR(1) fit
    return LEVEL * (1.0 + d)


def bartlett_sd(phi: float, m: int, n: int) -> float:
    """Large-sample sd of the lag-m sample autocorrelation of an AR(1) (Bartlett's formula)."""
    p2m = phi ** (2 * m)
    var = ((1 + phi * phi) * (1 - p2m) / (1 - phi * phi) - 2 * m * p2m) / n
    return math.sqrt(var)


def exact_settings(**kw: float) -> ReversionSettings:
    """No forgetting, a level that is the plain mean, no prior: the estimator is the OLS slope."""
    base = dict(sample_s=STEP, lag_s=60.0, level_half_life_s=1e9, memory_half_life_s=1e9, prior_s=0.0)
    base.update(kw)
    return ReversionSettings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("phi", "seed"), [(0.9, 1), (0.97, 2), (0.6, 3)])
def test_synthetic_ar1_deviation_recovers_its_rho_within_four_sampling_sds(phi: float, seed: int) -> None:
    n = 20_000
    y = ar1_series(phi, n, seed)
    est = ReversionEstimator(exact_settings())
    est.add(np.arange(n, dtype=np.int64), y)
    m = est.settings.lag_samples
    assert m == 6 and est.lag_s == 60.0
    truth = phi ** m
    tol = 4.0 * bartlett_sd(phi, m, n)
    assert abs(est.rho_lag() - truth) < tol, (est.rho_lag(), truth, tol)
    assert est.level == pytest.approx(LEVEL, rel=0.02)


def test_persistence_is_per_second_so_different_lags_agree_over_one_period() -> None:
    """rho over 60 s estimated at a 30 s lag (squared) equals the one estimated at 60 s."""
    phi, n = 0.9, 20_000
    y = ar1_series(phi, n, 4)
    at = {}
    for lag in (30.0, 60.0, 120.0):
        est = ReversionEstimator(exact_settings(lag_s=lag))
        est.add(np.arange(n, dtype=np.int64), y)
        at[lag] = float(est.persistence(60.0))
    truth = phi ** 6
    tol = 4.0 * bartlett_sd(phi, 12, n)  # the widest of the three
    assert all(abs(v - truth) < tol for v in at.values()), at
    est = ReversionEstimator(exact_settings())
    est.add(np.arange(n, dtype=np.int64), y)
    # persistence over s seconds is rho_l^(s/l): 0 s -> 1, one lag -> rho_l, two lags -> rho_l^2
    p = est.persistence(np.array([0.0, 60.0, 120.0]))
    assert p == pytest.approx([1.0, est.rho_lag(), est.rho_lag() ** 2])


def test_prior_shrinks_the_estimate_by_equivalent_pairs() -> None:
    """rho = (n rho_ols + n0 rho0) / (n + n0) with n0 = prior_s / sample_s pairs."""
    s = ReversionSettings(sample_s=10.0, lag_s=10.0, level_half_life_s=1e9, memory_half_life_s=1e9,
                          prior_half_life_s=10.0, prior_s=30.0)  # rho0 = 0.5 per lag, n0 = 3
    est = ReversionEstimator(s)
    assert est.rho_lag() == pytest.approx(0.5)  # before any pair: the prior
    # level = 1 after the first sample; then samples 1.5, 1.5: deviations are computed
    # against the level before each sample (out of sample)
    y = [1.0, 1.5, 1.5, 0.5]
    est.add(np.arange(4, dtype=np.int64), np.array(y))
    levels = [1.0, 1.25, 4.0 / 3.0]
    d = [y[j] / levels[j - 1] - 1.0 for j in (1, 2, 3)]
    sxy, sxx, n = d[0] * d[1] + d[1] * d[2], d[0] ** 2 + d[1] ** 2, 2.0
    want = (n * sxy / sxx + 3.0 * 0.5) / (n + 3.0)
    assert est.pairs == pytest.approx(n)
    assert est.rho_lag() == pytest.approx(max(0.0, want))
    assert est.level == pytest.approx(np.mean(y))


def test_default_prior_is_no_reversion_and_rho_is_clipped_below_one() -> None:
    est = ReversionEstimator()
    assert est.rho_lag() == RHO_MAX  # infinite prior half-life: no reversion bet without data
    with pytest.raises(DataError):
        _ = est.level
    trending = LEVEL * np.exp(np.linspace(0.0, 3.0, 500))  # deviations never revert
    est.add(np.arange(500, dtype=np.int64), trending)
    assert 0.0 <= est.rho_lag() <= RHO_MAX
    alternating = ReversionEstimator(exact_settings(lag_s=10.0))
    alternating.add(np.arange(400, dtype=np.int64), LEVEL * (1.0 + 0.5 * (-1.0) ** np.arange(400)))
    assert alternating.rho_lag() == 0.0  # negative slope clipped to zero


def test_deviations_are_winsorised_at_the_cap() -> None:
    est = ReversionEstimator(exact_settings(lag_s=10.0, deviation_cap=3.0))
    est.add(np.arange(20, dtype=np.int64), np.full(20, LEVEL))
    assert est.deviation(LEVEL * 50) == 3.0
    assert est.deviation(0.0) == -1.0
    assert est.deviation(LEVEL * 1.2) == pytest.approx(0.2)


def test_gaps_break_pairs_and_chunking_does_not_change_anything() -> None:
    y = ar1_series(0.9, 3_000, 5)
    idx = np.arange(3_000, dtype=np.int64)
    keep = (idx % 500) < 450  # 50-sample holes: no pair may straddle them with a wrong lag
    one = ReversionEstimator(exact_settings())
    one.add(idx[keep], y[keep])
    chunked = ReversionEstimator(exact_settings())
    for part in np.array_split(np.flatnonzero(keep), 37):
        chunked.add(idx[part], y[part])
    assert _close(chunked.state(), one.state())
    m = one.settings.lag_samples
    with_dev = {int(j) for k, j in enumerate(idx[keep]) if k >= m}  # deviations once the level has m samples
    pairs = sum(1 for j in with_dev if j - m in with_dev)
    assert one.pairs == pytest.approx(pairs, rel=1e-4)  # forgetting is negligible here


def _close(a: dict[str, object], b: dict[str, object]) -> bool:
    for k, v in a.items():
        w = b[k]
        if isinstance(v, float) and isinstance(w, float):
            assert v == pytest.approx(w, rel=1e-9, abs=1e-15), k
        else:
            assert v == w, k
    return True


def test_state_round_trips_through_json_and_continues_identically() -> None:
    y = ar1_series(0.9, 2_000, 6)
    idx = np.arange(2_000, dtype=np.int64)
    a = ReversionEstimator()
    a.add(idx[:1_000], y[:1_000])
    b = ReversionEstimator.from_state(json.loads(json.dumps(a.state(), allow_nan=False)))
    a.add(idx[1_000:], y[1_000:])
    b.add(idx[1_000:], y[1_000:])
    assert a.state() == b.state()
    assert b.settings.prior_half_life_s == math.inf
    with pytest.raises(DataError):
        ReversionEstimator.from_state({"kind": "volume", "version": 1})
