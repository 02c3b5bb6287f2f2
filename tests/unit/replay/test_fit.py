"""Per-period fits (replay.fit) and the ``mpc-agent fit`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.app.cli import main
from agent.core.errors import DataError
from agent.core.impact.estimator import GAMMA_FLOOR
from feeds.book import BookBatch
from replay.fit import fit_periods, impact_from_files
from tests.unit.agent.books import NS, T0, ladder_book

FROG = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
PERIOD_KEYS = {"start", "snapshots", "beta", "gamma", "alpha", "delta", "r2_quadratic", "r2_power",
               "volume", "sigma", "extrapolated_fraction"}


def _two_regimes() -> BookBatch:
    """Ten minutes, one event a second: 1-tick half-spread then 3 ticks; a trade every 10 s."""
    a = ladder_book(T0 + np.arange(300) * NS, half_spread_ticks=1, trade_every=10, trade_size=100.0)
    b = ladder_book(T0 + (300 + np.arange(300)) * NS, half_spread_ticks=3, trade_every=10, trade_size=300.0)
    return BookBatch.concat([a, b])


def test_fit_periods_recovers_half_spread_inside_the_first_level_and_is_strict_json() -> None:
    out = fit_periods(_two_regimes(), side="buy", period_s=60.0, sizes=np.linspace(50, 500, 10))
    json.dumps(out, allow_nan=False)
    assert out["n_periods"] == 10 and len(out["periods"]) == 10
    assert out["start"] == "2025-04-03T13:30:00Z"
    assert set(out["periods"][0]) >= PERIOD_KEYS
    np.testing.assert_allclose(out["beta"][:5], 0.01, atol=1e-9)
    np.testing.assert_allclose(out["beta"][5:], 0.03, atol=1e-9)
    assert all(g == pytest.approx(GAMMA_FLOOR) for g in out["gamma"])
    assert out["periods"][0]["r2_quadratic"] == pytest.approx(1.0)
    assert out["extrapolated_fraction"] == 0.0


def test_fit_periods_deep_sizes_give_positive_gamma_and_power_law_exponent() -> None:
    out = fit_periods(_two_regimes(), side="sell", period_s=300.0, sizes=np.linspace(100, 4000, 20))
    p = out["periods"][0]
    assert p["gamma"] > 1e-7 and p["delta"] > 0
    assert p["r2_quadratic"] > 0.95 and p["r2_power"] > 0.9


def test_fit_periods_volume_cap_and_sigma_per_period() -> None:
    out = fit_periods(_two_regimes(), side="buy", period_s=60.0, participation=0.2, smooth_s=60.0)
    vols = [p["volume"] for p in out["periods"]]
    assert vols == [600.0] * 5 + [1800.0] * 5
    np.testing.assert_allclose(out["cap"], 0.2 * np.array(vols))
    assert out["periods"][0]["sigma"] == 0.0  # constant mid
    assert out["sigma"] == 0.0


def test_fit_periods_quantity_sets_the_fitting_range() -> None:
    out = fit_periods(_two_regimes(), side="buy", period_s=60.0, quantity=1000.0)
    assert out["sizes"][-1] == pytest.approx(4 * 1000.0 / 10)
    assert len(out["sizes"]) == 20


def test_fit_periods_pads_missing_periods_with_nearest_and_reports_null() -> None:
    b = _two_regimes()
    gap = b.take((b.ts_event < T0 + 120 * NS) | (b.ts_event >= T0 + 240 * NS))
    out = fit_periods(gap, side="buy", period_s=60.0, n_periods=12, sizes=np.linspace(50, 500, 10))
    assert len(out["beta"]) == len(out["gamma"]) == len(out["cap"]) == 12
    assert out["periods"][2]["beta"] is None and out["periods"][2]["snapshots"] == 0
    assert out["beta"][2] == pytest.approx(0.01) and out["beta"][11] == pytest.approx(0.03)
    assert all(np.isfinite(out["beta"])) and all(np.isfinite(out["cap"]))


def test_fit_periods_several_symbols_or_no_rows_raise_data_error() -> None:
    a = ladder_book(T0 + np.arange(10) * NS, symbol="AAA")
    b = ladder_book(T0 + np.arange(10) * NS, symbol="BBB")
    with pytest.raises(DataError, match="--symbol"):
        fit_periods(BookBatch.concat([a, b]), side="buy")
    with pytest.raises(DataError):
        fit_periods(BookBatch.empty(), side="buy")


def test_fit_periods_counts_rows_without_a_usable_book() -> None:
    b = _two_regimes()
    ask_sz, ask_px = b.ask_sz.copy(), b.ask_px.copy()
    ask_sz[:7], ask_px[:7] = 0.0, np.nan
    object.__setattr__(b, "ask_sz", ask_sz)
    object.__setattr__(b, "ask_px", ask_px)
    out = fit_periods(b, side="buy", period_s=60.0, sizes=np.linspace(50, 500, 10))
    assert out["excluded"] == 7 and out["periods"][0]["excluded"] == 7
    assert out["snapshots"] == len(b) - 7


def test_cli_fit_on_real_frog_day_writes_plan_ready_json(tmp_path: Path) -> None:
    assert FROG.exists(), f"the real FROG day is expected at {FROG}"
    out = tmp_path / "fit.json"
    rc = main(["fit", "--data", str(FROG), "--side", "sell", "--period-s", "300",
               "--participation", "0.05", "--out", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["symbol"] == "FROG" and d["side"] == "sell" and d["period_s"] == 300.0
    assert len(d["periods"]) == 78 == len(d["beta"]) == len(d["gamma"]) == len(d["cap"])
    assert sum(p["snapshots"] for p in d["periods"]) == 33_286
    assert sum(p["volume"] for p in d["periods"]) == pytest.approx(232_833.0)
    assert all(b >= 0 for b in d["beta"]) and all(g > 0 for g in d["gamma"])
    # half-spread on FROG is cents to tens of cents; beta must be of that order
    assert 0.005 < float(np.median(d["beta"])) < 0.5


def test_impact_from_files_single_path_and_n_periods_for_plan() -> None:
    assert FROG.exists()
    d = impact_from_files(str(FROG), side="buy", period_s=600.0, n_periods=5, quantity=5000.0)
    assert len(d["beta"]) == len(d["gamma"]) == len(d["cap"]) == 5
    assert d["sizes"][-1] == pytest.approx(4 * 5000.0 / 5)
    assert d["files"] == [str(FROG)] and d["rejected"] == {}


def test_impact_from_files_unknown_symbol_raises_data_error() -> None:
    assert FROG.exists()
    with pytest.raises(DataError, match="NOPE"):
        impact_from_files([FROG], symbol="NOPE")


def test_fit_periods_cap_uses_centred_moving_average_of_volume() -> None:
    out = fit_periods(_two_regimes(), side="buy", period_s=60.0, participation=0.1, smooth_s=180.0)
    expected = [600, 600, 600, 600, (600 + 600 + 1800) / 3, (600 + 1800 + 1800) / 3,
                1800, 1800, 1800, 1800]
    np.testing.assert_allclose(out["cap"], 0.1 * np.array(expected))
    assert out["periods"][4]["volume_expected"] == pytest.approx(1000.0)


def test_cli_fit_without_data_uses_the_embedded_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--period-s", "1800"]) == 0
    d = json.loads(capsys.readouterr().out)
    from replay.session import SAMPLE

    assert d["files"] == [str(SAMPLE)]  # the sample's last day
    assert d["n_periods"] == len(d["beta"]) and d["snapshots"] > 0
