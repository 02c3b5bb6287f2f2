"""Reader registry: format detection, chunked == whole for every format, rejections across chunks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.core.errors import FormatDetectionError
from feeds.book import BookBatch
from feeds.files.parquet import write_parquet
from feeds.files.readers import ReadResult, detect_format, expand_paths, open_batches, read_book
from tests.unit.feeds.feeds_samples import DBN_FIXTURE, FROG, frog_frame, native, require
from tests.unit.feeds.test_lobster import write_pair

FIELDS = ("ts_event", "ts_recv", "symbol", "action", "side", "price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz")


def assert_same_rows(a: BookBatch, b: BookBatch) -> None:
    assert len(a) == len(b)
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def frog_result() -> ReadResult:
    return read_book(require(FROG))


@pytest.fixture
def files(tmp_path: Path, frog_result: ReadResult) -> dict[str, Path]:
    pq_path = tmp_path / "frog.parquet"
    write_parquet([frog_result.batch[:500]], pq_path)
    dbn_path = tmp_path / "esh1.dbn.zst"
    shutil.copy(require(DBN_FIXTURE), dbn_path)
    return {
        "mbp10-csv": native(frog_frame(200), tmp_path / "native.csv.zst"),
        "dbn": dbn_path,
        "lobster": write_pair(tmp_path),
        "parquet": pq_path,
    }


def test_read_book_frog_counts_and_no_rejections(frog_result: ReadResult) -> None:
    b = frog_result.batch
    assert len(b) == 33_286 and frog_result.rejected == {}
    assert int(b.is_trade().sum()) == 3_817 and float(b.size[b.is_trade()].sum()) == 232_833.0
    assert frog_result.files == [str(FROG)]


@pytest.mark.parametrize("fmt", ["mbp10-csv", "dbn", "lobster", "parquet"])
def test_detect_format_recognises_each_format(files: dict[str, Path], fmt: str) -> None:
    assert detect_format(files[fmt]) == fmt


def test_detect_format_reads_magic_when_the_name_says_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    shutil.copy(files["parquet"], tmp_path / "blob1")
    assert detect_format(tmp_path / "blob1") == "parquet"
    (tmp_path / "blob2").write_bytes(require(DBN_FIXTURE).read_bytes())
    with pytest.raises(FormatDetectionError):  # compressed DBN without a .zst name is not guessable
        detect_format(tmp_path / "blob2")
    assert detect_format(FROG) == "mbp10-csv"


@pytest.mark.parametrize("content", [b"hello,world\n1,2\n", b"", b"\x00\x01binary"])
def test_detect_format_error_says_what_is_supported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mystery.csv"
    path.write_bytes(content)
    with pytest.raises(FormatDetectionError, match="--format"):
        detect_format(path)


def test_detect_format_missing_file_and_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatDetectionError, match="no such file"):
        detect_format(tmp_path / "nope.csv")
    with pytest.raises(FormatDetectionError, match="directory"):
        detect_format(tmp_path)


def test_unknown_format_name_is_rejected(files: dict[str, Path]) -> None:
    with pytest.raises(FormatDetectionError, match="unknown format"):
        open_batches(files["parquet"], "excel")


@pytest.mark.parametrize("fmt", ["mbp10-csv", "dbn", "lobster", "parquet"])
def test_chunked_read_equals_whole_read_for_every_format(files: dict[str, Path], fmt: str) -> None:
    whole = read_book(files[fmt])
    small = read_book(files[fmt], fmt, chunk_rows=3)
    assert len(whole.batch) > 0
    assert_same_rows(whole.batch, small.batch)
    assert whole.rejected == small.rejected
    chunks = list(open_batches(files[fmt], chunk_rows=3))
    assert max(len(c) for c in chunks) <= 3


def backwards_csv(tmp_path: Path) -> Path:
    """200 FROG rows where row 100 jumps one minute into the future and rows 101-102 are then behind it."""
    df = frog_frame(200)
    ts = pd.to_datetime(df["ts_event"], utc=True)
    ts.iloc[100] = ts.iloc[100] + pd.Timedelta(minutes=1)
    df["ts_event"] = ts.astype("int64").astype(str).to_numpy()
    keep = np.r_[0:103]  # rows 101, 102 < row 100
    return native(df.iloc[keep].reset_index(drop=True), tmp_path / "back.csv")


@pytest.mark.parametrize("chunk_rows", [1, 7, 101, 250_000])
def test_time_going_backwards_is_caught_across_chunk_boundaries(tmp_path: Path, chunk_rows: int) -> None:
    r = read_book(backwards_csv(tmp_path), chunk_rows=chunk_rows)
    assert r.rejected == {"ts_backwards": 2}
    assert len(r.batch) == 101 and np.all(np.diff(r.batch.ts_event) >= 0)


def test_last_ts_is_carried_from_one_file_to_the_next(tmp_path: Path) -> None:
    df = frog_frame(50)
    first = native(df.iloc[25:], tmp_path / "late.csv")
    second = native(df.iloc[:25], tmp_path / "early.csv")
    r = read_book([first, second])
    assert r.rejected == {"ts_backwards": 25} and len(r.batch) == 25
    assert r.files == [str(first), str(second)]


def test_symbol_filter_keeps_only_that_symbol(files: dict[str, Path]) -> None:
    r = read_book([files["mbp10-csv"], files["dbn"]], symbol="ESH1")
    assert len(r.batch) == 4 and set(r.batch.symbol) == {"ESH1"}
    assert len(read_book(files["mbp10-csv"], symbol="NOPE").batch) == 0


def test_mixed_depth_files_are_padded_to_the_deepest(tmp_path: Path, files: dict[str, Path]) -> None:
    mbp1 = native(frog_frame(20), tmp_path / "mbp1.csv", levels=1)
    r = read_book([mbp1, files["dbn"]])
    assert r.batch.levels == 10 and len(r.batch) == 24
    assert np.isnan(r.batch.bid_px[:20, 1:]).all() and (r.batch.bid_sz[:20, 1:] == 0).all()


def test_directory_expands_and_lobster_pair_is_read_once(files: dict[str, Path]) -> None:
    folder = files["lobster"].parent
    paths = expand_paths([folder])
    names = [p.name for p in paths]
    assert not any("_message_" in n for n in names)
    assert sum("_orderbook_" in n for n in names) == 1
    r = read_book(folder)
    assert r.batch.levels == 10
    assert {"FROG", "ESH1", "AAPL"} <= set(r.batch.symbol)


def test_embedded_sample_day_reads_cleanly_from_its_directory() -> None:
    sample = Path(__file__).resolve().parents[3] / "data" / "sample"
    files = expand_paths([sample])
    assert [p.name for p in files] == [f"sample-{d}.mbp10.csv.zst" for d in  # README.md is not data
                                       ("2025-03-28", "2025-03-31", "2025-04-01", "2025-04-02", "2025-04-03")]
    r = read_book(sample)
    assert r.rejected == {}
    assert r.batch.levels == 10
    assert set(r.batch.symbol) == {"SYNA", "SYNB"}
    for sym in ("SYNA", "SYNB"):
        b = r.batch.for_symbol(sym)
        assert len(b) > 10_000 and int(b.is_trade().sum()) > 1_000
        assert np.all(np.diff(b.ts_event) >= 0)
