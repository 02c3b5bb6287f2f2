"""`mpc-agent profile` end to end on the embedded sample, and `--profile` on replay and fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.app.cli import main
from agent.core.forecast.profile_set import ProfileSet
from replay.session import SAMPLE_DATES, SAMPLE_FILES

HISTORY = [d.isoformat() for d in SAMPLE_DATES[:-1]]
WINDOW = ["--side", "buy", "--quantity", "2000", "--start", "10:00", "--end", "10:15",
          "--strategies", "mpc,twap", "--no-progress"]


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    assert main(["profile", "--out", str(out)]) == 0
    return out


def test_profile_cli_learns_every_sample_symbol_from_the_days_before_the_replayed_one(
    profile_file: Path,
) -> None:
    d = json.loads(profile_file.read_text())
    assert d["schema"] == "intraday_profiles.v1" and d["tz"] == "America/New_York"
    assert list(d["symbols"]) == ["SYNA", "SYNB"]
    for sym, p in d["symbols"].items():
        assert p["dates"] == HISTORY and p["days"] == 4 and p["symbols"] == [sym] and not p["pooled"]
        assert p["centres_s"][0] == 9.75 * 3600 and p["centres_s"][-1] == 15.75 * 3600  # 09:45..15:45
        for kind in ("beta", "gamma", "volume", "sigma"):
            assert np.mean(p["factors"][kind]) == pytest.approx(1.0, abs=0.01)
        vol = np.array(p["factors"]["volume"])
        assert vol[0] > 1.3 * vol[4:9].mean() and vol[-1] > 1.3 * vol[4:9].mean()  # U-shaped
        assert set(p["levels"]) == {"beta", "gamma", "volume", "sigma"}
    assert d["pooled"]["pooled"] and d["pooled"]["symbols"] == ["SYNA", "SYNB"]
    assert d["pooled"]["days"] == 8 and d["pooled"]["levels"] == {}


def test_profile_cli_reads_several_files_in_any_order_and_filters_symbol_and_dates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(p) for p in reversed(SAMPLE_FILES[:3])]
    assert main(["profile", "--data", *files, "--symbol", "SYNB", "--before", HISTORY[2],
                 "--bucket-min", "60"]) == 0
    captured = capsys.readouterr()
    d = json.loads(captured.out)
    assert list(d["symbols"]) == ["SYNB"] and d["bucket_s"] == 3600.0
    assert d["symbols"]["SYNB"]["dates"] == HISTORY[:2]
    assert "SYNB: SYNB, 2 day(s) 2025-03-28..2025-03-31, 60-min buckets" in captured.err


def test_profile_cli_refuses_a_day_given_twice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--data", str(SAMPLE_FILES[0]), str(SAMPLE_FILES[0])]) == 2
    assert "pass each day once" in capsys.readouterr().err


def test_replay_without_data_replays_the_last_day_with_the_others_as_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", *WINDOW, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (f"replayed day: SYNA {SAMPLE_DATES[-1]} (America/New_York); history: 4 day(s) "
            + ", ".join(HISTORY)) in out
    assert "intraday profile: SYNA, 4 day(s) 2025-03-28..2025-04-02" in out
    assert "look-ahead" not in out


def test_replay_with_a_profile_file_uses_it_and_says_where_it_comes_from(
    profile_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from replay.profile_cmd import replay_inputs

    prof = replay_inputs(None, "auto", "SYNB", "America/New_York", str(profile_file)).profile
    assert prof is not None
    assert prof.to_dict() == ProfileSet.load(profile_file).profiles["SYNB"].to_dict()
    assert main(["replay", *WINDOW, "--symbol", "SYNB", "--profile", str(profile_file),
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"intraday profile from {profile_file}: SYNB, 4 day(s)" in out
    assert "look-ahead" not in out and "pooled" not in out


@pytest.fixture(scope="module")
def synb_all_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SYNB only, learned from all five days (including the replayed one)."""
    out = tmp_path_factory.mktemp("profile") / "synb.json"
    assert main(["profile", "--symbol", "SYNB", "--before", "2025-04-04", "--out", str(out)]) == 0
    return out


def test_replay_flags_a_pooled_prior_and_a_profile_that_saw_the_replayed_day(
    synb_all_days: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", *WINDOW, "--profile", str(synb_all_days), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SYNA has no history in" in out and "pooled shape of SYNB" in out
    assert "look-ahead: the profile was learned from days that include the replayed day" in out


def test_fit_with_a_profile_adds_its_expectation_per_period(
    profile_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", "--symbol", "SYNA", "--period-s", "1800", "--profile", str(profile_file)]) == 0
    d = json.loads(capsys.readouterr().out)
    prof = d["profile"]
    assert prof["symbols"] == ["SYNA"] and prof["dates"] == HISTORY and not prof["look_ahead"]
    assert prof["level_from"] == "profile"
    n = d["n_periods"]
    for kind in ("beta", "gamma", "volume", "sigma", "cap"):
        assert len(prof["expected"][kind]) == n
    assert prof["shape_corr"]["volume"] > 0.5  # the day's volume follows the learned U shape
    assert all(set(p["profile_factor"]) == {"beta", "gamma", "volume", "sigma"} for p in d["periods"])


def test_fit_with_a_pooled_profile_scales_the_shape_to_the_day_and_says_so(
    synb_all_days: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", "--symbol", "SYNA", "--period-s", "1800", "--profile", str(synb_all_days)]) == 0
    captured = capsys.readouterr()
    prof = json.loads(captured.out)["profile"]
    assert prof["pooled"] and prof["symbols"] == ["SYNB"] and prof["look_ahead"]
    assert prof["level_from"].startswith("this day's mean")
    vol = np.array(prof["expected"]["volume"], dtype=float)
    observed = np.array([p["volume"] for p in json.loads(captured.out)["periods"]], dtype=float)
    assert vol.mean() == pytest.approx(observed.mean(), rel=1e-6)  # the shape, at this day's level
    assert "SYNA has no history in" in captured.err
