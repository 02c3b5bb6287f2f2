"""Write a ``SyntheticDay`` in Databento's MBP-10 CSV layout, zstd-compressed.

Header (exactly the column names of Databento's MBP-10 CSV as exported for
the real FROG file, with the first column named ``ts_recv``)::

    ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,
    flags,ts_in_delta,sequence,  then per level ii = 00..09
    bid_px_ii,ask_px_ii,bid_sz_ii,ask_sz_ii,bid_ct_ii,ask_ct_ii,  then  symbol

Timestamps are ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn+00:00`` (UTC, full ns), prices
have exactly two decimals (formatted from integer cents, so the text is
deterministic), empty levels have a blank price and size/count 0.
The bytes depend only on the day's arrays; compression uses an explicit
zstd level and a single thread, so a given seed and library versions give
identical files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import zstandard

if TYPE_CHECKING:
    from replay.synthetic.day import SyntheticDay

LEVELS = 10
RTYPE_MBP10 = 10
DEFAULT_ZSTD_LEVEL = 12
SAMPLE_ZSTD_LEVEL = 16  # the embedded sample: about 20 % smaller than level 12

HEADER: tuple[str, ...] = (
    "ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side", "depth",
    "price", "size", "flags", "ts_in_delta", "sequence",
    *(f"{name}_{i:02d}" for i in range(LEVELS)
      for name in ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct")),
    "symbol",
)  # fmt: skip

_CENTS = np.array([f".{c:02d}" for c in range(100)])


def format_ts(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """``ns`` since the epoch -> ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn+00:00``."""
    iso = np.datetime_as_string(ns.astype("datetime64[ns]"), unit="ns")
    return np.strings.add(np.strings.replace(iso, "T", " "), "+00:00")


def format_cents(cents: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """Integer cents -> ``"D.CC"``; negative (empty level) -> ``""``."""
    c = np.maximum(cents, 0)
    text = np.strings.add((c // 100).astype(str), _CENTS[c % 100])
    return np.where(cents < 0, "", text)


def _render_rows(day: SyntheticDay, lo: int, hi: int) -> str:
    """CSV lines (each ending in a newline) of rows ``lo:hi``."""
    sl = slice(lo, hi)
    n = hi - lo
    bid, ask = day.bid[sl], day.ask[sl]
    cols: list[npt.NDArray[np.str_]] = [
        format_ts(day.ts_recv[sl]),
        format_ts(day.ts_event[sl]),
        np.full(n, str(RTYPE_MBP10)),
        np.full(n, str(day.publisher_id)),
        day.instrument_id[sl].astype(str),
        day.action[sl],
        day.side[sl],
        day.depth[sl].astype(str),
        format_cents(day.price[sl]),
        day.size[sl].astype(str),
        day.flags[sl].astype(str),
        day.ts_in_delta[sl].astype(str),
        day.sequence[sl].astype(str),
    ]
    for i in range(LEVELS):
        cols += [
            format_cents(bid[:, 0, i]),
            format_cents(ask[:, 0, i]),
            bid[:, 1, i].astype(str),
            ask[:, 1, i].astype(str),
            bid[:, 2, i].astype(str),
            ask[:, 2, i].astype(str),
        ]
    cols.append(day.symbol[sl])
    return "".join([",".join(row) + "\n" for row in zip(*(c.tolist() for c in cols), strict=True)])


def render_csv(day: SyntheticDay, chunk_rows: int = 16384) -> bytes:
    """The uncompressed CSV text of ``day`` (header line + one line per row).

    Rendered ``chunk_rows`` rows at a time to bound memory; the bytes do not
    depend on ``chunk_rows``.
    """
    parts = [",".join(HEADER) + "\n"]
    parts += [
        _render_rows(day, lo, min(lo + chunk_rows, len(day)))
        for lo in range(0, len(day), chunk_rows)
    ]
    return "".join(parts).encode("ascii")


def compress(data: bytes, level: int = DEFAULT_ZSTD_LEVEL) -> bytes:
    """zstd frame of ``data`` at an explicit level, single-threaded, with content size."""
    cctx = zstandard.ZstdCompressor(
        level=level, threads=0, write_content_size=True, write_checksum=True
    )
    return cctx.compress(data)


def write_csv_zst(
    day: SyntheticDay, path: str | os.PathLike[str], level: int = DEFAULT_ZSTD_LEVEL
) -> int:
    """Write ``day`` as ``.csv.zst``; return the number of bytes written."""
    blob = compress(render_csv(day), level)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return len(blob)
