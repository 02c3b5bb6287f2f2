"""Parquet in our canonical book schema: read (streamed by row group), write, convert.

Schema ``book.v1`` (one column per ``BookBatch`` field, levels **flattened**
with Databento's names so any tool - pandas, DuckDB, Polars - reads it as is):

============== ============================ =====================================
column         type                         meaning
============== ============================ =====================================
ts_event       int64                        venue time, ns since the epoch UTC
ts_recv        int64 (absent if unknown)    receive time, ns
symbol         dictionary<int32, string>
action         dictionary<int32, string>    A/C/M/T/F/R/N
side           dictionary<int32, string>    A/B/N
price, size    float64                      event price / size
bid_px_00..    float64                      per level ``LL`` = 00..levels-1:
bid_sz_00..                                 bid_px_LL, bid_sz_LL, ask_px_LL, ask_sz_LL
ask_px_00..                                 (empty level: NaN price, 0 size)
ask_sz_00..
============== ============================ =====================================

Schema metadata: ``mpc_agent.schema = book.v1`` and ``mpc_agent.levels``.
Written with snappy compression (fast to decode); any codec reads back.
Float64 keeps every value bit for bit, so ``write -> read`` is lossless
(NaN included). Reading streams ``iter_batches`` so memory is bounded by
``chunk_rows``, never by the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.arrow import stack, to_f64, to_i64, to_str
from feeds.files.levels import pad_levels

__all__ = ["SCHEMA_NAME", "batch_to_table", "iter_parquet", "write_parquet"]

SCHEMA_NAME = "book.v1"
#: snappy decodes about twice as fast as zstd here (bench/feeds.py) for ~30% more bytes
COMPRESSION = "snappy"
_DICT = pa.dictionary(pa.int32(), pa.string())


def _level_names(prefix: str, levels: int) -> list[str]:
    return [f"{prefix}_{i:02d}" for i in range(levels)]


def schema_for(levels: int, with_ts_recv: bool) -> pa.Schema:
    """The ``book.v1`` Arrow schema for ``levels`` levels."""
    cols: list[pa.Field] = [pa.field("ts_event", pa.int64(), nullable=False)]
    if with_ts_recv:
        cols.append(pa.field("ts_recv", pa.int64(), nullable=False))
    cols += [pa.field(n, _DICT) for n in ("symbol", "action", "side")]
    cols += [pa.field("price", pa.float64()), pa.field("size", pa.float64())]
    for prefix in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        cols += [pa.field(n, pa.float64()) for n in _level_names(prefix, levels)]
    meta = {b"mpc_agent.schema": SCHEMA_NAME.encode(), b"mpc_agent.levels": str(levels).encode()}
    return pa.schema(cols, metadata=meta)


def batch_to_table(batch: BookBatch) -> pa.Table:
    """A ``BookBatch`` as an Arrow table in the ``book.v1`` schema."""
    schema = schema_for(batch.levels, batch.ts_recv is not None)
    arrays: list[pa.Array] = [pa.array(batch.ts_event, pa.int64())]
    if batch.ts_recv is not None:
        arrays.append(pa.array(batch.ts_recv, pa.int64()))
    for name in ("symbol", "action", "side"):
        arrays.append(pa.array(getattr(batch, name)).dictionary_encode())
    arrays += [pa.array(batch.price, pa.float64()), pa.array(batch.size, pa.float64())]
    for prefix in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        values = getattr(batch, prefix)
        arrays += [pa.array(np.ascontiguousarray(values[:, i])) for i in range(batch.levels)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _levels_of(schema: pa.Schema, path: str | os.PathLike[str]) -> int:
    meta = schema.metadata or {}
    if b"mpc_agent.levels" in meta:
        return int(meta[b"mpc_agent.levels"])
    levels = 0
    while f"bid_px_{levels:02d}" in schema.names:
        levels += 1
    if levels == 0 or "ts_event" not in schema.names:
        raise SchemaError(
            f"{path}: not in our book.v1 Parquet schema (needs ts_event and bid_px_00...); "
            "convert it with `mpc-agent convert`"
        )
    return levels


def table_to_batch(table: pa.Table | pa.RecordBatch, levels: int) -> BookBatch:
    """Inverse of ``batch_to_table``."""
    names = table.schema.names
    n = table.num_rows

    def text(name: str, default: str) -> Any:
        return to_str(table.column(name), default) if name in names else np.full(n, default)

    return BookBatch(
        ts_event=to_i64(table.column("ts_event")),
        ts_recv=to_i64(table.column("ts_recv")) if "ts_recv" in names else None,
        symbol=text("symbol", "UNKNOWN"),
        action=text("action", "N"),
        side=text("side", "N"),
        price=to_f64(table.column("price")) if "price" in names else np.full(n, np.nan),
        size=to_f64(table.column("size"), 0.0) if "size" in names else np.zeros(n),
        bid_px=stack(table, _level_names("bid_px", levels), np.nan),
        bid_sz=stack(table, _level_names("bid_sz", levels), 0.0),
        ask_px=stack(table, _level_names("ask_px", levels), np.nan),
        ask_sz=stack(table, _level_names("ask_sz", levels), 0.0),
    )


def iter_parquet(path: str | os.PathLike[str], *, chunk_rows: int = 250_000) -> Iterator[BookBatch]:
    """Stream a ``book.v1`` Parquet file in batches of at most ``chunk_rows`` rows."""
    pf = pq.ParquetFile(str(path))
    levels = _levels_of(pf.schema_arrow, path)
    for rb in pf.iter_batches(batch_size=chunk_rows):
        if rb.num_rows:
            yield table_to_batch(rb, levels)


def write_parquet(
    batches: Iterable[BookBatch],
    out: str | os.PathLike[str],
    *,
    levels: int | None = None,
    row_group_rows: int = 250_000,
) -> int:
    """Write batches (same depth and ts_recv presence) to one Parquet file; return rows written.

    The first batch fixes the schema; an empty input writes an empty file with
    ``levels`` (default 10) levels.
    """
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for batch in batches:
            if writer is None:
                schema = schema_for(batch.levels, batch.ts_recv is not None)
                writer = pq.ParquetWriter(str(out), schema, compression=COMPRESSION)
            table = batch_to_table(_conform(batch, writer.schema, out))
            if table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table, row_group_size=row_group_rows)
            rows += len(batch)
        if writer is None:
            writer = pq.ParquetWriter(str(out), schema_for(levels or 10, False), compression=COMPRESSION)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _conform(batch: BookBatch, schema: pa.Schema, out: str | os.PathLike[str]) -> BookBatch:
    """Fit a later batch to the file's schema: pad shallower books with empty levels,
    drop ``ts_recv`` if the file has none; refuse deeper books or a missing ``ts_recv``."""
    levels = int(schema.metadata[b"mpc_agent.levels"])
    if batch.levels > levels:
        raise SchemaError(f"{out}: a {batch.levels}-level batch after {levels}-level ones; put the deepest file first")
    has_recv = "ts_recv" in schema.names
    if has_recv and batch.ts_recv is None:
        raise SchemaError(f"{out}: a batch without ts_recv after batches with it; convert such files separately")
    if not has_recv and batch.ts_recv is not None:
        batch = BookBatch(**{**{f: getattr(batch, f) for f in _FIELDS}, "ts_recv": None})
    return pad_levels(batch, levels)


_FIELDS = ("ts_event", "symbol", "action", "side", "price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz")


