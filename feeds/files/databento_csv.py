"""Databento MBP-10 / MBP-1 / TBBO CSV reader (plain, ``.gz`` or ``.zst``).

Columns are mapped **by name** from the header, so every known layout works:

- Databento's native order (per level ``bid_px, bid_sz, bid_ct, ask_px, ask_sz,
  ask_ct``) with a leading unnamed index column and ``ts_recv, ts_event``;
- the interleaved export (per level ``bid_px, ask_px, bid_sz, ask_sz, bid_ct,
  ask_ct``) whose header names ``ts_recv`` as a second ``ts_event``: when
  ``ts_event`` appears twice, the *first* one is ``ts_recv``;
- MBP-1 / TBBO: only ``_00`` level columns (or unsuffixed ``bid_px`` ...) -> 1 level.

Timestamps may be integer ns, ISO ``...Z`` or ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn+00:00``
(full ns precision; any ``+HH:MM`` offset is honoured: ``t_utc = t_local - offset``).
Blank prices (empty levels) become NaN with size 0. Fixed-point prices
(``pretty_px=false`` exports, integer units of 1e-9 dollar) are detected per file
from the magnitude of the top-of-book prices and converted: ``px = raw / 1e9``,
``UNDEF_PRICE`` (int64 max) -> NaN.

The file is streamed with ``pyarrow.csv.open_csv`` (explicit column types, only
the needed columns parsed) and regrouped into chunks of at most ``chunk_rows`` rows.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.arrow import (
    open_stream,
    parse_iso_ns,
    read_head,
    rechunk,
    stack,
    to_f64,
    to_i64,
    to_str,
)

__all__ = ["CsvLayout", "iter_csv", "sniff_layout"]

_LEVEL = re.compile(r"^(bid|ask)_(px|sz)_(\d{2})$")
_DIGITS = re.compile(r"^-?\d+$")
#: a top-of-book price this large (in "dollars") can only be a 1e-9 fixed-point integer
FIXED_POINT_MIN = 1e6
FIXED_DIVISOR = 1e9  # divide (correctly rounded), never multiply by 1e-9
UNDEF_PRICE_MIN = 9.2e18
_DICT = pa.dictionary(pa.int32(), pa.string())
#: CSV parse block: 0.5-2 MB blocks parse ~2x faster than 8-64 MB ones (cache-sized; measured
#: on FROG); chunks of ``chunk_rows`` rows are re-assembled from the blocks afterwards.
MAX_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """What the header says: unique column names and where each field lives.

    ``names`` are the header names made unique (unnamed index -> ``_index``,
    first of two ``ts_event`` -> ``ts_recv``); ``levels`` is the book depth.
    """

    names: list[str]
    levels: int
    ts_event: str
    ts_recv: str | None
    ts_kind: dict[str, str]
    bid_px: list[str]
    bid_sz: list[str]
    ask_px: list[str]
    ask_sz: list[str]
    action: str | None
    side: str | None
    price: str | None
    size: str | None
    symbol: str | None
    instrument_id: str | None


def _unique_names(header: list[str]) -> list[str]:
    names: list[str] = []
    has_recv = "ts_recv" in header
    for i, raw in enumerate(header):
        name = raw.strip()
        if name == "":
            name = "_index" if i == 0 else f"_unnamed{i}"
        if name == "ts_event" and "ts_event" in names and not has_recv:
            # the FROG export: first ts_event is really ts_recv
            names[names.index("ts_event")] = "ts_recv"
            has_recv = True
        if name in names:
            name = f"{name}_dup{i}"
        names.append(name)
    return names


def sniff_layout(path: str | os.PathLike[str]) -> CsvLayout:
    """Read the header (and first data row) of a Databento CSV and map its columns.

    Raises
    ------
    SchemaError
        If there is no ``ts_event`` column or no level-0 bid/ask price.
    """
    head = read_head(path).decode("utf-8-sig", errors="replace")
    lines = head.splitlines()
    if not lines:
        raise SchemaError(f"{path}: empty file; expected a Databento MBP CSV with a header row")
    rows = list(csv.reader(io.StringIO("\n".join(lines[:2]))))
    names = _unique_names(rows[0])
    first = dict(zip(names, rows[1], strict=False)) if len(rows) > 1 else {}
    if "ts_event" not in names:
        raise SchemaError(f"{path}: no ts_event column in header {rows[0][:6]}...; is this a Databento MBP CSV?")
    found: dict[tuple[str, str], dict[int, str]] = {}
    for n in names:
        m = _LEVEL.match(n)
        if m:
            found.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = n
    for side in ("bid", "ask"):
        for kind in ("px", "sz"):
            if (side, kind) not in found and f"{side}_{kind}" in names:
                found[(side, kind)] = {0: f"{side}_{kind}"}
    if ("bid", "px") not in found or ("ask", "px") not in found:
        raise SchemaError(f"{path}: no bid_px_00/ask_px_00 columns; not an MBP-10/MBP-1/TBBO CSV")
    levels = 0
    while all(levels in found.get(k, {}) for k in (("bid", "px"), ("bid", "sz"), ("ask", "px"), ("ask", "sz"))):
        levels += 1
    if levels == 0:
        raise SchemaError(f"{path}: level 00 needs bid_px, bid_sz, ask_px and ask_sz columns")
    ts_recv = "ts_recv" if "ts_recv" in names else None
    ts_cols = [c for c in ("ts_event", ts_recv) if c]
    ts_kind = {c: _ts_kind(first.get(c, "0").strip()) for c in ts_cols}

    def opt(name: str) -> str | None:
        return name if name in names else None

    return CsvLayout(
        names=names,
        levels=levels,
        ts_event="ts_event",
        ts_recv=ts_recv,
        ts_kind=ts_kind,
        bid_px=[found[("bid", "px")][i] for i in range(levels)],
        bid_sz=[found[("bid", "sz")][i] for i in range(levels)],
        ask_px=[found[("ask", "px")][i] for i in range(levels)],
        ask_sz=[found[("ask", "sz")][i] for i in range(levels)],
        action=opt("action"),
        side=opt("side"),
        price=opt("price"),
        size=opt("size"),
        symbol=opt("symbol"),
        instrument_id=opt("instrument_id"),
    )


def _ts_kind(value: str) -> str:
    """How to parse a timestamp column: 'int' (ns), 'arrow' (ISO with offset) or 'string' (numpy)."""
    if value == "" or _DIGITS.match(value):
        return "int"
    try:
        pa.array([value]).cast(pa.timestamp("ns", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return "string"  # e.g. naive ISO without an offset: numpy parses it as UTC
    return "arrow"


def _column_types(lay: CsvLayout, iso_as_string: bool) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {}
    for c, kind in lay.ts_kind.items():
        if kind == "int":
            types[c] = pa.int64()
        elif kind == "arrow" and not iso_as_string:
            types[c] = pa.timestamp("ns", tz="UTC")
        else:
            types[c] = pa.string()
    for c in lay.bid_px + lay.ask_px + lay.bid_sz + lay.ask_sz:
        types[c] = pa.float64()
    for num in (lay.price, lay.size):
        if num:
            types[num] = pa.float64()
    for text in (lay.action, lay.side, lay.symbol):
        if text:
            types[text] = _DICT
    if lay.instrument_id and not lay.symbol:
        types[lay.instrument_id] = pa.string()
    return types


def _ts(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return parse_iso_ns(col.to_numpy(zero_copy_only=False).astype(np.str_))
    return to_i64(col)


def _symbol_from_name(path: str | os.PathLike[str]) -> str:
    return Path(path).name.split("_")[0].split(".")[0] or "UNKNOWN"


def _to_batch(table: pa.Table, lay: CsvLayout, fallback_symbol: str, fixed: bool) -> BookBatch:
    n = table.num_rows
    bid_px = stack(table, lay.bid_px, np.nan)
    ask_px = stack(table, lay.ask_px, np.nan)
    price = to_f64(table.column(lay.price)) if lay.price else np.full(n, np.nan)
    for a in (bid_px, ask_px, price):
        a[a >= UNDEF_PRICE_MIN] = np.nan  # UNDEF_PRICE: never a real price, even before `fixed` is known
        if fixed:
            a /= FIXED_DIVISOR
    if lay.symbol:
        symbol = to_str(table.column(lay.symbol), null=fallback_symbol)
    elif lay.instrument_id:
        symbol = to_str(table.column(lay.instrument_id), null=fallback_symbol)
    else:
        symbol = np.full(n, fallback_symbol)
    return BookBatch(
        ts_event=_ts(table, lay.ts_event),
        ts_recv=_ts(table, lay.ts_recv) if lay.ts_recv else None,
        symbol=symbol,
        action=to_str(table.column(lay.action), "N") if lay.action else np.full(n, "N"),
        side=to_str(table.column(lay.side), "N") if lay.side else np.full(n, "N"),
        price=price,
        size=to_f64(table.column(lay.size), 0.0) if lay.size else np.zeros(n),
        bid_px=bid_px,
        bid_sz=stack(table, lay.bid_sz, 0.0),
        ask_px=ask_px,
        ask_sz=stack(table, lay.ask_sz, 0.0),
    )


def _looks_fixed_point(table: pa.Table, lay: CsvLayout) -> bool | None:
    """True/False once the chunk has a finite top-of-book or event price, None if it has none."""
    cols = [lay.bid_px[0], lay.ask_px[0], *([lay.price] if lay.price else [])]
    top = np.concatenate([to_f64(table.column(c)) for c in cols])
    top = top[np.isfinite(top) & (top < UNDEF_PRICE_MIN)]
    if top.size == 0:
        return None
    return bool(np.median(np.abs(top)) >= FIXED_POINT_MIN and np.all(top == np.round(top)))


def iter_csv(
    path: str | os.PathLike[str],
    *,
    chunk_rows: int = 250_000,
    iso_as_string: bool = False,
    stats: dict[str, int] | None = None,
) -> Iterator[BookBatch]:
    """Stream a Databento MBP CSV as ``BookBatch`` chunks of at most ``chunk_rows`` rows.

    Parameters
    ----------
    path : plain, ``.gz`` or ``.zst`` CSV file
    chunk_rows : maximum rows per yielded batch
    iso_as_string : parse ISO timestamps with numpy instead of pyarrow (the
        fallback used automatically when pyarrow rejects the timestamp format)
    stats : if given, ``stats["malformed_row"]`` counts rows skipped because
        they have the wrong number of fields (e.g. a truncated last line)
    """
    counts = stats if stats is not None else {}

    def skip_bad_row(row: object) -> str:
        counts["malformed_row"] = counts.get("malformed_row", 0) + 1
        return "skip"

    lay = sniff_layout(path)
    types = _column_types(lay, iso_as_string)
    row_bytes = max(64, len(read_head(path, 4096).split(b"\n", 1)[0]))
    block = int(min(MAX_BLOCK_BYTES, max(1 << 16, chunk_rows * row_bytes * 1.2)))
    read_opts = pacsv.ReadOptions(column_names=lay.names, skip_rows=1, block_size=block, use_threads=True)
    parse = pacsv.ParseOptions(invalid_row_handler=skip_bad_row)
    conv = pacsv.ConvertOptions(column_types=types, include_columns=list(types), strings_can_be_null=True)
    fallback_symbol = _symbol_from_name(path)
    fixed: bool | None = None
    stream = open_stream(path)
    try:
        try:
            reader = pacsv.open_csv(
                stream, read_options=read_opts, parse_options=parse, convert_options=conv
            )
        except pa.ArrowInvalid as exc:
            if not iso_as_string and "timestamp" in str(exc):
                stream.close()
                yield from iter_csv(path, chunk_rows=chunk_rows, iso_as_string=True, stats=stats)
                return
            raise SchemaError(f"{path}: cannot parse as Databento CSV: {exc}") from exc
        for table in rechunk(reader, chunk_rows):
            if fixed is None:
                fixed = _looks_fixed_point(table, lay)
            yield _to_batch(table, lay, fallback_symbol, bool(fixed))
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"{path}: malformed CSV ({exc}); check the file or pass --format") from exc
    finally:
        stream.close()
