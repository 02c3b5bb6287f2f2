"""``mpc-agent convert``: any supported format to our Parquet schema (``book.v1``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from feeds.book import BookBatch
from feeds.files.parquet import write_parquet
from feeds.files.readers import iter_clean


def convert_to_parquet(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    chunk_rows: int = 250_000,
) -> dict[str, Any]:
    """Read any supported file(s), validate, and write the clean rows to ``out`` (``book.v1``).

    Returns
    -------
    dict
        ``{"out", "files", "rows_written", "rejected": {reason: count}, "seconds"}``.
    """
    t0 = time.perf_counter()
    rejected: dict[str, int] = {}
    files: list[str] = []

    def clean_batches() -> Iterator[BookBatch]:
        for item in iter_clean(paths, fmt, chunk_rows=chunk_rows, files=files):
            for reason, count in item.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + count
            if len(item.batch):
                yield item.batch

    rows = write_parquet(clean_batches(), out, row_group_rows=chunk_rows)
    return {
        "out": str(out),
        "files": files,
        "rows_written": rows,
        "rejected": rejected,
        "seconds": round(time.perf_counter() - t0, 6),
    }
