"""Paced file replay: a data file as a live market-data feed (``mpc-agent run --feed file``).

:class:`FileFeed` yields ``BookBatch`` chunks of an already validated book
(``feeds.files.readers.read_book``) as an async iterator, at ``speed_x`` times real
time: a row with event time ``t`` is released once

    (t - t_first) / speed_x  <=  wall time elapsed since the first batch

(``speed_x = 0``: as fast as possible, in chunks of ``batch_rows`` rows,
yielding to the event loop between chunks). :meth:`FileFeed.clock` is the
matching *replay clock* in event-time nanoseconds,
``t_first + speed_x * elapsed``, that the service uses for snapshot age; it is
None-equivalent (the last released ``ts_event``) at speed 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from feeds.book import BookBatch
from feeds.ports import AsyncComponent, OutRecord, Sink

MAX_SLEEP_S = 0.25


class FileFeed(AsyncComponent):
    """Async iterator of paced ``BookBatch`` chunks (see the module docstring).

    Parameters
    ----------
    book : validated rows in time order (any number of symbols).
    speed_x : pace in multiples of real time; 0 = as fast as possible.
    batch_rows : most rows per chunk.
    monotonic : injectable monotonic clock in seconds (tests).
    """

    def __init__(self, book: BookBatch, *, speed_x: float = 0.0, batch_rows: int = 2000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not (speed_x >= 0 and np.isfinite(speed_x)):
            raise ValueError(f"speed_x must be >= 0 (0 = as fast as possible), got {speed_x}")
        if batch_rows <= 0:
            raise ValueError("batch_rows must be positive")
        self.book, self.speed_x, self.batch_rows = book, float(speed_x), int(batch_rows)
        self._mono = monotonic
        self._ts = np.asarray(book.ts_event, dtype=np.int64)
        self.pos = 0
        self._t0_mono: float | None = None
        self._started = False

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], fmt: str = "auto", *, symbol: str | None = None,
                   **kwargs: float) -> FileFeed:
        """Read and validate ``paths`` (``feeds.files.readers.read_book``), then pace them."""
        from feeds.files.readers import read_book

        return cls(read_book(list(paths), fmt, symbol=symbol).batch, **kwargs)  # type: ignore[arg-type]

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    @property
    def done(self) -> bool:
        return self.pos >= len(self._ts)

    def clock(self) -> int:
        """Replay clock in event-time ns (see the module docstring)."""
        if not len(self._ts):
            return 0
        if self.speed_x == 0 or self._t0_mono is None:
            return int(self._ts[max(self.pos - 1, 0)])
        return int(self._ts[0] + (self._mono() - self._t0_mono) * self.speed_x * 1e9)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BookBatch:
        n = len(self._ts)
        if self.pos >= n:
            raise StopAsyncIteration
        if self._t0_mono is None:
            self._t0_mono = self._mono()
        if self.speed_x == 0:
            end = min(n, self.pos + self.batch_rows)
            await asyncio.sleep(0)
        else:
            while True:
                elapsed = self._mono() - self._t0_mono
                due = self._ts[0] + elapsed * self.speed_x * 1e9
                end = int(np.searchsorted(self._ts, due, side="right"))
                if end > self.pos:
                    break
                wait = (self._ts[self.pos] - self._ts[0]) / 1e9 / self.speed_x - elapsed
                await asyncio.sleep(min(max(wait, 0.0), MAX_SLEEP_S))
            end = min(end, self.pos + self.batch_rows)
        chunk = self.book[self.pos:end]
        self.pos = end
        return chunk


def encode_rows(batch: BookBatch, topic: str, *, first_sequence: int | None = None) -> list[OutRecord]:
    """``mbp10.v1`` records of every row (key = symbol); rows the wire schema refuses are skipped."""
    from agent.core.errors import DataError
    from feeds.wire import codec

    out: list[OutRecord] = []
    for i in range(len(batch)):
        seq = None if first_sequence is None else first_sequence + i
        try:
            msg = codec.batch_row_to_mbp10(batch, i, sequence=seq)
        except DataError:
            continue
        out.append(OutRecord(topic, codec.encode(msg), key=str(batch.symbol[i]).encode()))
    return out


async def publish_feed(feed: FileFeed, sink: Sink, topic: str) -> int:
    """Put every paced chunk of ``feed`` on ``topic`` (waiting for acks per chunk); returns rows sent."""
    sent = 0
    async for chunk in feed:
        records = encode_rows(chunk, topic, first_sequence=feed.pos - len(chunk))
        if records:
            await sink.send_many(records)
        sent += len(records)
    return sent
