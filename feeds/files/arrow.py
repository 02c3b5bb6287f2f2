"""Arrow <-> numpy plumbing shared by the file readers (private).

Everything here is vectorised: string columns go through their dictionary,
level columns are stacked with ``numpy.column_stack``, ISO timestamps are
parsed by pyarrow (or, as a fallback, by numpy ``datetime64[ns]`` after the
UTC offset has been split off). Nothing loops over rows in Python.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

INT64_MIN = int(np.iinfo(np.int64).min)

#: extension -> pyarrow codec name
_CODECS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """Codec implied by the file name (``.gz``/``.zst``/``.bz2``), else None."""
    return _CODECS.get(Path(path).suffix.lower())


def open_stream(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open ``path`` for streaming reads, decompressing ``.gz``/``.zst`` on the fly.

    zstd goes through the ``zstandard`` package when pyarrow lacks the codec.
    """
    codec = compression_of(path)
    if codec == "zstd" and not pa.Codec.is_available("zstd"):
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 - handed to the stream reader
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    stream: Any = pa.input_stream(str(path), compression=codec)
    return stream


def read_head(path: str | os.PathLike[str], nbytes: int = 65536) -> bytes:
    """First ``nbytes`` of the (decompressed) file."""
    with open_stream(path) as f:
        return bytes(f.read(nbytes))


def to_str(col: pa.Array | pa.ChunkedArray, null: str = "") -> npt.NDArray[np.str_]:
    """Arrow string/dictionary column -> numpy unicode array (nulls -> ``null``).

    Goes through the dictionary so the per-element work is a numpy take.
    """
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts: list[npt.NDArray[np.str_]] = []
    for ch in chunks:
        if not pa.types.is_dictionary(ch.type):
            ch = pc.dictionary_encode(ch.cast(pa.string()))
        words = np.array([*ch.dictionary.cast(pa.string()).to_pylist(), null], dtype=np.str_)
        idx = ch.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)
        parts.append(words[idx.astype(np.intp)])
    if not parts:
        return np.zeros(0, dtype="<U1")
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _writable(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Arrow buffers are read-only; BookBatch users may edit arrays in place."""
    return a if a.flags.writeable else a.copy()


def to_f64(col: pa.Array | pa.ChunkedArray, fill: float = np.nan) -> npt.NDArray[np.float64]:
    """Arrow numeric column -> float64 numpy (nulls -> ``fill``)."""
    if col.null_count:
        col = pc.fill_null(col.cast(pa.float64()), fill)
    return _writable(np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64))


def to_i64(col: pa.Array | pa.ChunkedArray, fill: int = INT64_MIN) -> npt.NDArray[np.int64]:
    """Arrow integer/timestamp column -> int64 numpy (nulls -> ``fill``)."""
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    if col.null_count:
        col = pc.fill_null(col.cast(pa.int64()), fill)
    return _writable(np.asarray(col.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64))


def stack(table: pa.Table | pa.RecordBatch, names: list[str], fill: float) -> npt.NDArray[np.float64]:
    """Columns ``names`` of ``table`` as one (n, len(names)) float64 array."""
    n = table.num_rows
    if not names:
        return np.zeros((n, 0))
    out = np.empty((n, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        col = table.column(name)
        if col.null_count:
            col = pc.fill_null(col.cast(pa.float64()), fill)
        out[:, j] = col.to_numpy(zero_copy_only=False)  # one copy, straight into place
    return out


def parse_iso_ns(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """ISO-8601 strings -> int64 ns since the epoch UTC, exact to the nanosecond.

    Accepts ``2025-04-03T13:30:00.125395235Z``, ``2025-04-03 13:30:00.125395235+00:00``
    and any ``+HH:MM``/``-HH:MM`` offset: ``t_utc = t_local - offset``. Blank -> INT64_MIN.
    Vectorised with numpy's ``datetime64[ns]`` parser (no per-row Python).
    """
    s = np.asarray(values, dtype=np.str_)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    s = np.strings.strip(s)
    blank = np.strings.str_len(s) == 0
    z = np.strings.endswith(s, "Z")
    s = np.where(z, np.strings.slice(s, 0, -1), s)
    n = np.strings.str_len(s)
    tail = np.strings.slice(s, n - 6, n)
    has_off = (
        ~z
        & (n >= 6)
        & ((np.strings.slice(tail, 0, 1) == "+") | (np.strings.slice(tail, 0, 1) == "-"))
        & (np.strings.slice(tail, 3, 4) == ":")
    )
    off_ns = np.zeros(s.shape, dtype=np.int64)
    if has_off.any():
        t = tail[has_off]
        sign = np.where(np.strings.slice(t, 0, 1) == "-", -1, 1)
        hh = np.strings.slice(t, 1, 3).astype(np.int64)
        mm = np.strings.slice(t, 4, 6).astype(np.int64)
        off_ns[has_off] = sign * (hh * 3600 + mm * 60) * 1_000_000_000
        s = np.where(has_off, np.strings.slice(s, 0, n - 6), s)
    s = np.where(blank, "NaT", s)
    ns = s.astype("datetime64[ns]").astype(np.int64) - off_ns
    ns[blank] = INT64_MIN
    return ns


def rechunk(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup a stream of record batches into tables of exactly ``rows`` rows (the last may be shorter).

    Memory stays bounded by ``rows`` plus one input batch.
    """
    if rows <= 0:
        raise ValueError("chunk_rows must be positive")
    pending: list[pa.RecordBatch] = []
    have = 0
    for b in batches:
        if b.num_rows == 0:
            continue
        pending.append(b)
        have += b.num_rows
        if have < rows:
            continue
        table = pa.Table.from_batches(pending)
        start = 0
        while have - start >= rows:
            yield table.slice(start, rows)
            start += rows
        rest = table.slice(start)
        pending = rest.to_batches() if rest.num_rows else []
        have = rest.num_rows
    if have:
        yield pa.Table.from_batches(pending)
