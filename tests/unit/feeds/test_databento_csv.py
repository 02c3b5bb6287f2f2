"""Databento MBP CSV reader: every layout of DESIGN.md section 3, on real FROG rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.arrow import parse_iso_ns
from feeds.files.databento_csv import iter_csv, sniff_layout
from tests.unit.feeds.feeds_samples import (
    FROG,
    frog_frame,
    interleaved,
    native,
    require,
    to_int_ns,
    write_csv,
)

ROWS = 300


def read_all(path: Path, **kw: object) -> BookBatch:
    return BookBatch.concat(list(iter_csv(path, **kw)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def frog() -> pd.DataFrame:
    return frog_frame(ROWS)


@pytest.fixture(scope="module")
def frog_batch() -> BookBatch:
    return read_all(require(FROG))


def assert_matches_frame(b: BookBatch, df: pd.DataFrame, levels: int = 10) -> None:
    assert len(b) == len(df)
    np.testing.assert_array_equal(b.ts_event, to_int_ns(df["ts_event"]))
    np.testing.assert_array_equal(b.action, df["action"].to_numpy(str))
    np.testing.assert_array_equal(b.side, df["side"].to_numpy(str))
    np.testing.assert_array_equal(b.price, df["price"].to_numpy(float))
    for i in range(levels):
        np.testing.assert_array_equal(b.bid_px[:, i], df[f"bid_px_{i:02d}"].to_numpy(float))
        np.testing.assert_array_equal(b.ask_sz[:, i], df[f"ask_sz_{i:02d}"].to_numpy(float))


def test_frog_whole_day_has_exact_event_trade_and_volume_counts(frog_batch: BookBatch) -> None:
    b = frog_batch
    assert len(b) == 33_286
    assert b.levels == 10
    trades = b.is_trade()
    assert int(trades.sum()) == 3_817
    assert float(b.size[trades].sum()) == 232_833.0
    v = b.validate()
    assert v.counts() == {}
    assert not (b.bid_px[:, 0] >= b.ask_px[:, 0]).any()  # no crossed or locked book
    assert set(np.unique(b.symbol)) == {"FROG"}


def test_frog_first_column_named_ts_event_is_read_as_ts_recv(frog_batch: BookBatch) -> None:
    lay = sniff_layout(FROG)
    assert lay.ts_recv == "ts_recv" and lay.names[:2] == ["ts_recv", "ts_event"]
    assert frog_batch.ts_recv is not None
    assert frog_batch.ts_event[0] == 1_743_687_000_125_395_235  # full ns precision of +00:00 text
    assert np.all(np.diff(frog_batch.ts_event) >= 0)


def test_native_layout_with_unnamed_index_column_matches_frame(tmp_path: Path, frog: pd.DataFrame) -> None:
    path = native(frog, tmp_path / "native.csv")
    assert path.read_text().startswith(",ts_recv,ts_event,")
    b = read_all(path)
    assert_matches_frame(b, frog)
    assert b.ts_recv is not None
    np.testing.assert_array_equal(b.ts_recv, to_int_ns(frog["ts_recv"]))


def test_native_and_interleaved_layouts_give_identical_batches(tmp_path: Path, frog: pd.DataFrame) -> None:
    a = read_all(native(frog, tmp_path / "a.csv"))
    b = read_all(interleaved(frog, tmp_path / "b.csv"))
    for name in ("ts_event", "ts_recv", "price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zst"])
def test_compressed_files_read_like_plain(tmp_path: Path, frog: pd.DataFrame, suffix: str) -> None:
    plain = read_all(native(frog, tmp_path / "p.csv"))
    packed = read_all(native(frog, tmp_path / f"p{suffix}"))
    np.testing.assert_array_equal(plain.bid_px, packed.bid_px)
    np.testing.assert_array_equal(plain.ts_event, packed.ts_event)


@pytest.mark.parametrize("style", ["iso_z", "iso_offset", "int_ns", "naive"])
def test_timestamp_styles_parse_to_the_same_nanoseconds(tmp_path: Path, frog: pd.DataFrame, style: str) -> None:
    df = frog.copy()
    ns = to_int_ns(frog["ts_event"])
    stamps = pd.to_datetime(ns, utc=True)
    if style == "iso_z":
        text = stamps.strftime("%Y-%m-%dT%H:%M:%S.") + pd.Series(ns % 10**9).map("{:09d}".format).to_numpy() + "Z"
        df["ts_event"] = text
    elif style == "naive":
        df["ts_event"] = stamps.strftime("%Y-%m-%dT%H:%M:%S.") + pd.Series(ns % 10**9).map("{:09d}".format).to_numpy()
    elif style == "int_ns":
        df["ts_event"] = ns
    b = read_all(native(df, tmp_path / "t.csv"))
    np.testing.assert_array_equal(b.ts_event, ns)


def test_non_utc_offset_is_subtracted_exactly() -> None:
    got = parse_iso_ns(["2025-04-03 09:30:00.000000001-04:00", "2025-04-03T13:30:00.000000001Z", ""])
    assert got[0] == got[1] == 1_743_687_000_000_000_001
    assert got[2] == np.iinfo(np.int64).min


def test_iso_fallback_parser_agrees_with_pyarrow_parser(tmp_path: Path, frog: pd.DataFrame) -> None:
    path = native(frog, tmp_path / "n.csv")
    a = read_all(path)
    b = read_all(path, iso_as_string=True)
    np.testing.assert_array_equal(a.ts_event, b.ts_event)
    np.testing.assert_array_equal(a.ts_recv, b.ts_recv)


def test_blank_prices_become_nan_with_zero_size_and_r_clears_the_book(tmp_path: Path, frog: pd.DataFrame) -> None:
    df = frog.head(5).copy().astype(object)
    for i in range(6, 10):  # levels 6..9 empty on the bid side of row 1
        df.loc[1, f"bid_px_{i:02d}"] = ""
        df.loc[1, f"bid_sz_{i:02d}"] = 0
        df.loc[1, f"bid_ct_{i:02d}"] = 0
    for i in range(10):  # row 2 is a clear: every level empty
        for f in ("bid_px", "ask_px"):
            df.loc[2, f"{f}_{i:02d}"] = ""
        for f in ("bid_sz", "ask_sz", "bid_ct", "ask_ct"):
            df.loc[2, f"{f}_{i:02d}"] = 0
    df.loc[2, ["action", "side", "price", "size"]] = ["R", "N", "", 0]
    b = read_all(native(df, tmp_path / "blank.csv"))
    assert np.isnan(b.bid_px[1, 6:]).all() and (b.bid_sz[1, 6:] == 0).all()
    assert np.isfinite(b.bid_px[1, :6]).all()
    assert b.action[2] == "R" and np.isnan(b.bid_px[2]).all() and (b.ask_sz[2] == 0).all()
    clean, rejected = b.clean()
    assert len(clean) == 5 and rejected == {}


def test_mbp1_with_only_level_00_columns_reads_one_level(tmp_path: Path, frog: pd.DataFrame) -> None:
    b = read_all(native(frog, tmp_path / "mbp1.csv", levels=1))
    assert b.levels == 1
    assert_matches_frame(b, frog, levels=1)


def test_tbbo_with_unsuffixed_level_columns_reads_one_level(tmp_path: Path, frog: pd.DataFrame) -> None:
    df = frog.rename(columns={f"{f}_00": f for f in ("bid_px", "ask_px", "bid_sz", "ask_sz")})
    path = write_csv(df, tmp_path / "tbbo.csv", ["ts_recv", "ts_event", "action", "side", "price", "size",
                                                  "bid_px", "ask_px", "bid_sz", "ask_sz", "symbol"])
    b = read_all(path)
    assert b.levels == 1
    np.testing.assert_array_equal(b.bid_px[:, 0], frog["bid_px_00"].to_numpy(float))


def test_fixed_point_integer_prices_are_detected_and_scaled(tmp_path: Path, frog: pd.DataFrame) -> None:
    df = frog.copy()
    px_cols = [c for c in df.columns if c.startswith(("bid_px", "ask_px"))] + ["price"]
    for c in px_cols:
        df[c] = np.rint(df[c].to_numpy(float) * 1e9).astype(np.int64)
    df.loc[0, "price"] = np.iinfo(np.int64).max  # UNDEF_PRICE
    b = read_all(native(df, tmp_path / "fixed.csv"))
    np.testing.assert_allclose(b.bid_px, frog[[f"bid_px_{i:02d}" for i in range(10)]].to_numpy(float), rtol=1e-15)
    np.testing.assert_array_equal(b.bid_px[:, 0], frog["bid_px_00"].to_numpy(float))
    assert np.isnan(b.price[0])


def test_fixed_point_decision_waits_for_a_chunk_with_prices(tmp_path: Path, frog: pd.DataFrame) -> None:
    df = frog.head(6).copy()
    px_cols = [c for c in df.columns if c.startswith(("bid_px", "ask_px"))] + ["price"]
    for c in px_cols:
        df[c] = np.rint(df[c].to_numpy(float) * 1e9).astype(np.int64)
    undef = np.iinfo(np.int64).max
    df.loc[0, px_cols] = undef  # a clear first: no price at all in the first chunk
    df.loc[0, [c for c in df.columns if c.startswith(("bid_sz", "ask_sz"))]] = 0
    df.loc[0, "action"] = "R"
    b = read_all(native(df, tmp_path / "fixed_r.csv"), chunk_rows=1)
    assert np.isnan(b.bid_px[0]).all() and np.isnan(b.price[0])
    np.testing.assert_array_equal(b.bid_px[1:, 0], frog["bid_px_00"].to_numpy(float)[1:6])


def test_chunked_reading_yields_bounded_chunks_with_identical_rows(tmp_path: Path, frog: pd.DataFrame) -> None:
    path = native(frog, tmp_path / "c.csv.gz")
    whole = read_all(path)
    chunks = list(iter_csv(path, chunk_rows=37))
    assert [len(c) for c in chunks[:-1]] == [37] * (len(chunks) - 1)
    assert 0 < len(chunks[-1]) <= 37
    joined = BookBatch.concat(chunks)
    for name in ("ts_event", "ts_recv", "symbol", "action", "bid_px", "ask_sz"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


def test_truncated_last_line_is_skipped_and_counted(tmp_path: Path, frog: pd.DataFrame) -> None:
    path = native(frog.head(10), tmp_path / "trunc.csv")
    path.write_text(path.read_text() + "10,2025-04-03 13:31:00+00:00,2025-04-03\n")
    stats: dict[str, int] = {}
    b = BookBatch.concat(list(iter_csv(path, stats=stats)))
    assert len(b) == 10 and stats == {"malformed_row": 1}


def test_header_without_book_columns_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("ts_event,price,size\n1,2,3\n")
    with pytest.raises(SchemaError, match="bid_px_00"):
        sniff_layout(path)


def test_symbol_falls_back_to_instrument_id(tmp_path: Path, frog: pd.DataFrame) -> None:
    cols = ["ts_event", "instrument_id", "action", "side", "price", "size",
            *[f"{f}_00" for f in ("bid_px", "bid_sz", "ask_px", "ask_sz")]]
    b = read_all(write_csv(frog, tmp_path / "noname.csv", cols))
    assert set(b.symbol) == {"6292"}
    assert b.ts_recv is None
