"""Databento DBN reader (``.dbn``, ``.dbn.zst``): MBP-10, MBP-1 and TBBO, DBN versions 1-3.

The metadata header is decoded with ``databento_dbn.DBNDecoder`` (symbol
mappings, schema, ``ts_out``). The records themselves are fixed-size C structs
whose MBP layout is the same in DBN v1, v2 and v3, so the fast path views each
chunk of the decompressed stream as a numpy structured array (no per-record
Python objects)::

    RecordHeader  length u1 (x4 bytes), rtype u1, publisher_id u2, instrument_id u4, ts_event u8
    MBP body      price i8, size u4, action c, side c, flags u1, depth u1,
                  ts_recv u8, ts_in_delta i4, sequence u4,
                  levels[N] = (bid_px i8, ask_px i8, bid_sz u4, ask_sz u4, bid_ct u4, ask_ct u4)
    [ts_out u8 when the metadata says ts_out]

N = 10 for MBP-10 (rtype 0x0A), 1 for MBP-1 / TBBO (rtype 0x01). Prices are
fixed-point: ``px = raw / 1e9``; ``UNDEF_PRICE`` (int64 max) -> NaN with size 0.
A stream that mixes record types (live captures with symbol-mapping or system
records) falls back to ``DBNDecoder`` objects, record by record (slower, correct).
Symbols come from the metadata mappings (instrument_id -> raw symbol per date
interval), else the instrument id as text.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import databento_dbn as dbn
import numpy as np
import numpy.typing as npt

from agent.core.errors import SchemaError
from feeds.book import BookBatch
from feeds.files.arrow import open_stream

__all__ = ["MBP_RTYPES", "iter_dbn", "mbp_dtype"]

FIXED_DIVISOR = 1e9
UNDEF_PRICE = int(dbn.UNDEF_PRICE)
#: rtype -> book depth
MBP_RTYPES = {0x0A: 10, 0x01: 1}
_NS_PER_DAY = 86_400 * 1_000_000_000


def mbp_dtype(levels: int, ts_out: bool = False) -> np.dtype[Any]:
    """numpy structured dtype of one DBN MBP-``levels`` record (little endian, packed)."""
    pair = np.dtype([("bid_px", "<i8"), ("ask_px", "<i8"), ("bid_sz", "<u4"),
                     ("ask_sz", "<u4"), ("bid_ct", "<u4"), ("ask_ct", "<u4")])
    fields: list[tuple[Any, ...]] = [
        ("length", "u1"), ("rtype", "u1"), ("publisher_id", "<u2"), ("instrument_id", "<u4"),
        ("ts_event", "<u8"), ("price", "<i8"), ("size", "<u4"), ("action", "S1"), ("side", "S1"),
        ("flags", "u1"), ("depth", "u1"), ("ts_recv", "<u8"), ("ts_in_delta", "<i4"),
        ("sequence", "<u4"), ("levels", pair, (levels,)),
    ]
    if ts_out:
        fields.append(("ts_out", "<u8"))
    return np.dtype(fields)


@dataclass
class _Symbols:
    """instrument_id -> raw symbol, per date interval [start, end)."""

    intervals: list[tuple[int, int, int, str]] = field(default_factory=list)
    fixed: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Any) -> _Symbols:
        out = cls()
        for raw, spans in (meta.mappings or {}).items():
            for span in spans:
                try:
                    iid = int(span["symbol"])
                except (TypeError, ValueError):
                    continue
                start = _date_ns(span["start_date"])
                end = _date_ns(span["end_date"])
                out.intervals.append((iid, start, end, str(raw)))
        return out

    def lookup(self, iid: npt.NDArray[np.integer[Any]], ts: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
        sym = iid.astype(np.int64).astype(np.str_).astype(object)
        for key, name in self.fixed.items():
            sym[iid == key] = name
        for i, start, end, name in self.intervals:
            sym[(iid == i) & (ts >= start) & (ts < end)] = name
        return np.asarray(sym.astype(np.str_))


def _date_ns(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days * _NS_PER_DAY


def _prices(raw: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    out = raw.astype(np.float64) / FIXED_DIVISOR  # correctly rounded: 31000000000 -> 31.0
    out[raw == UNDEF_PRICE] = np.nan
    return out


def _from_struct(rec: npt.NDArray[Any], symbols: _Symbols) -> BookBatch:
    lv = rec["levels"]
    ts_event = rec["ts_event"].astype(np.int64)
    bid_px, ask_px = _prices(lv["bid_px"]), _prices(lv["ask_px"])
    bid_sz = lv["bid_sz"].astype(np.float64)
    ask_sz = lv["ask_sz"].astype(np.float64)
    bid_sz[np.isnan(bid_px)] = 0.0
    ask_sz[np.isnan(ask_px)] = 0.0
    size = rec["size"].astype(np.float64)
    return BookBatch(
        ts_event=ts_event,
        ts_recv=rec["ts_recv"].astype(np.int64),
        symbol=symbols.lookup(rec["instrument_id"], ts_event),
        action=rec["action"].astype(np.str_),
        side=rec["side"].astype(np.str_),
        price=_prices(rec["price"]),
        size=size,
        bid_px=bid_px,
        bid_sz=bid_sz,
        ask_px=ask_px,
        ask_sz=ask_sz,
    )


def _read_metadata(stream: Any, path: str | os.PathLike[str]) -> tuple[Any, bytes]:
    head = bytes(stream.read(8))
    if len(head) < 8 or head[:3] != b"DBN":
        raise SchemaError(f"{path}: not a DBN stream (magic {head[:3]!r}); pass --format")
    if head[3] > 3:
        raise SchemaError(f"{path}: DBN version {head[3]} is newer than this reader (1-3)")
    (length,) = struct.unpack("<I", head[4:8])
    body = bytes(stream.read(length))
    dec = dbn.DBNDecoder()
    dec.write(head + body)
    meta = dec.decode()[0]
    return meta, head + body


def iter_dbn(path: str | os.PathLike[str], *, chunk_rows: int = 250_000) -> Iterator[BookBatch]:
    """Stream the MBP records of a DBN file as ``BookBatch`` chunks of at most ``chunk_rows`` rows.

    Raises
    ------
    SchemaError
        Not a DBN file, or a schema other than MBP-10 / MBP-1 / TBBO.
    """
    with open_stream(path) as stream:
        meta, header = _read_metadata(stream, path)
        schema = str(meta.schema) if meta.schema is not None else ""
        if schema and schema not in ("mbp-10", "mbp-1", "tbbo"):
            raise SchemaError(f"{path}: DBN schema {schema!r}; only mbp-10, mbp-1 and tbbo are order books")
        symbols = _Symbols.from_metadata(meta)
        first = bytes(stream.read(16))
        if len(first) < 2:
            return
        reclen, rtype = first[0] * 4, first[1]
        levels = MBP_RTYPES.get(rtype)
        dtype = mbp_dtype(levels, bool(meta.ts_out)) if levels else None
        if dtype is None or dtype.itemsize != reclen:
            yield from _iter_objects(header + first + bytes(stream.read()), symbols, chunk_rows, path)
            return
        pending = first
        while True:
            data = pending + bytes(stream.read(chunk_rows * reclen - len(pending)))
            pending = b""
            if not data:
                return
            whole = len(data) - len(data) % reclen
            rec = np.frombuffer(data[:whole], dtype=dtype)
            if not (np.all(rec["length"] * 4 == reclen) and np.all(rec["rtype"] == rtype)):
                yield from _iter_objects(header + data + bytes(stream.read()), symbols, chunk_rows, path)
                return
            if len(rec):
                yield _from_struct(rec, symbols)
            if whole < len(data):
                raise SchemaError(f"{path}: truncated DBN record at the end of the file")


def _iter_objects(data: bytes, symbols: _Symbols, chunk_rows: int, path: str | os.PathLike[str]) -> Iterator[BookBatch]:
    """Slow path: mixed record types; decode objects and keep the MBP ones."""
    dec = dbn.DBNDecoder()
    dec.write(data)
    records = dec.decode()
    mbp = [r for r in records if isinstance(r, (dbn.MBP10Msg, dbn.MBP1Msg))]
    for r in records:
        if isinstance(r, dbn.SymbolMappingMsg):
            symbols.fixed[int(r.instrument_id)] = str(r.stype_out_symbol)
    if not mbp:
        return
    levels = max(len(r.levels) for r in mbp)
    dtype = mbp_dtype(levels)
    for start in range(0, len(mbp), chunk_rows):
        part = mbp[start:start + chunk_rows]
        rec = np.zeros(len(part), dtype=dtype)
        for i, r in enumerate(part):
            rec[i] = (0, 0, r.publisher_id, r.instrument_id, r.ts_event, r.price, r.size,
                      str(r.action).encode()[:1], str(r.side).encode()[:1], int(r.flags), r.depth,
                      r.ts_recv, r.ts_in_delta, r.sequence,
                      [(p.bid_px, p.ask_px, p.bid_sz, p.ask_sz, p.bid_ct, p.ask_ct) for p in r.levels]
                      + [(UNDEF_PRICE, UNDEF_PRICE, 0, 0, 0, 0)] * (levels - len(r.levels)))
        yield _from_struct(rec, symbols)
