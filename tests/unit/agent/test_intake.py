"""agent.live.intake: the batch decode of mbp10.v1 gives, row by row, the verdict of codec.decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agent.core.errors import DataError
from agent.live.intake import Intake
from agent.live.metrics import AgentMetrics
from agent.live.settings import TopicsSection
from feeds.ports import Record
from feeds.wire import codec

TOPICS = TopicsSection()
GOOD = {"schema": "mbp10.v1", "symbol": "FROG", "ts_event": 1_743_687_000_000_000_000, "action": "A",
        "side": "B", "price": 10.0, "size": 100.0, "bid_px": [10.0, 9.99, 9.98], "bid_sz": [100.0, 10.0, 50.0],
        "ask_px": [10.01, 10.02], "ask_sz": [200.0, 300.0]}


def _msg(**change: object) -> bytes:
    d = dict(GOOD, **change)
    for k, v in change.items():
        if v is _DROP:
            del d[k]
    return json.dumps(d).encode()


_DROP = object()
CASES: list[bytes] = [
    _msg(),
    _msg(bid_px=[], bid_sz=[]),  # one-sided book
    _msg(action="T", side="A", price=10.01),
    _msg(action="T", price=_DROP),  # trade without a price
    _msg(bid_px=[10.02, 9.99, 9.98]),  # crossed
    _msg(bid_px=[10.01, 9.99, 9.98]),  # locked
    _msg(bid_px=[10.0, 0.0, 9.98]),  # non-positive level price
    _msg(ask_sz=[200.0, -1.0]),  # negative level size
    _msg(bid_px=[10.0, 10.0, 9.98]),  # bids not strictly descending
    _msg(ask_px=[10.01, 10.005]),  # asks not ascending
    _msg(bid_sz=[1.0, 2.0]),  # levels mismatch
    _msg(bid_px=[10.0 - i / 100 for i in range(11)], bid_sz=[1.0] * 11),  # too many levels
    _msg(extra=1),
    _msg(schema=_DROP),
    _msg(schema="fill.v1"),
    _msg(ts_event="1743687000000000000"),
    _msg(ts_event=True),
    _msg(ts_event=-5),
    _msg(ts_event=1.5),
    _msg(symbol=" FROG"),
    _msg(symbol=""),
    _msg(size=-1.0),
    _msg(price=-1.0),
    _msg(action="X"),
    b'{"schema":"mbp10.v1","symbol":"FROG","ts_event":1,"action":"A","side":"B","bid_px":[NaN],"bid_sz":[1]}',
    b"{not json",
    b"\xff\xfe",
    b"[1,2]",
    _msg(bid_px=[10.0, 9.99, 9.98, 9.97], bid_sz=[100.0, 1.0, 1.0, 1.0], ts_event=1_743_687_000_000_000_001),
]


def _verdict(raw: bytes) -> str:
    try:
        codec.decode(raw, expected={"mbp10.v1"})
    except DataError as exc:
        return str(getattr(exc, "reason", "?"))
    return "ok"


def test_intake_batch_decode_matches_codec_decode_row_by_row() -> None:
    m = AgentMetrics.create(CollectorRegistry())
    intake = Intake(TOPICS, m)
    recs = [Record(TOPICS.md, 0, i, b"FROG", raw) for i, raw in enumerate(CASES)]
    inb = intake.take({TOPICS.md: recs})
    expected = [_verdict(raw) for raw in CASES]
    assert expected.count("ok") == 4 and len(set(expected)) > 8  # the cases are meaningful
    accepted = [i for i, v in enumerate(expected) if v == "ok"]
    assert inb.md is not None and len(inb.md) == len(accepted)
    assert inb.md.ts_event.tolist() == [json.loads(CASES[i])["ts_event"] for i in accepted]
    got = {int(dict(r.headers)["source.offset"]): dict(r.headers)["error"].decode() for r in inb.dlq}
    assert got == {i: v for i, v in enumerate(expected) if v != "ok"}


def test_intake_batch_decode_builds_the_same_book_as_codec() -> None:
    intake = Intake(TOPICS, AgentMetrics.create(CollectorRegistry()))
    good = [CASES[0], CASES[1], CASES[2]]
    inb = intake.take({TOPICS.md: [Record(TOPICS.md, 0, i, b"F", raw) for i, raw in enumerate(good)]})
    ref = codec.books_to_batch([codec.decode(r) for r in good])  # type: ignore[misc]
    assert inb.md is not None
    for f in ("ts_event", "bid_px", "bid_sz", "ask_px", "ask_sz", "price", "size"):
        np.testing.assert_array_equal(getattr(inb.md, f), getattr(ref, f))


@pytest.mark.parametrize("limit", [100, 10_000])
def test_intake_oversize_messages_are_rejected_with_the_codec_reason(limit: int) -> None:
    intake = Intake(TOPICS, AgentMetrics.create(CollectorRegistry()), max_message_bytes=limit)
    inb = intake.take({TOPICS.md: [Record(TOPICS.md, 0, 0, b"F", CASES[0])]})
    assert (len(inb.dlq) == 1) == (len(CASES[0]) > limit)
    if inb.dlq:
        assert dict(inb.dlq[0].headers)["error"] == b"oversize"
