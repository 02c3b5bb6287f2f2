"""Replay runner: conservation, caps, crossed books, fills fed back, determinism, windows."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.model import NS_PER_S
from feeds.book import BookBatch
from replay.report import build_summary
from replay.runner import ReplaySpec, replay, window_starts
from replay.strategies import STRATEGIES
from tests.unit.agent.books import T0, ladder_book

MIN = 60 * NS_PER_S


def _book(minutes: int = 90, seed: int = 7, depth: float = 300.0) -> BookBatch:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(minutes * 60 * 2) * (NS_PER_S // 2)
    mid = np.round(40.0 + np.cumsum(rng.normal(0.0, 0.004, len(ts))), 2)
    return ladder_book(ts, mid=mid, depth=depth, trade_every=7, trade_size=60.0)


def _spec(side: str = "buy", q: float = 6000.0, a: int = 30, b: int = 60, **kw: object) -> ReplaySpec:
    return ReplaySpec("TEST", side, q, T0 + a * MIN, T0 + b * MIN, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_replay_conserves_quantity_and_respects_caps_and_limits(side: str) -> None:
    book = _book()
    res = replay(book, _spec(side, max_participation=0.1))
    for name, run in res.windows[0].runs.items():
        assert run.filled <= run.parent.quantity + 1e-9, name
        caps = {d.period_index: d.cap for d in run.decisions}
        by_child: dict[str, float] = {}
        for f in run.fills:
            by_child[f.child_order_id] = by_child.get(f.child_order_id, 0.0) + f.quantity
        for c in run.children:
            assert c.quantity <= caps[c.period_index] + 1e-9, (name, c)
            assert by_child.get(c.child_order_id, 0.0) <= c.quantity + 1e-9
            fills = [f for f in run.fills if f.child_order_id == c.child_order_id]
            if side == "buy":
                assert all(f.price <= c.limit_price for f in fills)
            else:
                assert all(f.price >= c.limit_price for f in fills)
        # one decision per period at most, all inside the window
        periods = [d.period_index for d in run.decisions]
        assert len(periods) == len(set(periods)) and max(periods) < run.parent.n_periods


def test_replay_caps_bind_on_a_large_order_and_the_rest_stays_unfilled() -> None:
    res = replay(_book(), _spec(q=200_000.0, max_participation=0.05))
    for name, run in res.windows[0].runs.items():
        assert run.filled < 200_000.0, name
        assert all(c.quantity <= d.cap + 1e-9 for c in run.children for d in run.decisions
                   if d.period_index == c.period_index)


def test_replay_never_orders_on_a_crossed_book() -> None:
    book = _book()
    ts = book.ts_event
    for k in range(30, 60, 3):  # cross the first rows of every third period
        i = int(np.searchsorted(ts, T0 + k * MIN))
        book.bid_px[i:i + 4, 0] = book.ask_px[i:i + 4, 0] + 0.02
    crossed = book.bid_px[:, 0] >= book.ask_px[:, 0]
    res = replay(book, _spec())
    for run in res.windows[0].runs.values():
        assert run.children
        for c in run.children:
            assert not crossed[int(np.searchsorted(ts, c.ts_event))]


def test_fills_reach_the_engine_before_its_next_decision() -> None:
    res = replay(_book(), _spec(strategies=("twap", "mpc")))
    for run in res.windows[0].runs.values():
        for d in run.decisions:
            before = sum(f.quantity for f in run.fills if f.ts_event < d.ts_ns)
            assert d.remaining_before == pytest.approx(run.parent.quantity - before)


def test_engine_is_fed_from_the_session_start_so_estimators_are_warm() -> None:
    res = replay(_book(), _spec(strategies=("mpc",)))
    first = res.windows[0].runs["mpc"].decisions[0]
    assert np.isfinite(first.cap) and first.cap > 0  # volume seen before the parent's start
    assert first.sigma > 0


def test_replay_is_deterministic_apart_from_measured_solve_times() -> None:
    def strip(obj: object) -> object:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not k.startswith("solve_us")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    book = _book()
    a = build_summary(replay(book, _spec(), starts=3, session=(T0, T0 + 90 * MIN)))
    b = build_summary(replay(book, _spec(), starts=3, session=(T0, T0 + 90 * MIN)))
    assert strip(a) == strip(b)
    assert a["runs"][0]["strategies"]["mpc"]["solve_us_p50"] is not None


def test_multiple_starts_run_every_strategy_on_each_window() -> None:
    res = replay(_book(), _spec(), starts=4, session=(T0, T0 + 90 * MIN))
    assert [w.start_ns for w in res.windows] == window_starts(T0, T0 + 90 * MIN, 30 * MIN, 4, MIN)
    for w in res.windows:
        assert set(w.runs) == set(STRATEGIES)
        assert all(r.parent.start_ns == w.start_ns and r.parent.end_ns == w.end_ns for r in w.runs.values())


def test_window_starts_spread_over_the_session_on_the_period_grid() -> None:
    s = window_starts(T0, T0 + 390 * MIN, 60 * MIN, 5, MIN)
    assert s[0] == T0 and s[-1] == T0 + 330 * MIN
    assert all((x - T0) % MIN == 0 for x in s) and s == sorted(s)
    assert window_starts(T0, T0 + 390 * MIN, 60 * MIN, 1, MIN) == [T0]
    with pytest.raises(ValueError, match="longer than the session"):
        window_starts(T0, T0 + 30 * MIN, 60 * MIN, 3, MIN)
    with pytest.raises(ValueError, match="do not fit"):
        window_starts(T0, T0 + 62 * MIN, 60 * MIN, 5, MIN)


def test_replay_with_history_learns_vwap_from_other_days_only() -> None:
    today = _book()
    day = 86_400 * NS_PER_S
    yesterday = _book(seed=3)
    yesterday = yesterday.take(slice(None))
    object.__setattr__(yesterday, "ts_event", yesterday.ts_event - day)
    res = replay(today, _spec(strategies=("vwap",)), history=[yesterday])
    assert not res.volume_curve.look_ahead and res.history_days == 1
    assert replay(today, _spec(strategies=("vwap",))).volume_curve.look_ahead


def test_unknown_strategy_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="twap"):
        _spec(strategies=("mpc", "magic"))


def test_wall_clock_window_is_in_the_exchange_time_zone_across_dst() -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    from replay.session import wall_clock_ns

    ny = ZoneInfo("America/New_York")
    assert wall_clock_ns(date(2025, 4, 3), "10:00", ny) == T0 + 30 * MIN  # EDT: 14:00 UTC
    assert wall_clock_ns(date(2025, 1, 3), "09:30", ny) % (86_400 * NS_PER_S) == 14 * 3600 * NS_PER_S + 30 * MIN
    with pytest.raises(ValueError, match="HH:MM"):
        wall_clock_ns(date(2025, 4, 3), "ten", ny)


def test_split_days_replays_the_last_day_and_keeps_the_others_as_history() -> None:
    from feeds.book import BookBatch as BB
    from replay.session import resolve_window, split_days

    day = 86_400 * NS_PER_S
    a = ladder_book(T0 - day + np.arange(100) * NS_PER_S)
    b = ladder_book(T0 + 5 * NS_PER_S + np.arange(200) * NS_PER_S)
    days = split_days(BB.concat([a, b]))
    assert [len(x) for x in days.books] == [100, 200] and len(days.history) == 1
    start, end, s0, s1 = resolve_window(days, None, None)
    assert (start, s0) == (T0, T0) and end == s1 == T0 + 4 * MIN  # floored / ceiled to the minute
    with pytest.raises(ValueError, match="after"):
        resolve_window(days, "09:40", "09:35")


def test_twap_through_the_engine_sends_equal_children_when_liquidity_allows() -> None:
    res = replay(_book(depth=1000.0), _spec(q=6000.0, max_participation=0.5, strategies=("twap", "ac")))
    for run in res.windows[0].runs.values():
        assert [c.quantity for c in run.children] == [200.0] * 30  # Q / N every period
        assert run.filled == pytest.approx(6000.0)
