"""Book depth alignment shared by the readers and the Parquet writer."""

from __future__ import annotations

import numpy as np

from agent.core.errors import SchemaError
from feeds.book import BookBatch


def pad_levels(batch: BookBatch, levels: int) -> BookBatch:
    """``batch`` with empty levels (NaN price, 0 size) appended up to ``levels``."""
    extra = levels - batch.levels
    if extra < 0:
        raise SchemaError(f"cannot pad a {batch.levels}-level batch down to {levels} levels")
    if extra == 0:
        return batch
    n = len(batch)
    nan = np.full((n, extra), np.nan)
    zero = np.zeros((n, extra))
    return BookBatch(
        ts_event=batch.ts_event, ts_recv=batch.ts_recv, symbol=batch.symbol, action=batch.action,
        side=batch.side, price=batch.price, size=batch.size,
        bid_px=np.hstack([batch.bid_px, nan]), bid_sz=np.hstack([batch.bid_sz, zero]),
        ask_px=np.hstack([batch.ask_px, nan]), ask_sz=np.hstack([batch.ask_sz, zero]),
    )
