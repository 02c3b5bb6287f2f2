"""DBN reader: the real GLBX MBP-10 fixture and DBN v1-v3 files written with databento_dbn."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.dbn import iter_dbn
from tests.unit.feeds.feeds_samples import DBN_FIXTURE, require

T0 = 1_743_687_000_000_000_000  # 2025-04-03 13:30 UTC


def read_all(path: Path, chunk_rows: int = 250_000) -> BookBatch:
    return BookBatch.concat(list(iter_dbn(path, chunk_rows=chunk_rows)))


def test_real_fixture_has_four_sensible_mbp10_records() -> None:
    b = read_all(require(DBN_FIXTURE))
    assert len(b) == 4 and b.levels == 10
    assert set(b.symbol) == {"ESH1"}
    assert np.all((b.bid_px > 3000) & (b.bid_px < 4000)) and np.all((b.ask_px > 3000) & (b.ask_px < 4000))
    assert b.bid_px[0, 0] == 3702.25 and b.ask_px[0, 0] == 3702.75  # fixed-point 1e-9 converted
    assert b.ts_recv is not None and np.all(b.ts_recv >= b.ts_event)
    assert b.validate().counts() == {}


def test_real_fixture_matches_the_databento_object_decoder() -> None:
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(require(DBN_FIXTURE).read_bytes())
    dec = dbn.DBNDecoder()
    dec.write(raw)
    recs = [r for r in dec.decode() if isinstance(r, dbn.MBP10Msg)]
    b = read_all(DBN_FIXTURE)
    assert len(recs) == len(b)
    for i, r in enumerate(recs):
        assert b.ts_event[i] == r.ts_event and b.size[i] == r.size and b.action[i] == str(r.action)
        assert b.bid_px[i].tolist() == [lv.pretty_bid_px for lv in r.levels]
        assert b.ask_sz[i].tolist() == [float(lv.ask_sz) for lv in r.levels]


def pair(i: int, empty_ask: bool = False) -> dbn.BidAskPair:
    return dbn.BidAskPair(
        bid_px=30_100_000_000 - i * 10_000_000, bid_sz=100 + i, bid_ct=1,
        ask_px=dbn.UNDEF_PRICE if empty_ask else 30_200_000_000 + i * 10_000_000,
        ask_sz=0 if empty_ask else 200 + i, ask_ct=0 if empty_ask else 1,
    )


def records(levels: int, n: int, instrument: int = 5) -> list[bytes]:
    out = []
    for k in range(n):
        ladder = [pair(i, empty_ask=(k == 1 and i >= 3)) for i in range(levels)]
        common = dict(publisher_id=2, instrument_id=instrument, ts_event=T0 + k, price=30_200_000_000,
                      size=10 + k, action=dbn.Action.TRADE if k % 2 else dbn.Action.ADD,
                      side=dbn.Side.ASK, flags=0, depth=0, ts_recv=T0 + k + 5, ts_in_delta=0, sequence=k)
        msg = dbn.MBP10Msg(**common, levels=ladder) if levels == 10 else dbn.MBP1Msg(**common, levels=ladder[0])
        out.append(bytes(msg))
    return out


def write_dbn(path: Path, version: int, levels: int, body: list[bytes]) -> Path:
    mapping = [SimpleNamespace(raw_symbol="FROG", intervals=[
        SimpleNamespace(start_date=dt.date(2025, 4, 3), end_date=dt.date(2025, 4, 4), symbol="5")])]
    meta = dbn.Metadata(dataset="XNAS.ITCH", schema=dbn.Schema.MBP_10 if levels == 10 else dbn.Schema.MBP_1,
                        start=T0, stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
                        symbols=["FROG"], version=version, mappings=mapping)
    data = meta.encode() + b"".join(body)
    if path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("levels", [10, 1])
def test_written_dbn_versions_decode_prices_symbols_and_empty_levels(tmp_path: Path, version: int, levels: int) -> None:
    path = write_dbn(tmp_path / f"v{version}.mbp.dbn.zst", version, levels, records(levels, 6))
    b = read_all(path)
    assert len(b) == 6 and b.levels == levels
    assert set(b.symbol) == {"FROG"}
    assert b.bid_px[0, 0] == 30.1 and b.ask_px[0, 0] == 30.2 and b.price[0] == 30.2
    np.testing.assert_array_equal(b.ts_event, T0 + np.arange(6))
    assert list(b.action[:2]) == ["A", "T"] and b.side[0] == "A"
    if levels == 10:
        assert np.isnan(b.ask_px[1, 3:]).all() and (b.ask_sz[1, 3:] == 0).all()
        assert b.bid_px[0, 9] == pytest.approx(30.01)
    assert b.validate().counts() == {}


def test_chunked_dbn_reading_equals_whole(tmp_path: Path) -> None:
    path = write_dbn(tmp_path / "c.dbn", 3, 10, records(10, 7))
    chunks = list(iter_dbn(path, chunk_rows=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    whole = read_all(path)
    joined = BookBatch.concat(chunks)
    for name in ("ts_event", "bid_px", "ask_px", "ask_sz", "symbol"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


def test_unmapped_instrument_falls_back_to_its_id(tmp_path: Path) -> None:
    b = read_all(write_dbn(tmp_path / "u.dbn", 3, 10, records(10, 2, instrument=77)))
    assert set(b.symbol) == {"77"}


def test_mixed_record_stream_uses_the_decoder_and_symbol_mapping_records(tmp_path: Path) -> None:
    mapping = dbn.SymbolMappingMsg(publisher_id=2, instrument_id=9, ts_event=T0, stype_in=dbn.SType.RAW_SYMBOL,
                                   stype_in_symbol="TOAD", stype_out=dbn.SType.INSTRUMENT_ID,
                                   stype_out_symbol="TOAD", start_ts=T0, end_ts=T0 + 10**12)
    path = write_dbn(tmp_path / "mixed.dbn", 3, 10, [bytes(mapping), *records(10, 3, instrument=9)])
    b = read_all(path, chunk_rows=2)
    assert len(b) == 3 and set(b.symbol) == {"TOAD"}
    assert b.bid_px[0, 0] == 30.1


def test_non_book_schema_is_a_schema_error(tmp_path: Path) -> None:
    meta = dbn.Metadata(dataset="XNAS.ITCH", schema=dbn.Schema.TRADES, start=T0, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, symbols=["FROG"])
    path = tmp_path / "trades.dbn"
    path.write_bytes(meta.encode())
    with pytest.raises(SchemaError, match="trades"):
        read_all(path)


def test_not_a_dbn_stream_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "x.dbn"
    path.write_bytes(b"hello world")
    with pytest.raises(SchemaError, match="not a DBN"):
        read_all(path)
