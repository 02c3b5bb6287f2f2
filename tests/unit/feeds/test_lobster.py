"""LOBSTER reader: orderbook/message pairs, New York time to UTC, dummy prices, event types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.lobster import LobsterTimestampWarning, iter_lobster, parse_name

# Six events on 2012-06-21 (EDT, UTC-4): submit, partial cancel, delete, visible exec,
# hidden exec, halt. Two levels a side; level 2 of the ask is empty in rows 3-5.
MESSAGES = """34200.004241176,1,16113575,18,5853300,1
34200.025552243,2,16120456,6,5859500,-1
34200.201743288,3,16120480,9,5859500,-1
34200.201743288,4,16116348,1,5853300,1
34201.5,5,0,100,5855000,-1
34202.000000001,7,-1,0,-1,-1
"""
ROW = "5859400,200,5853300,18,5859500,10,5853000,150"
EMPTY_ASK2 = "5859400,200,5853300,18,9999999999,0,5853000,150"
EMPTY_BID1 = "5859400,200,-9999999999,0,5859500,10,-9999999999,0"
ORDERBOOK = "\n".join([ROW, ROW, EMPTY_ASK2, EMPTY_ASK2, EMPTY_ASK2, EMPTY_BID1]) + "\n"
NAME = "AAPL_2012-06-21_34200000_57600000_{}_2.csv"


def write_pair(tmp_path: Path, messages: bool = True, name: str = NAME) -> Path:
    ob = tmp_path / name.format("orderbook")
    ob.write_text(ORDERBOOK)
    if messages:
        (tmp_path / name.format("message")).write_text(MESSAGES)
    return ob


def read_all(path: Path, chunk_rows: int = 250_000) -> BookBatch:
    return BookBatch.concat(list(iter_lobster(path, chunk_rows=chunk_rows)))


def test_file_name_gives_symbol_date_depth_and_partner() -> None:
    n = parse_name("/x/AAPL_2012-06-21_34200000_57600000_message_10.csv.gz")
    assert (n.symbol, n.date.isoformat(), n.levels) == ("AAPL", "2012-06-21", 10)
    assert n.orderbook.name == "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv.gz"


def test_pair_converts_prices_times_actions_and_sides(tmp_path: Path) -> None:
    b = read_all(write_pair(tmp_path))
    assert len(b) == 6 and b.levels == 2 and set(b.symbol) == {"AAPL"}
    # 09:30:00.004241176 New York (EDT) = 13:30:00.004241176 UTC
    assert b.ts_event[0] == 1_340_285_400_004_241_176
    assert b.ts_event[5] - b.ts_event[0] == 1_995_758_825
    assert list(b.action) == ["A", "C", "C", "T", "T", "N"]
    # A/C: book side of the order; executions: the aggressor (a buy order hit -> seller aggressed)
    assert list(b.side) == ["B", "A", "A", "A", "B", "N"]
    assert b.price[0] == 585.33 and b.size[3] == 1.0 and np.isnan(b.price[5])
    assert b.ask_px[0].tolist() == [585.94, 585.95] and b.bid_px[0].tolist() == [585.33, 585.3]
    assert np.isnan(b.ask_px[2, 1]) and b.ask_sz[2, 1] == 0
    assert np.isnan(b.bid_px[5]).all() and (b.bid_sz[5] == 0).all()
    assert b.validate().counts() == {}


def test_winter_date_uses_est_offset(tmp_path: Path) -> None:
    b = read_all(write_pair(tmp_path, name="MSFT_2012-01-03_34200000_57600000_{}_2.csv"))
    assert b.ts_event[0] == 1_325_601_000_004_241_176  # 09:30 EST = 14:30 UTC
    assert set(b.symbol) == {"MSFT"}


def test_message_path_reads_the_pair_too(tmp_path: Path) -> None:
    write_pair(tmp_path)
    b = read_all(tmp_path / NAME.format("message"))
    assert len(b) == 6 and b.action[0] == "A"


def test_orderbook_alone_warns_and_uses_event_indices(tmp_path: Path) -> None:
    ob = write_pair(tmp_path, messages=False)
    with pytest.warns(LobsterTimestampWarning, match="event index"):
        chunks = list(iter_lobster(ob, chunk_rows=4))
    b = BookBatch.concat(chunks)
    assert b.ts_event.tolist() == [0, 1, 2, 3, 4, 5]
    assert set(b.action) == {"N"} and b.ask_px[0, 0] == 585.94


def test_chunked_pair_equals_whole(tmp_path: Path) -> None:
    ob = write_pair(tmp_path)
    chunks = list(iter_lobster(ob, chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 2]
    whole = read_all(ob)
    joined = BookBatch.concat(chunks)
    for name in ("ts_event", "action", "side", "price", "bid_px", "ask_px", "ask_sz"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


def test_unpaired_lengths_are_a_schema_error(tmp_path: Path) -> None:
    ob = write_pair(tmp_path)
    (tmp_path / NAME.format("message")).write_text(MESSAGES + MESSAGES.splitlines()[0] + "\n")
    with pytest.raises(SchemaError, match="more message rows"):
        read_all(ob)


def test_message_file_without_orderbook_is_a_schema_error(tmp_path: Path) -> None:
    msg = tmp_path / NAME.format("message")
    msg.write_text(MESSAGES)
    with pytest.raises(SchemaError, match="orderbook file missing"):
        read_all(msg)


def test_bad_name_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="LOBSTER file name"):
        parse_name(tmp_path / "orderbook.csv")
