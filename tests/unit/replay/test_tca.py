"""TCA: shortfall and its split on hand-made fills, paired bootstrap, summary contract, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.app.cli import main
from agent.core.model import NS_PER_S, ChildOrder, Fill, ParentOrder
from feeds.book import BookBatch
from feeds.files.parquet import write_parquet
from replay.runner import StrategyRun
from replay.tca import (
    CONTRACT_FIELDS,
    Market,
    aggregate,
    analyse,
    compare,
    max_rolling_ratio,
    paired_comparison,
)
from tests.unit.agent.books import T0, ladder_book

MIN = 60 * NS_PER_S
SUMMARY_KEYS = {"symbol", "side", "quantity", "start", "end", "period_s", "arrival_mid", "strategies", "runs"}


def _market() -> tuple[BookBatch, Market]:
    # mid 50.00 for the first 2 minutes, 50.10 after; half-spread 1 tick; a trade every 10 s
    ts = T0 + np.arange(0, 240) * NS_PER_S
    mid = np.where(ts < T0 + 2 * MIN, 50.0, 50.10)
    book = ladder_book(ts, mid=mid, trade_every=10, trade_size=100.0)
    return book, Market.from_book(book)


def _run(side: str, fills: list[tuple[float, float, int]], q: float = 1000.0, fees: float = 0.0,
         decided: list[int] | None = None) -> StrategyRun:
    """Fills ``(qty, price, second)``, one child each, decided at ``decided[i]`` seconds (default: the fill's)."""
    p = ParentOrder("P", "TEST", side, q, T0, T0 + 3 * MIN, 60.0)  # type: ignore[arg-type]
    at = decided if decided is not None else [t for _, _, t in fills]
    cs = [ChildOrder(f"P:{i}", "P", "TEST", side, qty, 60.0 if side == "buy" else 40.0, i,  # type: ignore[arg-type]
                     T0 + at[i] * NS_PER_S, T0 + at[i] * NS_PER_S, q)
          for i, (qty, _, _) in enumerate(fills)]
    fs = [Fill(f"P:{i}:f0", f"P:{i}", "P", qty, px, T0 + t * NS_PER_S) for i, (qty, px, t) in enumerate(fills)]
    return StrategyRun("twap", p, cs, fs, [], fees, {})


def test_buy_shortfall_prices_unfilled_at_end_mid_and_splits_exactly() -> None:
    _, m = _market()
    # 400 @ 50.01 (touch, mid 50.00) at t=5 s; 400 @ 50.13 (touch 50.11, mid 50.10) at t=125 s
    run = _run("buy", [(400.0, 50.01, 5), (400.0, 50.13, 125)], fees=2.0)
    t = analyse(run, m)
    arrival, end = 50.0, 50.10
    executed = 400 * (50.01 - arrival) + 400 * (50.13 - arrival)
    unfilled = 200 * (end - arrival)
    total = executed + unfilled + 2.0
    assert t["arrival_mid"] == pytest.approx(arrival) and t["end_mid"] == pytest.approx(end)
    assert t["shortfall_dollars"] == pytest.approx(total)
    assert t["shortfall_bps"] == pytest.approx(1e4 * total / (1000 * arrival))
    c = t["components_dollars"]
    assert c["spread"] == pytest.approx(800 * 0.01)
    assert c["impact"] == pytest.approx(400 * 0.02)
    assert c["timing"] == pytest.approx(400 * 0.10)
    assert c["opportunity"] == pytest.approx(unfilled)
    assert c["fees"] == 2.0
    assert sum(c.values()) == pytest.approx(total, rel=1e-12)
    assert t["controllable_dollars"] == pytest.approx(800 * 0.01 + 400 * 0.02)
    assert t["unfilled_quantity"] == 200.0 and t["fill_rate"] == pytest.approx(0.8)
    assert t["average_price"] == pytest.approx(50.07)


def test_controllable_cost_is_measured_against_the_mid_at_each_childs_decision() -> None:
    _, m = _market()  # mid 50.00 before 2 min, 50.10 after; touch one cent away
    # decided at 110 s (mid 50.00, ask 50.01) but filled at 125 s, after the mid moved up to 50.10:
    # 300 @ 50.11 and 200 @ 50.12 (two legs of one child), then 500 @ 50.11 decided and filled at 150 s
    run = _run("buy", [(300.0, 50.11, 125), (200.0, 50.12, 125), (500.0, 50.11, 150)], decided=[110, 110, 150])
    t = analyse(run, m)
    c = t["components_dollars"]
    assert c["spread"] == pytest.approx(500 * 0.01 + 500 * 0.01)
    # beyond the decision touch: 300 * (50.11 - 50.01) + 200 * (50.12 - 50.01) + 500 * 0
    assert c["impact"] == pytest.approx(300 * 0.10 + 200 * 0.11)
    assert c["timing"] == pytest.approx(500 * 0.10)  # only the child decided after the move drifted
    assert c["opportunity"] == 0.0
    assert t["controllable_dollars"] == pytest.approx(c["spread"] + c["impact"])
    assert t["controllable_bps"] == pytest.approx(1e4 * (10.0 + 52.0) / (1000 * 50.0))
    assert t["timing_bps"] == pytest.approx(1e4 * 50.0 / (1000 * 50.0))
    total = 300 * 0.11 + 200 * 0.12 + 500 * 0.11
    assert t["shortfall_dollars"] == pytest.approx(total)
    assert sum(c.values()) == pytest.approx(total, rel=1e-12)
    assert sum(t["components_bps"].values()) == pytest.approx(t["shortfall_bps"], rel=1e-12)


def test_sell_shortfall_has_the_opposite_sign_convention() -> None:
    _, m = _market()
    run = _run("sell", [(1000.0, 49.99, 5)])
    t = analyse(run, m)
    assert t["shortfall_dollars"] == pytest.approx(1000 * 0.01)  # sold 1 cent below arrival: a cost
    assert t["components_dollars"]["spread"] == pytest.approx(10.0)
    assert t["unfilled_quantity"] == 0.0


def test_vwap_shortfall_and_realised_participation_per_period() -> None:
    book, m = _market()
    run = _run("buy", [(300.0, 50.01, 5), (30.0, 50.11, 125)])
    t = analyse(run, m)
    trades = (book.action == "T") & (book.ts_event < T0 + 3 * MIN)
    vwap = float(book.price[trades] @ book.size[trades] / book.size[trades].sum())
    avg = (300 * 50.01 + 30 * 50.11) / 330
    assert t["interval_vwap"] == pytest.approx(vwap)
    assert t["vwap_shortfall_bps"] == pytest.approx(1e4 * (avg - vwap) / vwap)
    # 6 trades of 100 per minute: 300 / 600 in period 0, 30 / 600 in period 2
    assert t["max_participation"] == pytest.approx(0.5)
    # 5 minutes are more than the 3-period window: one run of all of it, 330 / 1,800
    assert t["max_participation_5min"] == pytest.approx(330 / 1800)


def test_max_rolling_ratio_takes_runs_of_k_periods_with_market_volume() -> None:
    ours = np.array([10.0, 0.0, 50.0, 0.0, 0.0, 30.0])
    theirs = np.array([100.0, 0.0, 10.0, 0.0, 0.0, 0.0])
    assert max_rolling_ratio(ours, theirs, 1) == pytest.approx(5.0)  # the per-period max (period 2)
    assert max_rolling_ratio(ours, theirs, 2) == pytest.approx(50.0 / 10.0)  # [1, 2] and [2, 3]
    assert max_rolling_ratio(ours, theirs, 3) == pytest.approx(50.0 / 10.0)  # [2..4]; [3..5] has none
    assert max_rolling_ratio(ours, theirs, 4) == pytest.approx(80.0 / 10.0)  # [2..5]
    assert max_rolling_ratio(ours, theirs, 99) == pytest.approx(90.0 / 110.0)  # the whole window
    assert max_rolling_ratio(ours, np.zeros(6), 2) == 0.0
    assert max_rolling_ratio(np.zeros(0), np.zeros(0), 5) == 0.0


def test_analyse_returns_every_contract_field() -> None:
    _, m = _market()
    t = analyse(_run("buy", []), m)
    assert set(CONTRACT_FIELDS) <= set(t)
    assert t["filled_quantity"] == 0.0 and t["average_price"] is None
    assert t["solve_us_p50"] is None  # no optimisation solved


def test_paired_comparison_mean_median_and_seeded_bootstrap_interval() -> None:
    a = [10.0, 12.0, 9.0, 15.0, 11.0]
    b = [11.0, 12.5, 10.0, 14.0, 13.0]
    c = paired_comparison(a, b, seed=1)
    d = np.subtract(a, b)
    assert c["mean_bps"] == pytest.approx(d.mean()) and c["median_bps"] == pytest.approx(np.median(d))
    lo, hi = c["ci95_bps"]
    assert d.min() <= lo <= d.mean() <= hi <= d.max()
    assert c == paired_comparison(a, b, seed=1)
    assert c["a_better"] == 4 and c["n"] == 5 and c["differences_bps"] == pytest.approx(d.tolist())
    assert paired_comparison([1.0], [2.0])["ci95_bps"] is None


def test_paired_comparison_interval_on_constructed_differences() -> None:
    # constant differences: every resample has the same mean, the interval collapses onto it
    c = paired_comparison([5.0, 6.0, 7.0, 8.0], [6.5, 7.5, 8.5, 9.5])
    assert c["mean_bps"] == c["median_bps"] == -1.5 and c["ci95_bps"] == pytest.approx([-1.5, -1.5])
    assert c["a_better"] == 4
    # two values -1 and +1 equally often: the bootstrap mean is (2K - n) / n, K ~ Binomial(n, 1/2),
    # so its 2.5/97.5 percentiles are those of that distribution (n = 40: about -/+ 0.3)
    n = 40
    c = paired_comparison([0.0] * n, [1.0, -1.0] * (n // 2), resamples=20_000, seed=7)
    half = 1.96 / np.sqrt(n)
    assert c["mean_bps"] == 0.0 and c["a_better"] == n // 2
    assert c["ci95_bps"][0] == pytest.approx(-half, abs=0.05) and c["ci95_bps"][1] == pytest.approx(half, abs=0.05)


def test_compare_pairs_controllable_and_total_by_window() -> None:
    def window(mpc: tuple[float, float], twap: tuple[float, float]) -> dict[str, object]:
        return {"strategies": {name: {"controllable_bps": ctrl, "shortfall_bps": ctrl + timing,
                                      "timing_bps": timing}
                               for name, (ctrl, timing) in (("mpc", mpc), ("twap", twap))}}

    # MPC saves 1 bp of spread + impact in every window; the drift differs by -/+ 4 bps
    runs = [window((3.0, 2.0), (4.0, 6.0)), window((2.0, -5.0), (3.0, -9.0)), window((5.0, 1.0), (6.0, 1.0))]
    c = compare(runs, "mpc", "twap")
    assert c["controllable_bps"]["differences_bps"] == [-1.0, -1.0, -1.0]
    assert c["controllable_bps"]["mean_bps"] == -1.0 and c["controllable_bps"]["a_better"] == 3
    assert c["controllable_bps"]["ci95_bps"] == pytest.approx([-1.0, -1.0])
    assert c["differences_bps"] == [-5.0, 3.0, -1.0]  # total: the drift swamps the saving
    assert c["mean_bps"] == pytest.approx(-1.0) and c["a_better"] == 2
    assert c["timing_bps"]["differences_bps"] == [-4.0, 4.0, 0.0]
    assert set(c) >= {"n", "mean_bps", "median_bps", "ci95_bps", "a_better"}  # the keys from before


def test_aggregate_means_keep_the_components_adding_up() -> None:
    _, m = _market()
    runs = [analyse(_run("buy", [(400.0, 50.01, 5), (400.0, 50.13, 125)], fees=2.0), m),
            analyse(_run("buy", [(1000.0, 50.12, 130)]), m), analyse(_run("buy", [(10.0, 50.02, 1)]), m)]
    agg = aggregate(runs)
    assert agg["windows"] == 3
    assert sum(agg["components_bps"].values()) == pytest.approx(agg["shortfall_bps"], rel=1e-12)
    assert agg["controllable_bps"] == pytest.approx(np.mean([r["controllable_bps"] for r in runs]))
    assert agg["controllable_bps"] == pytest.approx(agg["components_bps"]["spread"] + agg["components_bps"]["impact"])


def test_cli_replay_writes_summary_with_exactly_the_contract_keys(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    ts = T0 + np.arange(0, 60 * 60 * 2) * (NS_PER_S // 2)
    mid = np.round(40 + np.cumsum(rng.normal(0, 0.004, len(ts))), 2)
    data = tmp_path / "day.parquet"
    write_parquet([ladder_book(ts, mid=mid, trade_every=7, trade_size=60.0, symbol="ABC")], data)
    out = tmp_path / "out"
    rc = main(["replay", "--data", str(data), "--side", "sell", "--quantity", "3000", "--start", "9:40",
               "--end", "10:00", "--starts", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s) >= SUMMARY_KEYS
    assert s["symbol"] == "ABC" and s["side"] == "sell" and s["quantity"] == 3000.0
    assert set(s["strategies"]) == {"mpc", "twap", "vwap", "pov", "ac", "open-loop"}
    for strat in s["strategies"].values():
        assert set(CONTRACT_FIELDS) <= set(strat)
    assert len(s["runs"]) == 3
    for run in s["runs"]:
        assert {"start", "end", "arrival_mid", "strategies"} <= set(run)
        for strat in run["strategies"].values():
            assert set(CONTRACT_FIELDS) <= set(strat)
    for bench in ("twap", "vwap", "pov", "ac", "open-loop"):
        c = s["comparisons"][f"mpc-{bench}"]
        assert c["n"] == 3 and c["controllable_bps"]["n"] == 3
    assert s["start"].startswith("2025-04-03T13:40") and s["end"].startswith("2025-04-03T14:00")  # the order's
    assert s["session"] == {"start": "2025-04-03T13:30:00.000000000Z", "end": "2025-04-03T14:30:00.000000000Z"}
    assert (out / "report.html").exists() and (out / "costs.png").exists() and (out / "paired.png").exists()
    lines = capsys.readouterr().out.splitlines()
    title = next(i for i, line in enumerate(lines) if "-min order" in line)  # after the data lines
    assert "20-min order 09:40-10:00 America/New_York on 2025-04-03" in lines[title]
    assert "3 windows of 20 min spread over the session 09:30-10:30" in lines[title + 1]
    assert "starting 09:30, 09:50, 10:10" in lines[title + 1]
    assert any(line.startswith("MPC - benchmark") for line in lines)


def test_cli_replay_rejects_a_window_outside_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "day.parquet"
    write_parquet([ladder_book(T0 + np.arange(600) * NS_PER_S, trade_every=5)], data)
    rc = main(["replay", "--data", str(data), "--side", "buy", "--quantity", "100", "--start", "15:00",
               "--end", "15:30", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2
    assert "does not overlap" in capsys.readouterr().err
