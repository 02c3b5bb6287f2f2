"""``mpc-agent publish`` on the real broker (issue 14 item 9): progress and a summary line on
stderr, the JSON result on stdout; ``--cancel PARENT_ID --symbol SYM`` puts a
``parent_cancel.v1`` keyed by the symbol on the parent-orders topic, and refuses without
``--symbol``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from agent.app.cli import main
from feeds.files.readers import read_book
from feeds.kafka import KafkaConnection, KafkaSource
from feeds.ports import Record
from feeds.wire import codec
from feeds.wire.messages import Mbp10, ParentCancelMsg
from tests.unit.feeds.feeds_samples import frog_frame, native

pytestmark = pytest.mark.kafka


async def _read(bootstrap: str, topic: str, n: int, timeout_s: float = 20.0) -> list[Record]:
    out: list[Record] = []
    async with KafkaSource(KafkaConnection(bootstrap_servers=bootstrap), [topic], group_id=None) as src:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for recs in (await src.getmany(timeout_ms=200)).values():
                out.extend(recs)
        for recs in (await src.getmany(timeout_ms=300)).values():  # nothing more than expected
            out.extend(recs)
    return out


def test_publish_shows_progress_and_a_summary_line(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    path = native(frog_frame(2000), tmp_path / "frog.mbp10.csv")  # real FROG rows
    book = read_book([path]).batch
    n, span_s = len(book), (int(book.ts_event[-1]) - int(book.ts_event[0])) / 1e9
    topic = f"md.publish.{uuid.uuid4().hex[:8]}"
    speed = span_s / 2.5  # paced over ~2.5 s: the bar appears after 1 s
    rc = main(["publish", str(path), "--topic", topic, "--bootstrap-servers", kafka_bootstrap, "--progress",
               "--speed", str(speed)])
    assert rc == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)  # stdout: the JSON result only
    assert res["rows"] == n and res["skipped"] == 0 and res["topic"] == topic
    lines = cap.err.replace("\r", "\n").splitlines()
    assert any(f"publish: {n:,} rows of {path}" in line and f"at {speed:g}x real time, about 0.0 min" in line
               for line in lines), cap.err
    bar = [line for line in lines if line.startswith("publish:") and "row/s" in line]  # tqdm, e.g. 2.00k/2.00k
    assert bar and "data " in bar[-1] and "100%" in bar[-1], cap.err
    assert lines[-1].startswith(f"publish: done: {n:,} rows to {topic} in "), lines[-1]
    assert "\x1b[" not in cap.err.replace("\x1b[A", "")  # no colour codes (tqdm's cursor-up aside)
    recs = asyncio.run(_read(kafka_bootstrap, topic, n))
    assert len(recs) == n and all(isinstance(codec.decode(r.value), Mbp10) for r in recs)  # type: ignore[arg-type]


def test_publish_cancel_is_keyed_by_symbol_and_needs_it(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    topic = f"parents.publish.{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MPC_AGENT_TOPICS__PARENT_ORDERS", topic)
    rc = main(["publish", "--bootstrap-servers", kafka_bootstrap, "--cancel", "P-7"])
    err = capsys.readouterr().err
    assert rc == 2 and "--cancel PARENT_ID needs --symbol" in err, err
    rc = main(["publish", "--bootstrap-servers", kafka_bootstrap, "--cancel", "P-7", "--symbol", "FROG",
               "--reason", "trader request"])
    assert rc == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"topic": topic, "parent_cancel": "P-7", "symbol": "FROG"}
    assert cap.err.splitlines()[-1] == f"publish: done: parent_cancel.v1 for P-7 (key FROG) on {topic}"
    recs = asyncio.run(_read(kafka_bootstrap, topic, 1))
    assert len(recs) == 1 and recs[0].key == b"FROG"
    msg = codec.decode(recs[0].value, expected={"parent_cancel.v1"})  # type: ignore[arg-type]
    assert isinstance(msg, ParentCancelMsg) and msg.parent_id == "P-7" and msg.reason == "trader request"
    assert msg.ts_event is not None and abs(msg.ts_event - time.time_ns()) < 60 * 10**9
