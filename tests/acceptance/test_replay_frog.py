"""Acceptance: `mpc-agent replay` end to end on the real FROG day (../shared/data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.app.cli import main
from replay.tca import CONTRACT_FIELDS

FROG = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
SUMMARY_KEYS = {"symbol", "side", "quantity", "start", "end", "period_s", "arrival_mid", "strategies", "runs"}


def _need_frog() -> None:
    if not FROG.exists():
        msg = f"the real FROG day is expected at {FROG}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.mark.slow
def test_frog_full_session_replay_runs_end_to_end_for_all_strategies(tmp_path: Path) -> None:
    _need_frog()
    out = tmp_path / "full"
    rc = main(["replay", "--data", str(FROG), "--side", "buy", "--quantity", "4657",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s) >= SUMMARY_KEYS
    assert s["symbol"] == "FROG" and s["start"].startswith("2025-04-03T13:30")
    assert s["end"].startswith("2025-04-03T20:00")
    assert 25 < s["arrival_mid"] < 40
    assert set(s["strategies"]) == {"mpc", "twap", "vwap", "pov", "ac", "open-loop"}
    for name, st in s["strategies"].items():
        assert set(st) >= set(CONTRACT_FIELDS), name
        assert 0 < st["filled_quantity"] <= 4657, name
        assert st["filled_quantity"] + st["unfilled_quantity"] == pytest.approx(4657), name
        assert st["child_orders"] > 0
    assert s["strategies"]["mpc"]["solve_us_p50"] > 0
    assert s["vwap_profile"]["look_ahead"] is True  # one day: stated in the report
    html = (out / "report.html").read_text()
    assert "look-ahead" in html and "schedules.png" in html
    for png in ("schedules.png", "cumulative.png", "impact.png", "costs.png"):
        assert (out / png).stat().st_size > 1000


@pytest.mark.slow
def test_frog_one_hour_windows_give_paired_comparisons(tmp_path: Path) -> None:
    _need_frog()
    out = tmp_path / "starts"
    rc = main(["replay", "--data", str(FROG), "--side", "sell", "--quantity", "4657", "--start", "10:00",
               "--end", "11:00", "--starts", "4", "--strategies", "mpc,twap,vwap", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert len(s["runs"]) == 4
    for key in ("mpc-twap", "mpc-vwap"):
        c = s["comparisons"][key]
        assert c["n"] == 4 and c["ci95_bps"][0] <= c["mean_bps"] <= c["ci95_bps"][1]
