"""Parquet book.v1: lossless round trip, row-group streaming, conversion stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.convert import convert_to_parquet
from feeds.files.databento_csv import iter_csv
from feeds.files.parquet import SCHEMA_NAME, iter_parquet, write_parquet
from tests.unit.feeds.feeds_samples import FROG, require

FIELDS = ("ts_event", "ts_recv", "symbol", "action", "side", "price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz")


def assert_identical(a: BookBatch, b: BookBatch) -> None:
    assert len(a) == len(b) and a.levels == b.levels
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert x.dtype.kind == y.dtype.kind, name
        if x.dtype.kind == "f":  # bit for bit, NaN included
            np.testing.assert_array_equal(x.view(np.int64), y.view(np.int64), err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def frog() -> BookBatch:
    return BookBatch.concat(list(iter_csv(require(FROG))))


def test_frog_round_trip_is_bit_for_bit(tmp_path: Path, frog: BookBatch) -> None:
    out = tmp_path / "frog.parquet"
    assert write_parquet([frog], out) == len(frog)
    back = BookBatch.concat(list(iter_parquet(out)))
    assert_identical(frog, back)
    meta = pq.read_schema(out).metadata
    assert meta[b"mpc_agent.schema"] == SCHEMA_NAME.encode() and meta[b"mpc_agent.levels"] == b"10"


def test_round_trip_keeps_nan_levels_negative_zero_and_missing_ts_recv(tmp_path: Path) -> None:
    n = 4
    b = BookBatch(
        ts_event=np.array([1, 2, 3, np.iinfo(np.int64).max], dtype=np.int64),
        symbol=np.array(["A", "BB", "A", "CCC"]), action=np.array(list("ATRN")), side=np.array(list("BANN")),
        price=np.array([1.5, np.nan, -0.0, 1e-300]), size=np.array([1.0, 0.0, 2.5, 3.0]),
        bid_px=np.array([[9.99, np.nan]] * n), bid_sz=np.array([[5.0, 0.0]] * n),
        ask_px=np.array([[10.01, 10.02]] * n), ask_sz=np.array([[1.0, 2.0]] * n),
    )
    out = tmp_path / "t.parquet"
    write_parquet([b[:2], b[2:]], out)
    assert_identical(b, BookBatch.concat(list(iter_parquet(out))))


def test_reading_streams_batches_of_at_most_chunk_rows(tmp_path: Path, frog: BookBatch) -> None:
    out = tmp_path / "frog.parquet"
    write_parquet([frog], out, row_group_rows=10_000)
    assert pq.ParquetFile(out).num_row_groups == 4
    chunks = list(iter_parquet(out, chunk_rows=3_000))
    assert max(len(c) for c in chunks) == 3_000 and sum(len(c) for c in chunks) == len(frog)
    assert_identical(frog, BookBatch.concat(chunks))


def test_convert_writes_clean_rows_and_reports_rejections(tmp_path: Path, frog: BookBatch) -> None:
    bad = frog[:100]
    ask = bad.ask_px.copy()
    ask[10, 0] = bad.bid_px[10, 0] - 0.01  # crossed
    src = tmp_path / "src.parquet"
    write_parquet([BookBatch(**{**{f: getattr(bad, f) for f in FIELDS}, "ask_px": ask})], src)
    stats = convert_to_parquet([str(src)], tmp_path / "out" / "x.parquet")
    assert stats["rows_written"] == 99 and stats["rejected"] == {"crossed_book": 1}
    assert stats["files"] == [str(src)] and stats["seconds"] >= 0
    assert len(BookBatch.concat(list(iter_parquet(tmp_path / "out" / "x.parquet")))) == 99


def test_foreign_parquet_is_a_schema_error(tmp_path: Path) -> None:
    out = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), out)
    with pytest.raises(SchemaError, match=r"book\.v1"):
        list(iter_parquet(out))


def test_write_pads_shallower_later_batches_and_refuses_deeper_ones(tmp_path: Path, frog: BookBatch) -> None:
    deep = frog[:5]
    shallow = BookBatch(**{**{f: getattr(deep, f) for f in FIELDS},
                           **{f: getattr(deep, f)[:, :1] for f in ("bid_px", "bid_sz", "ask_px", "ask_sz")}})
    out = tmp_path / "mixed.parquet"
    assert write_parquet([deep, shallow], out) == 10
    back = BookBatch.concat(list(iter_parquet(out)))
    assert back.levels == 10 and np.isnan(back.bid_px[5:, 1:]).all() and (back.ask_sz[5:, 1:] == 0).all()
    with pytest.raises(SchemaError, match="deepest file first"):
        write_parquet([shallow, deep], tmp_path / "bad.parquet")
