"""agent.core.forecast.profile (IntradayProfile) and .profile_set (the profile.json file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import ConfigError
from agent.core.forecast.profile import DAY_NS, KINDS, IntradayProfile, time_of_day_s
from agent.core.forecast.profile_set import SCHEMA, ProfileSet, describe
from feeds.book import BookBatch
from tests.unit.agent.books import NS, T0, ladder_book

SIZES = np.linspace(50, 500, 10)
WINTER = 1_736_951_400 * NS  # 2025-01-15 14:30 UTC = 09:30 New York (EST)


def _day(day: int, *, spread: tuple[int, int], trades: tuple[int, int], vol: tuple[float, float],
         t0: int = T0, seed: int = 0) -> BookBatch:
    """Two hours from ``t0 + day`` days, one event a second; per hour: half-spread, trade spacing,
    and mid volatility (cents per sqrt(second))."""
    rng = np.random.default_rng(seed + day)
    start = t0 + day * DAY_NS
    steps = rng.standard_normal(7200) * np.repeat(vol, 3600)
    mid = 50.0 + np.round(np.cumsum(steps)) / 100.0  # one walk, whole cents
    hours = []
    for h in range(2):
        ts = start + (h * 3600 + np.arange(3600)) * NS
        hours.append(ladder_book(ts, mid=mid[h * 3600:(h + 1) * 3600], half_spread_ticks=spread[h],
                                 trade_every=trades[h]))
    return BookBatch.concat(hours)


DAYS = [
    _day(0, spread=(3, 1), trades=(20, 5), vol=(2.0, 1.0)),
    _day(1, spread=(2, 1), trades=(10, 5), vol=(1.5, 1.0)),
    _day(2, spread=(4, 2), trades=(20, 4), vol=(3.0, 0.5)),
]


def _learn(days: list[BookBatch], **kw: object) -> IntradayProfile:
    return IntradayProfile.learn(days, bucket_s=1800.0, sizes=SIZES, **kw)  # type: ignore[arg-type]


def test_profile_from_n_days_is_the_average_of_each_days_shape_with_mean_one() -> None:
    together = _learn(DAYS)
    alone = [_learn([d]) for d in DAYS]
    assert together.days == 3 and together.centres_s.size == 4
    for kind in KINDS:
        np.testing.assert_allclose(together.factors[kind],
                                   np.mean([p.factors[kind] for p in alone], axis=0), rtol=1e-9)
        assert together.factors[kind].mean() == pytest.approx(1.0)
    # the shapes themselves: wider first hour, busier second hour, calmer second hour
    f = together.factors
    assert f["beta"][:2].mean() > 1.5 * f["beta"][2:].mean()
    assert f["volume"][2:].mean() > 2.0 * f["volume"][:2].mean()
    assert f["sigma"][:2].mean() > 1.5 * f["sigma"][2:].mean()


def test_profile_levels_and_dispersion_come_from_the_days() -> None:
    prof = _learn(DAYS)
    rates = []  # shares per covered second, mean over a day's four buckets
    for d in DAYS:
        t = d.action == "T"
        per_bucket = np.bincount((d.ts_event[t] - d.ts_event[0]) // (1800 * NS), weights=d.size[t])
        rates.append((per_bucket / 1800.0).mean())
    assert prof.levels["volume"] == pytest.approx(np.mean(rates), rel=0.01)
    shapes = np.array([_learn([d]).factors["volume"] for d in DAYS])
    np.testing.assert_allclose(prof.dispersion["volume"], shapes.std(axis=0, ddof=1), atol=0.02)
    assert _learn(DAYS[:1]).dispersion == {}  # one day: no day-to-day spread to report


def test_time_of_day_in_the_exchange_zone_keeps_the_open_at_0930_across_dst() -> None:
    summer = IntradayProfile.learn(DAYS, bucket_s=1800.0, sizes=SIZES, tz="America/New_York")
    utc = _learn(DAYS)
    open_summer, open_winter = T0 + 900 * NS, WINTER + 900 * NS  # 09:45 New York, both
    assert time_of_day_s(open_winter, "America/New_York") == pytest.approx(9.75 * 3600)
    assert summer.factor("beta", open_winter) == pytest.approx(summer.factor("beta", open_summer))
    # in UTC the winter open falls an hour later, in the summer's second-hour buckets
    assert utc.factor("beta", open_winter) == pytest.approx(utc.factor("beta", T0 + 4500 * NS))
    assert summer.centres_s[0] == pytest.approx(9.75 * 3600)


def test_pooled_prior_is_used_and_flagged_for_a_symbol_without_history() -> None:
    other = [_day(k, spread=(1, 1), trades=(5, 20), vol=(1.0, 1.0), seed=9) for k in range(2)]
    ps = ProfileSet.learn({"AAA": [(f"2025-04-0{k + 3}", d) for k, d in enumerate(DAYS)],
                           "BBB": [(f"2025-04-0{k + 3}", d) for k, d in enumerate(other)],
                           "NEW": []}, bucket_s=1800.0, tz="UTC")
    own, prior = ps.for_symbol("AAA"), ps.for_symbol("NEW")
    assert not own.pooled and own.symbols == ("AAA",) and own.days == 3
    assert prior is ps.pooled and prior.pooled and prior.symbols == ("AAA", "BBB")
    assert prior.days == 5 and prior.levels == {}  # a shape, not a level
    assert ps.for_symbol("ZZZ") is prior
    both = np.mean([ps.profiles["AAA"].factors["volume"], ps.profiles["BBB"].factors["volume"]], axis=0)
    np.testing.assert_allclose(prior.factors["volume"], both / both.mean())
    assert "pooled shape of AAA, BBB" in describe(prior)
    assert ProfileSet.learn({"AAA": []}).for_symbol("AAA").is_flat


def test_profile_set_round_trips_through_strict_json(tmp_path: Path) -> None:
    ps = ProfileSet.learn({"AAA": [("2025-04-03", DAYS[0]), ("2025-04-04", DAYS[1])],
                           "BBB": [("2025-04-03", DAYS[2])]}, tz="America/New_York")
    path = ps.save(tmp_path / "profile.json")
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["schema"] == SCHEMA
    back = ProfileSet.load(path)
    assert back.to_dict() == ps.to_dict()
    t = T0 + np.arange(0, 7200, 300) * NS
    for sym in ("AAA", "BBB", "other"):
        for kind in KINDS:
            np.testing.assert_array_equal(back.for_symbol(sym).factor(kind, t),
                                          ps.for_symbol(sym).factor(kind, t))
    assert back.profiles["AAA"].dates == ("2025-04-03", "2025-04-04")


def test_profile_files_that_are_not_profiles_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"beta": [1, 2]}')
    with pytest.raises(ConfigError, match="not an intraday profile file"):
        ProfileSet.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ProfileSet.load(bad)
    bad.write_text(json.dumps({"schema": SCHEMA, "symbols": {"A": {"centres_s": [1.0, 2.0],
                                                                   "factors": {"beta": [1.0]}}}}))
    with pytest.raises(ConfigError, match="one value per bucket"):
        ProfileSet.load(bad)


def test_pool_refuses_profiles_on_different_clocks() -> None:
    a = _learn(DAYS[:1])
    b = IntradayProfile.learn(DAYS[:1], bucket_s=1800.0, sizes=SIZES, tz="America/New_York")
    with pytest.raises(ValueError, match="bucket_s or tz"):
        IntradayProfile.pool([a, b])
    assert IntradayProfile.pool([]).is_flat


def test_old_profile_dicts_without_provenance_still_load() -> None:
    old = {"bucket_s": 1800.0, "days": 2, "centres_s": [0.0, 86_400.0],
           "factors": {"volume": [1.0, 3.0]}}
    prof = IntradayProfile.from_dict(old)
    assert prof.tz == "UTC" and not prof.pooled and prof.symbols == ()
    assert prof.factor("volume", 43_200 * NS) == pytest.approx(2.0)
