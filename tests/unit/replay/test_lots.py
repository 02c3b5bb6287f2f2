"""Whole lots through the whole replay path: children and fills, random books, every strategy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.app.cli import main
from agent.core.model import NS_PER_S
from feeds.book import BookBatch
from feeds.files.parquet import write_parquet
from replay.report import build_summary
from replay.runner import ReplaySpec, replay
from replay.simulator import SimulatorSettings
from replay.strategies import STRATEGIES
from tests.unit.agent.books import T0, ladder_book

MIN = 60 * NS_PER_S


def random_book(seed: int, minutes: int, levels: int = 5) -> BookBatch:
    """A random one-symbol book: mid on the cent grid, 1-3 tick spreads, ragged integer depth, trades.

    Sizes are random whole shares (mostly *not* multiples of the lots tested), so
    the simulator's flooring to lots is exercised on every level.
    """
    rng = np.random.default_rng(seed)
    n = minutes * 60 // 2 + int(rng.integers(0, 40))
    ts = T0 + np.sort(rng.integers(0, minutes * MIN, n)).astype(np.int64)
    ticks = 4000 + np.cumsum(rng.integers(-1, 2, n))
    half = rng.integers(1, 3, n)
    steps = np.arange(levels)[None, :]
    bid_px = np.round((ticks[:, None] - half[:, None] - steps) / 100, 2)
    ask_px = np.round((ticks[:, None] + half[:, None] + steps) / 100, 2)
    bid_sz = rng.integers(1, 900, (n, levels)).astype(np.float64)
    ask_sz = rng.integers(1, 900, (n, levels)).astype(np.float64)
    trade = rng.random(n) < 0.3
    action = np.where(trade, "T", "A")
    return BookBatch(
        ts_event=ts, symbol=np.full(n, "RND"), action=action, side=np.full(n, "A"),
        price=np.where(trade, ask_px[:, 0], bid_px[:, 0]), size=rng.integers(1, 400, n).astype(np.float64),
        bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
    )


def _is_lots(q: float, lot: float) -> bool:
    k = q / lot
    return k == np.rint(k)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lot=st.sampled_from([1.0, 10.0, 100.0]),
    lots=st.integers(1, 400),
    side=st.sampled_from(["buy", "sell"]),
    strategies=st.lists(st.sampled_from(STRATEGIES), min_size=1, max_size=3, unique=True),
    participation=st.sampled_from([0.05, 0.2, 1.0]),
    half_life=st.sampled_from([0.0, 5.0, 30.0]),
)
def test_random_replays_trade_whole_lots_and_never_overfill(
    seed: int, lot: float, lots: int, side: str, strategies: list[str], participation: float,
    half_life: float,
) -> None:
    book = random_book(seed, minutes=16)
    q = lots * lot
    spec = ReplaySpec("RND", side, q, T0 + 4 * MIN, T0 + 14 * MIN,  # type: ignore[arg-type]
                      max_participation=participation, strategies=tuple(strategies),
                      simulator=SimulatorSettings(recovery_half_life_s=half_life, lot_shares=lot))
    res = replay(book, spec)
    for name, run in res.windows[0].runs.items():
        assert run.parent.lot_size == lot
        assert all(c.quantity > 0 and _is_lots(c.quantity, lot) for c in run.children), name
        assert all(f.quantity > 0 and _is_lots(f.quantity, lot) for f in run.fills), name
        per_child: dict[str, float] = {}
        for f in run.fills:
            per_child[f.child_order_id] = per_child.get(f.child_order_id, 0.0) + f.quantity
        assert all(per_child.get(c.child_order_id, 0.0) <= c.quantity for c in run.children), name
        assert run.filled <= q, name  # exactly: whole lots add up without rounding error
        assert "overfill" not in run.counters, name
    for name, tca in build_summary(res)["strategies"].items():
        assert tca["filled_quantity"] + tca["unfilled_quantity"] == q, name


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_parent_with_an_odd_lot_tail_completes_exactly(strategy: str) -> None:
    ts = T0 + np.arange(40 * 60 * 2) * (NS_PER_S // 2)
    book = ladder_book(ts, mid=40.0, depth=5000.0, trade_every=3, trade_size=500.0)
    spec = ReplaySpec("TEST", "buy", 10_050.0, T0 + 10 * MIN, T0 + 30 * MIN, max_participation=1.0,
                      strategies=(strategy,), simulator=SimulatorSettings(lot_shares=100.0))
    run = replay(book, spec).windows[0].runs[strategy]
    assert run.filled == 10_050.0
    odd = [c.quantity for c in run.children if not _is_lots(c.quantity, 100.0)]
    assert len(odd) <= 1 and all(q % 100.0 == 50.0 for q in odd)


def test_cli_replay_trades_the_lot_it_is_given(tmp_path: Path) -> None:
    data = tmp_path / "day.parquet"
    write_parquet([random_book(11, minutes=40)], data)
    rc = main(["replay", "--data", str(data), "--side", "buy", "--quantity", "3000", "--start", "9:40",
               "--end", "10:00", "--lot-shares", "100", "--strategies", "mpc,twap", "--out", str(tmp_path / "o"),
               "--no-progress"])
    assert rc == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["lot_shares"] == 100.0
    for tca in s["strategies"].values():
        assert tca["filled_quantity"] % 100.0 == 0.0 and tca["child_orders"] > 0
