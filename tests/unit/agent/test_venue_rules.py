"""Venue rules end to end: the ``[venue]`` config section maps onto the core, and the engine's
child orders carry limit prices on the tick grid (issue 14 item 1)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from agent.app.config import load_config
from agent.core.engine import ExecutionEngine
from agent.core.errors import ConfigError
from agent.core.model import Fill, ParentOrder
from agent.core.risk import InstrumentRules, tick_for
from tests.unit.agent.books import NS, T0, ladder_book


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("MPC_AGENT_"):
            monkeypatch.delenv(k)


def test_venue_defaults_are_the_us_equity_ticks() -> None:
    venue = load_config().engine_settings().risk.venue
    assert venue.default == InstrumentRules()
    assert venue.default.tick_at(0.5) == 0.0001 and venue.default.tick_at(1.0) == 0.01
    assert venue.symbols == ()


def test_venue_from_toml_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[venue]\nlot_shares = 10\n[venue.symbols.ES]\ntick_usd = 0.25\nlot_shares = 1\n"
                    "[venue.symbols.BRK]\nlot_shares = 100\n")
    venue = load_config(path).engine_settings().risk.venue
    assert venue.instrument("ES") == InstrumentRules(tick=0.25, lot=1.0)
    assert venue.instrument("BRK").lot == 100.0 and venue.instrument("BRK").tick is None
    assert venue.instrument("FROG").lot == 10.0
    monkeypatch.setenv("MPC_AGENT_VENUE__SYMBOLS", '{"CL": {"tick_usd": 0.01, "lot_shares": 1000}}')
    venue = load_config(path).engine_settings().risk.venue
    assert venue.instrument("CL") == InstrumentRules(tick=0.01, lot=1000.0)


@pytest.mark.parametrize("text", ["[venue]\ntick_table = [[0.0, 0.01], [1.005, 0.01]]\n",
                                  "[venue.symbols.X]\ntick_usd = 0\n",
                                  "[venue]\ntick_table = [[0.5, 0.01]]\n"])
def test_invalid_venue_rules_are_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="venue"):
        load_config(path)


@pytest.mark.parametrize(("mid", "side"), [(50.0037, "buy"), (50.0037, "sell"), (0.73115, "buy"),
                                           (0.73115, "sell")])
def test_engine_child_limit_prices_are_on_the_tick_grid(mid: float, side: str) -> None:
    """Books quoted off the grid (sub-penny mids) and a non-zero slippage: every limit on the grid."""
    eng = ExecutionEngine(load_config().engine_settings())
    tick = tick_for(mid)
    parent = ParentOrder("P1", "TEST", side, 3000.0, T0, T0 + 10 * 60 * NS, 60.0)  # type: ignore[arg-type]
    eng.submit(parent)
    book = ladder_book(T0 + np.arange(600) * NS, mid=mid, tick=tick, trade_every=5, trade_size=500.0)
    children = []
    for k in range(10):
        lo, hi = np.searchsorted(book.ts_event, [T0 + k * 60 * NS, T0 + (k + 1) * 60 * NS])
        for c in eng.on_book(book[int(lo):int(hi)]).children:
            children.append(c)
            eng.on_fill(Fill(f"{c.child_order_id}:f", c.child_order_id, "P1", c.quantity, c.limit_price,
                             c.ts_event))
    assert len(children) == 10
    for c in children:
        assert Decimal(repr(c.limit_price)) % Decimal(repr(tick_for(c.limit_price))) == 0, c.limit_price
        assert abs(c.limit_price / tick - round(c.limit_price / tick)) < 1e-9
        best = book.ask_px[0, 0] if side == "buy" else book.bid_px[0, 0]
        assert (c.limit_price >= best) if side == "buy" else (c.limit_price <= best)
