"""Reader registry and the public entry points for order-book files.

- ``detect_format(path)``: ``"mbp10-csv"``, ``"dbn"``, ``"lobster"`` or ``"parquet"``
  from the file name and its header / magic bytes.
- ``open_batches(path, fmt)``: the raw rows, streamed in chunks of at most
  ``chunk_rows`` rows (a multi-GB file is never loaded whole).
- ``read_book(paths, fmt)``: validated rows of one or many files, concatenated,
  with rejections counted per reason (never an exception for a whole file).

Chunked reading gives exactly the rows of whole reading: the validation
carries ``last_ts`` (per symbol, the latest ``ts_event`` seen) across chunks and
files, so time going backwards at a chunk boundary is caught the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.core.errors import FormatDetectionError
from feeds.book import BookBatch, merge_rejections
from feeds.files.arrow import compression_of, read_head
from feeds.files.levels import pad_levels

__all__ = [
    "FORMATS",
    "CleanChunk",
    "ReadResult",
    "detect_format",
    "expand_paths",
    "iter_clean",
    "open_batches",
    "pad_levels",
    "read_book",
]

PathLike = str | os.PathLike[str]
FORMATS: tuple[str, ...] = ("mbp10-csv", "dbn", "lobster", "parquet")


def _iter_csv(path: PathLike, chunk_rows: int) -> Iterator[BookBatch]:
    from feeds.files.databento_csv import iter_csv

    return iter_csv(path, chunk_rows=chunk_rows)


def _iter_dbn(path: PathLike, chunk_rows: int) -> Iterator[BookBatch]:
    from feeds.files.dbn import iter_dbn

    return iter_dbn(path, chunk_rows=chunk_rows)


def _iter_lobster(path: PathLike, chunk_rows: int) -> Iterator[BookBatch]:
    from feeds.files.lobster import iter_lobster

    return iter_lobster(path, chunk_rows=chunk_rows)


def _iter_parquet(path: PathLike, chunk_rows: int) -> Iterator[BookBatch]:
    from feeds.files.parquet import iter_parquet

    return iter_parquet(path, chunk_rows=chunk_rows)


#: format name -> streaming reader ``(path, chunk_rows) -> Iterator[BookBatch]``
READERS: dict[str, Callable[[PathLike, int], Iterator[BookBatch]]] = {
    "mbp10-csv": _iter_csv,
    "dbn": _iter_dbn,
    "lobster": _iter_lobster,
    "parquet": _iter_parquet,
}


def _bare_name(path: Path) -> str:
    name = path.name.lower()
    if compression_of(path):
        name = name.rsplit(".", 1)[0]
    return name


def detect_format(path: PathLike) -> str:
    """Which reader handles ``path``: one of ``FORMATS``.

    Decided from the name (``.parquet``, ``.dbn[.zst]``, LOBSTER's
    ``SYM_DATE_..._orderbook_N.csv``) and confirmed or decided from the content
    (``PAR1`` / ``DBN`` magic, a CSV header with ``ts_event`` and ``bid_px_00``).

    Raises
    ------
    FormatDetectionError
        Missing file, directory, or nothing recognises it.
    """
    p = Path(path)
    if not p.exists():
        raise FormatDetectionError(f"{p}: no such file")
    if p.is_dir():
        raise FormatDetectionError(f"{p}: is a directory; pass the files (read_book expands directories)")
    from feeds.files.lobster import NAME as LOBSTER_NAME

    if LOBSTER_NAME.match(p.name):
        return "lobster"
    name = _bare_name(p)
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1" or name.endswith((".parquet", ".pq")):
        return "parquet"
    try:
        head = read_head(p, 65536)
    except Exception as exc:  # corrupt compressed stream, unknown codec...
        raise FormatDetectionError(f"{p}: cannot read the file ({exc}); pass --format if it is valid") from exc
    if head[:3] == b"DBN" or name.endswith(".dbn"):
        return "dbn"
    first = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").lower()
    cols = {c.strip() for c in first.split(",")}
    if "ts_event" in cols and ("bid_px_00" in cols or "bid_px" in cols):
        return "mbp10-csv"
    raise FormatDetectionError(
        f"{p}: unrecognised order-book file (first bytes {head[:40]!r}). Supported: Databento MBP "
        "CSV with a header (ts_event, bid_px_00, ...; plain, .gz, .zst), DBN (.dbn, .dbn.zst), "
        "LOBSTER pairs named SYMBOL_YYYY-MM-DD_..._orderbook_N.csv / _message_N.csv, and our "
        "Parquet (mpc-agent convert). Pass --format to force a reader."
    )


def expand_paths(paths: Sequence[PathLike] | PathLike) -> list[Path]:
    """Files to read: directories expand to their recognised files (sorted); a LOBSTER
    message file is dropped when its orderbook file is also listed (the pair is read once)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for child in sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")):
                try:
                    detect_format(child)
                except FormatDetectionError:
                    continue
                out.append(child)
        else:
            out.append(p)
    names = {str(p) for p in out}
    from feeds.files.lobster import NAME as LOBSTER_NAME

    def redundant(p: Path) -> bool:
        m = LOBSTER_NAME.match(p.name)
        return bool(m and m.group("kind") == "message"
                    and str(p.with_name(p.name.replace("_message_", "_orderbook_", 1))) in names)

    return [p for p in out if not redundant(p)]


def open_batches(path: PathLike, fmt: str = "auto", *, chunk_rows: int = 250_000) -> Iterator[BookBatch]:
    """Stream the raw (unvalidated) rows of one file in chunks of at most ``chunk_rows`` rows."""
    if chunk_rows <= 0:
        raise ValueError("chunk_rows must be positive")
    name = detect_format(path) if fmt == "auto" else fmt
    if name not in READERS:
        raise FormatDetectionError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")
    return READERS[name](path, chunk_rows)


@dataclass(frozen=True, slots=True)
class CleanChunk:
    """One validated chunk: good rows, rejections per reason, and per symbol."""

    batch: BookBatch
    rejected: dict[str, int]
    rejected_by_symbol: dict[str, dict[str, int]]
    file: str


def iter_clean(
    paths: Sequence[PathLike] | PathLike,
    fmt: str = "auto",
    *,
    symbol: str | None = None,
    chunk_rows: int = 250_000,
    files: list[str] | None = None,
) -> Iterator[CleanChunk]:
    """Validated chunks of every file in order; ``last_ts`` is carried across chunks and files.

    ``files``, when given, receives the path of each file as it is opened.
    """
    last_ts: dict[str, int] = {}
    for path in expand_paths(paths):
        if files is not None:
            files.append(str(path))
        for raw in open_batches(path, fmt, chunk_rows=chunk_rows):
            batch = raw if symbol is None else raw.for_symbol(symbol)
            if not len(batch):
                continue
            v = batch.validate(last_ts)
            for sym, ts in batch.latest_ts().items():
                last_ts[sym] = max(ts, last_ts.get(sym, ts))
            bad = v.bad
            by_symbol: dict[str, dict[str, int]] = {}
            if bad.any():
                for sym in np.unique(batch.symbol[bad]):
                    keys, counts = np.unique(v.reason[bad & (batch.symbol == sym)], return_counts=True)
                    by_symbol[str(sym)] = {str(k): int(c) for k, c in zip(keys, counts, strict=True)}
                batch = batch.take(~bad)
            yield CleanChunk(batch, v.counts(), by_symbol, str(path))


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Validated rows of one or many files, rejections per reason, and the files read."""

    batch: BookBatch
    rejected: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def read_book(
    paths: Sequence[PathLike] | PathLike,
    fmt: str = "auto",
    *,
    symbol: str | None = None,
    chunk_rows: int = 250_000,
) -> ReadResult:
    """Read, validate and concatenate ``paths`` (files or directories).

    Parameters
    ----------
    paths : one path or a sequence; directories expand to their recognised files
    fmt : ``"auto"`` or one of ``FORMATS`` (applies to every file)
    symbol : keep only this symbol (filtered before validation)
    chunk_rows : rows per streamed chunk; the result does not depend on it

    Files of different depths are padded to the deepest with empty levels.
    """
    files: list[str] = []
    rejected: dict[str, int] = {}
    parts: list[BookBatch] = []
    for chunk in iter_clean(paths, fmt, symbol=symbol, chunk_rows=chunk_rows, files=files):
        merge_rejections(rejected, chunk.rejected)
        if len(chunk.batch):
            parts.append(chunk.batch)
    if not parts:
        return ReadResult(BookBatch.empty(), rejected, files)
    depth = max(b.levels for b in parts)
    return ReadResult(BookBatch.concat([pad_levels(b, depth) for b in parts]), rejected, files)
