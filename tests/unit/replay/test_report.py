"""Replay report: the title says the order's window apart from the session, aligned tables, the paired plot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from agent.core.model import NS_PER_S
from feeds.book import BookBatch
from replay.report import COST_COLUMNS, build_summary, render_table, title_lines, write_outputs
from replay.runner import ReplayResult, ReplaySpec, replay
from tests.unit.agent.books import T0, ladder_book

MIN = 60 * NS_PER_S
NY = "America/New_York"  # T0 is 09:30 there on 2025-04-03


def _book(minutes: int = 90, seed: int = 5) -> BookBatch:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(minutes * 60 * 2) * (NS_PER_S // 2)
    mid = np.round(40.0 + np.cumsum(rng.normal(0.0, 0.004, len(ts))), 2)
    return ladder_book(ts, mid=mid, depth=300.0, trade_every=7, trade_size=60.0)


def _replay(strategies: tuple[str, ...] = ("mpc", "twap", "vwap"), starts: int = 1) -> ReplayResult:
    spec = ReplaySpec("TEST", "buy", 4000.0, T0 + 30 * MIN, T0 + 50 * MIN, strategies=strategies)
    return replay(_book(), spec, starts=starts, session=(T0, T0 + 90 * MIN))


@pytest.fixture(scope="module")
def one_window() -> ReplayResult:
    return _replay()


def test_title_of_one_window_gives_the_orders_window_and_the_session_apart(one_window: ReplayResult) -> None:
    s = build_summary(one_window, tz=NY)
    order, where = title_lines(s)
    assert order.startswith("TEST buy 4,000 shares, 20-min order 10:00-10:20 America/New_York on 2025-04-03")
    assert "session 09:30-11:00" in where and "10:00" not in where
    assert s["start"] == "2025-04-03T14:00:00.000000000Z" and s["end"] == "2025-04-03T14:20:00.000000000Z"
    assert s["session"]["start"] == "2025-04-03T13:30:00.000000000Z"


def test_title_of_several_windows_lists_their_starts_in_the_exchange_zone() -> None:
    s = build_summary(_replay(("mpc", "twap"), starts=3), tz=NY)
    assert s["start"] == "2025-04-03T14:00:00.000000000Z"  # still the order as requested
    order, where = title_lines(s)
    assert "20-min order 10:00-10:20" in order
    assert where.startswith("replayed on 3 windows of 20 min spread over the session 09:30-11:00")
    assert where.endswith("starting 09:30, 10:05, 10:40")


def test_console_tables_are_aligned_with_units_and_the_controllable_cost_first(one_window: ReplayResult) -> None:
    text = render_table(build_summary(one_window, tz=NY))
    blocks = [b.splitlines() for b in text.split("\n\n")]
    tables = [b[1:] for b in blocks if len(b) > 2 and set(b[2]) <= {"-", " "}]
    assert len(tables) == 3  # cost, execution, paired comparisons
    for table in tables:
        head, rule, *rows = table
        assert rows and all(len(line) == len(rule) for line in table)
        runs = [(m.start(), m.end() - 1) for m in re.finditer("-+", rule)]  # one dash run per column
        for line in [head, *rows]:
            assert line[0] != " "  # the strategy column is left-aligned
            assert all(line[end] != " " for _, end in runs[1:]), line  # the others end on their rule
        cost_head = tables[0][0].split()
    assert cost_head[:3] == ["strategy", "ctrl", "bps"]
    assert all(h.split()[-1] in ("bps", "$") for h, _, _ in COST_COLUMNS[1:])
    assert tables[2][0].startswith("MPC - benchmark") and "ctrl mean bps" in tables[2][0]
    assert [r.split()[0] for r in tables[2][2:]] == ["twap", "vwap"]


def test_report_html_shows_the_paired_plot_which_is_written(tmp_path: Path) -> None:
    s = write_outputs(_replay(starts=3), tmp_path, tz=NY)
    page = (tmp_path / "report.html").read_text()
    assert '<img src="paired.png"' in page and (tmp_path / "paired.png").stat().st_size > 5000
    assert "10:00-10:20 America/New_York" in page and "ctrl mean bps" in page
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == s
    for bench in ("twap", "vwap"):
        c = s["comparisons"][f"mpc-{bench}"]
        assert len(c["differences_bps"]) == 3 and len(c["controllable_bps"]["differences_bps"]) == 3
        per_window = [r["strategies"]["mpc"]["controllable_bps"] - r["strategies"][bench]["controllable_bps"]
                      for r in s["runs"]]
        assert c["controllable_bps"]["differences_bps"] == pytest.approx(per_window)


def test_no_paired_plot_or_comparison_without_an_mpc_run(tmp_path: Path) -> None:
    s = write_outputs(_replay(("twap", "vwap")), tmp_path, tz=NY)
    assert s["comparisons"] == {} and not (tmp_path / "paired.png").exists()
    assert "paired.png" not in (tmp_path / "report.html").read_text()
    assert "MPC - benchmark" not in render_table(s)
