"""Shared fixtures for the reader tests: the real data files and small files in
every Databento CSV layout, all derived from real FROG rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import zstandard

ROOT = Path(__file__).resolve().parents[3]
DATA = (ROOT / ".." / "shared" / "data").resolve()
FROG = DATA / "FROG_2025-04-03.mbp10.csv.gz"
DBN_FIXTURE = DATA / "GLBX.MDP3.test_data.mbp-10.dbn.zst"

LEVEL_FIELDS_NATIVE = ("bid_px", "bid_sz", "bid_ct", "ask_px", "ask_sz", "ask_ct")
LEVEL_FIELDS_INTERLEAVED = ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct")
HEAD = ["rtype", "publisher_id", "instrument_id", "action", "side", "depth", "price", "size",
        "flags", "ts_in_delta", "sequence"]


def require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: the tests need ../shared/data beside the repository")
    return path


def frog_frame(rows: int) -> pd.DataFrame:
    """First ``rows`` real FROG rows; columns renamed to ts_recv / ts_event, timestamps as text."""
    df = pd.read_csv(require(FROG), nrows=rows, dtype={"ts_event": str, "ts_event.1": str})
    return df.rename(columns={"ts_event": "ts_recv", "ts_event.1": "ts_event"})


def to_int_ns(text: pd.Series) -> np.ndarray:
    return np.array(pd.to_datetime(text, utc=True).astype("int64"), dtype=np.int64)


def level_columns(fields: tuple[str, ...], levels: int) -> list[str]:
    return [f"{f}_{i:02d}" for i in range(levels) for f in fields]


def write_csv(df: pd.DataFrame, path: Path, columns: list[str], *, header: list[str] | None = None,
              index: bool = False) -> Path:
    """Write ``df[columns]`` with an optional custom header; compress by suffix (.gz/.zst)."""
    out = df[columns].copy()
    if header is not None:
        out.columns = header
    text = out.to_csv(index=index, lineterminator="\n", float_format=None)
    data = text.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def native(df: pd.DataFrame, path: Path, levels: int = 10) -> Path:
    """Databento's own layout: unnamed index column, ts_recv, ts_event, levels bid-then-ask."""
    cols = ["ts_recv", "ts_event", *HEAD, *level_columns(LEVEL_FIELDS_NATIVE, levels), "symbol"]
    return write_csv(df, path, cols, index=True)


def interleaved(df: pd.DataFrame, path: Path, levels: int = 10) -> Path:
    """The FROG-style export: the first column is ts_recv but named ts_event."""
    cols = ["ts_recv", "ts_event", *HEAD, *level_columns(LEVEL_FIELDS_INTERLEAVED, levels), "symbol"]
    header = ["ts_event", *cols[1:]]
    return write_csv(df, path, cols, header=header)
