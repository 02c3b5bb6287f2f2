"""`mpc-agent plan`: one offline schedule as strict JSON (DESIGN.md section 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.app.cli import main
from agent.core.mpc.offline import plan_offline
from agent.core.mpc.oracle import model_cost, solve_separable_exact

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
FROG = DATA / "FROG_2025-04-03.mbp10.csv.gz"


def _strict(text: str) -> dict:
    def bad(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=bad)


def _impact(tmp_path: Path, **spec: object) -> str:
    path = tmp_path / "impact.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_plan_impact_file_prints_optimal_schedule_and_costs(tmp_path: Path, capsys) -> None:
    beta = [0.01, 0.02, 0.01, 0.015, 0.01]
    gamma = [1e-5, 3e-5, 2e-5, 1e-5, 1e-5]
    path = _impact(tmp_path, beta=beta, gamma=gamma)
    assert main(["plan", "--quantity", "5000", "--periods", "5", "--impact", path]) == 0
    out = _strict(capsys.readouterr().out)
    assert set(out) >= {"schedule", "cost", "twap_cost", "shortfall", "solver"}
    assert set(out["solver"]) == {"name", "status", "iterations", "solve_us"}
    x, _ = solve_separable_exact(5000, beta, gamma)
    assert np.allclose(out["schedule"], x, atol=1e-3)
    assert out["cost"] == pytest.approx(model_cost(x, beta, gamma), rel=1e-6)
    assert out["twap_cost"] == pytest.approx(model_cost(np.full(5, 1000.0), beta, gamma))
    assert out["cost"] < out["twap_cost"] and out["shortfall"] == 0.0


def test_plan_risk_aversion_front_loads_and_cost_includes_risk_term(tmp_path: Path, capsys) -> None:
    path = _impact(tmp_path, beta=[0.01] * 20, gamma=[1e-5] * 20)
    args = ["plan", "--quantity", "10000", "--periods", "20", "--impact", path]
    assert main(args) == 0
    neutral = _strict(capsys.readouterr().out)
    assert main([*args, "--risk-aversion", "1e-4", "--sigma", "0.5"]) == 0
    averse = _strict(capsys.readouterr().out)
    assert np.allclose(neutral["schedule"], 500.0, rtol=1e-6)
    assert averse["schedule"][0] > 1.5 * averse["schedule"][-1]
    expected = model_cost(averse["schedule"], [0.01] * 20, [1e-5] * 20, remaining=10000,
                          risk_aversion=1e-4, sigma=0.5)
    assert averse["cost"] == pytest.approx(expected, rel=1e-9)


def test_plan_caps_with_null_and_impossible_completion_reports_shortfall(tmp_path: Path) -> None:
    path = _impact(tmp_path, beta=[0.01] * 4, gamma=[1e-5] * 4, cap=[100, None, 100, 100])
    out_file = tmp_path / "plan.json"
    assert main(["plan", "--quantity", "1000", "--periods", "4", "--impact", path,
                 "--out", str(out_file)]) == 0
    out = _strict(out_file.read_text())
    assert out["shortfall"] == 0.0 and out["schedule"][1] == pytest.approx(700.0, abs=1e-6)
    tight = _impact(tmp_path, beta=[0.01] * 4, gamma=[1e-5] * 4, cap=[100] * 4)
    assert main(["plan", "--quantity", "1000", "--periods", "4", "--impact", tight,
                 "--out", str(out_file)]) == 0
    out = _strict(out_file.read_text())
    assert out["shortfall"] == pytest.approx(600.0) and np.allclose(out["schedule"], 100.0)


@pytest.mark.parametrize(("spec", "message"), [
    ({"beta": [0.01] * 3}, 'must hold {"beta": [N], "gamma": [N]'),
    ({"beta": [0.01] * 2, "gamma": [1e-5] * 2}, "at least --periods=3"),
    ({"beta": [0.01, "x", 0.01], "gamma": [1e-5] * 3}, "is not a number"),
    ({"beta": [0.01] * 3, "gamma": [1e-5, 0.0, 1e-5]}, "gamma finite and > 0"),
])
def test_plan_bad_impact_file_exits_2_with_a_message_that_says_what_to_fix(
        tmp_path: Path, capsys, spec: dict, message: str) -> None:
    path = _impact(tmp_path, **spec)
    assert main(["plan", "--quantity", "100", "--periods", "3", "--impact", path]) == 2
    assert message in capsys.readouterr().err


def test_plan_impact_file_not_json_exits_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{beta: 1")
    assert main(["plan", "--quantity", "100", "--periods", "3", "--impact", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_plan_longer_impact_lists_use_the_first_n_periods(tmp_path: Path, capsys) -> None:
    path = _impact(tmp_path, beta=[0.01] * 10, gamma=[1e-5] * 5 + [1e-3] * 5)
    assert main(["plan", "--quantity", "1000", "--periods", "5", "--impact", path]) == 0
    assert np.allclose(_strict(capsys.readouterr().out)["schedule"], 200.0, rtol=1e-6)


def test_plan_data_file_fits_impact_from_real_frog_day(tmp_path: Path) -> None:
    out_file = tmp_path / "plan.json"
    assert main(["plan", "--quantity", "5000", "--periods", "30", "--data", str(FROG),
                 "--risk-aversion", "1e-4", "--out", str(out_file)]) == 0
    out = _strict(out_file.read_text())
    assert len(out["schedule"]) == 30
    assert sum(out["schedule"]) + out["shortfall"] == pytest.approx(5000, rel=1e-6)
    assert out["sigma"] > 0  # fitted volatility used for the risk term
    # the day's participation caps hold less than 5,000 shares: every cap is the plan, without a solve
    assert out["shortfall"] > 0 and out["solver"]["name"] == "closed_form"


def test_plan_offline_large_horizon_is_unblocked_and_matches_oracle() -> None:
    rng = np.random.default_rng(0)
    n = 600
    beta, gamma = rng.uniform(0.005, 0.02, n), rng.uniform(1e-6, 1e-5, n)
    cap = rng.uniform(50, 400, n)
    out = plan_offline(100_000, beta, gamma, cap)
    x, s = solve_separable_exact(100_000, beta, gamma, cap)
    assert np.max(np.abs(np.asarray(out["schedule"]) - x)) <= 1e-3 * 100_000 / n
    assert out["cost"] == pytest.approx(model_cost(x, beta, gamma), rel=1e-4)
    assert out["shortfall"] == pytest.approx(s, abs=1e-6)
