"""inspect / convert: the per-symbol summary, its text rendering and the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.app.cli import main
from feeds.files.inspect import format_ts, inspect_paths, render_text
from tests.unit.feeds.feeds_samples import DBN_FIXTURE, FROG, frog_frame, native, require

KEYS = {"events", "first_ts", "last_ts", "trades", "trade_volume", "median_spread_bps",
        "median_depth_shares_10_levels", "rejected"}


def test_frog_summary_has_exact_counts_and_ns_timestamps() -> None:
    s = inspect_paths([str(require(FROG))])
    assert s["files"] == [str(FROG)]
    assert list(s["symbols"]) == ["FROG"]
    f = s["symbols"]["FROG"]
    assert set(f) == KEYS
    assert f["events"] == 33_286 and f["trades"] == 3_817 and f["trade_volume"] == 232_833
    assert f["first_ts"] == "2025-04-03T13:30:00.125395235Z"
    assert f["last_ts"] == "2025-04-03T19:59:59.997960094Z"
    assert f["rejected"] == {}
    assert 1.0 < f["median_spread_bps"] < 100.0
    assert f["median_depth_shares_10_levels"] > 0


def test_medians_follow_their_definitions(tmp_path: Path) -> None:
    df = frog_frame(101)
    s = inspect_paths([str(native(df, tmp_path / "x.csv"))])["symbols"]["FROG"]
    bid, ask = df["bid_px_00"].to_numpy(), df["ask_px_00"].to_numpy()
    assert s["median_spread_bps"] == pytest.approx(np.median((ask - bid) / ((ask + bid) / 2) * 1e4), rel=1e-12)
    depth = sum(df[f"{side}_sz_{i:02d}"].to_numpy() for side in ("bid", "ask") for i in range(10))
    assert s["median_depth_shares_10_levels"] == float(np.median(depth))


def test_rejections_are_counted_per_symbol(tmp_path: Path) -> None:
    df = frog_frame(30)
    df.loc[5, "ask_px_00"] = df.loc[5, "bid_px_00"] - 0.05  # crossed
    df.loc[6, "bid_sz_01"] = -3  # negative size
    s = inspect_paths([str(native(df, tmp_path / "bad.csv")), str(require(DBN_FIXTURE))])
    assert s["symbols"]["FROG"]["rejected"] == {"crossed_book": 1, "negative_size": 1}
    assert s["symbols"]["FROG"]["events"] == 28
    assert s["symbols"]["ESH1"]["events"] == 4 and s["symbols"]["ESH1"]["rejected"] == {}


def test_render_text_shows_one_line_per_symbol() -> None:
    s = inspect_paths([str(require(FROG)), str(require(DBN_FIXTURE))])
    text = render_text(s)
    lines = text.splitlines()
    assert any(line.startswith("FROG") and "33,286" in line and "232,833" in line for line in lines)
    assert any(line.startswith("ESH1") for line in lines)
    assert "no valid rows" in render_text({"files": [], "symbols": {}})


def test_format_ts_keeps_nanoseconds() -> None:
    assert format_ts(1) == "1970-01-01T00:00:00.000000001Z"
    assert format_ts(None) is None


def test_cli_inspect_json_and_convert_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(require(FROG)), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["symbols"]["FROG"]["trades"] == 3_817
    out = tmp_path / "frog.parquet"
    assert main(["convert", str(FROG), "--to", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows_written"] == 33_286 and stats["rejected"] == {}
    assert main(["inspect", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["symbols"] == summary["symbols"]


def test_cli_inspect_unknown_file_fails_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mystery.bin"
    bad.write_bytes(b"\x00" * 10)
    assert main(["inspect", str(bad)]) != 0
    assert "--format" in capsys.readouterr().err
