"""feeds.file_feed (paced replay) and feeds.jsonl (JSONL sink)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from agent.core.errors import FeedError
from feeds.book import BookBatch
from feeds.file_feed import FileFeed, encode_rows
from feeds.jsonl import JsonlSink
from feeds.ports import OutRecord
from feeds.wire import codec

NS = 1_000_000_000


def book(n: int = 10, dt_s: float = 1.0) -> BookBatch:
    ts = 1_743_687_000 * NS + (np.arange(n) * dt_s * NS).astype(np.int64)
    bid = 10.0 - np.arange(3)[None, :] / 100 + np.zeros((n, 1))
    return BookBatch(ts_event=ts, symbol=np.full(n, "X"), action=np.full(n, "A"), side=np.full(n, "B"),
                     price=np.full(n, np.nan), size=np.ones(n), bid_px=bid, bid_sz=np.ones((n, 3)),
                     ask_px=10.05 + np.arange(3)[None, :] / 100 + np.zeros((n, 1)), ask_sz=np.ones((n, 3)))


class FakeClock:
    """Monotonic clock advanced by the feed's own sleeps (asyncio.sleep patched)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_file_feed_speed_zero_yields_all_rows_in_chunks_of_batch_rows() -> None:
    b = book(10)
    chunks = [c async for c in FileFeed(b, speed_x=0, batch_rows=4)]
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert np.concatenate([c.ts_event for c in chunks]).tolist() == b.ts_event.tolist()


async def test_file_feed_paces_rows_by_event_time_over_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        clock.t += s

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    b = book(5, dt_s=2.0)  # rows at 0, 2, 4, 6, 8 s
    feed = FileFeed(b, speed_x=4.0, batch_rows=100, monotonic=clock)
    released: list[tuple[float, int]] = []
    async for chunk in feed:
        released.append((clock.t - 100.0, len(chunk)))
        assert feed.clock() >= int(chunk.ts_event[-1])
    # a row at event offset t is released at wall offset t / 4
    assert released == [(0.0, 1), (0.5, 1), (1.0, 1), (1.5, 1), (2.0, 1)]
    assert sum(slept) == pytest.approx(2.0)


def test_file_feed_rejects_a_negative_speed() -> None:
    with pytest.raises(ValueError, match="speed_x"):
        FileFeed(book(), speed_x=-1)


def test_encode_rows_round_trips_through_the_codec() -> None:
    b = book(3)
    recs = encode_rows(b, "md", first_sequence=7)
    msgs = [codec.decode(r.value) for r in recs]  # type: ignore[arg-type]
    assert [m.sequence for m in msgs] == [7, 8, 9]  # type: ignore[union-attr]
    assert codec.books_to_batch(msgs).ts_event.tolist() == b.ts_event.tolist()  # type: ignore[arg-type]
    assert all(r.key == b"X" for r in recs)


async def test_jsonl_sink_writes_mapped_topics_raw_and_others_as_envelopes(tmp_path: Path) -> None:
    sink = JsonlSink({"children": tmp_path / "c.jsonl"}, default_dir=tmp_path / "other")
    with pytest.raises(FeedError):
        await sink.send("children", b"{}")
    async with sink:
        await sink.send_many([OutRecord("children", b'{"a":1}', b"k"),
                              OutRecord("dlq", b"\xffbad", b"k", (("error", b"invalid_utf8"),))])
        await sink.send("children", b'{"a":2}')
    assert (tmp_path / "c.jsonl").read_text().splitlines() == ['{"a":1}', '{"a":2}']
    env = json.loads((tmp_path / "other" / "dlq.jsonl").read_text())
    assert env["headers"] == {"error": "invalid_utf8"} and env["key"] == "k"
    assert sink.counts == {"children": 2, "dlq": 1}
    await sink.stop()  # idempotent
