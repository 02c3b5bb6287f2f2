"""agent.live.book_decoder: large market-data batches decoded in a worker process, with nothing changed.

The worker runs ``decode_books`` itself, so what is checked here is the way there and back: the
same verdicts, reasons, wording, positions and columns as inline decoding (hostile and valid values
mixed), small batches never leave the loop, a worker that dies or answers nonsense costs no record,
and the worker never outlives the agent (closed, or the agent killed).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.core.engine import ExecutionEngine
from agent.core.errors import FeedError
from agent.live import book_decoder
from agent.live.book_decoder import READY, BookDecoder, serve
from agent.live.metrics import AgentMetrics
from agent.live.service import AgentService
from agent.live.settings import ServiceSection, TopicsSection
from feeds.memory import MemoryBus, MemorySink, MemorySource
from feeds.ports import OutRecord
from feeds.wire import codec
from feeds.wire.fast_mbp10 import DecodedBooks, decode_books
from tests.integration.hostile import GENERIC, MD, SPECIFIC, Context, dumps, good_book
from tests.unit.feeds.test_fast_mbp10 import assert_identical
from tests.unit.feeds.wire_samples import T0

NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[3]


def hostile_batch(seed: int, n: int = 8) -> tuple[list[bytes | None], int]:
    """Every hostile generator's values between valid books, plus tombstones; and the size limit."""
    rng = random.Random(seed)
    ctx = Context(now_ns=T0 + 3600 * NS, last_good_ns=T0, max_bytes=65_536)
    values: list[bytes | None] = [None]
    for gen in [*GENERIC, SPECIFIC[MD]] * n:
        values.append(gen(MD, ctx, rng)[0])
        values.append(dumps(good_book(ctx, ctx.last_good_ns + 2 * ctx.odd_ns(), rng)))
    return values, ctx.max_bytes


def assert_same(got: DecodedBooks, want: DecodedBooks) -> None:
    assert got.rejected == want.rejected  # index, reason and the DLQ detail's wording
    assert got.index.tolist() == want.index.tolist()
    assert got.strict == want.strict
    assert_identical(got.books, want.books)


def metrics() -> AgentMetrics:
    return AgentMetrics.create(CollectorRegistry())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_the_worker_gives_the_inline_verdicts_and_columns_on_hostile_batches() -> None:
    m = metrics()
    dec = BookDecoder(max_bytes=65_536, min_records=1, metrics=m)
    try:
        assert await dec.warm()
        for seed in range(3):
            values, max_bytes = hostile_batch(seed)
            got = await dec.decode(values)
            assert_same(got, decode_books(values, max_bytes=max_bytes))
            assert got.rejected and len(got.books), "the batch holds both kinds"
        assert dec.offloaded == sum(len(hostile_batch(s)[0]) for s in range(3)) and dec.inline == 0
        assert m.registry.get_sample_value("mpc_agent_md_decoded_total", {"where": "process"}) == dec.offloaded
    finally:
        await dec.close()


async def test_small_batches_stay_on_the_loop_and_start_no_worker() -> None:
    values, max_bytes = hostile_batch(0, n=1)
    dec = BookDecoder(max_bytes=max_bytes, min_records=len(values) + 1, metrics=metrics())
    assert_same(await dec.decode(values), decode_books(values, max_bytes=max_bytes))
    assert dec._starting is None, "a small batch scheduled a worker start"  # (not a wait for one that may come)
    assert dec.pid is None and not dec.ready and dec.inline == len(values)
    off = BookDecoder(max_bytes=max_bytes, min_records=None)
    assert_same(await off.decode(values * 50), decode_books(values * 50, max_bytes=max_bytes))
    assert not await off.warm() and off._starting is None and off.pid is None


async def test_the_first_large_batch_starts_the_worker_without_waiting_for_it() -> None:
    values, max_bytes = hostile_batch(1)
    dec = BookDecoder(max_bytes=max_bytes, min_records=10)
    try:
        first = await dec.decode(values)  # decoded inline while the worker starts
        assert dec.inline == len(values) and dec.offloaded == 0
        deadline = time.monotonic() + 60
        while not dec.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert dec.ready
        assert_same(await dec.decode(values), first)
        assert dec.offloaded == len(values)
    finally:
        await dec.close()


async def test_a_worker_that_dies_costs_no_record_and_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_decoder, "RESTART_BACKOFF_S", 0.0)
    m = metrics()
    values, max_bytes = hostile_batch(2)
    want = decode_books(values, max_bytes=max_bytes)
    dec = BookDecoder(max_bytes=max_bytes, min_records=1, metrics=m)
    try:
        assert await dec.warm()
        pid = dec.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert_same(await dec.decode(values), want)  # the batch in hand, decoded inline
        assert dec.failures == 1 and dec.inline == len(values) and not dec.ready
        assert m.registry.get_sample_value("mpc_agent_decode_worker_failures_total") == 1.0
        assert await dec.warm() and dec.pid != pid
        assert_same(await dec.decode(values), want)
        assert dec.offloaded == len(values)
    finally:
        await dec.close()


async def test_an_answer_that_is_not_a_decoded_batch_is_a_failure_not_a_result() -> None:
    values, max_bytes = hostile_batch(3)
    dec = BookDecoder(max_bytes=max_bytes, min_records=1)
    try:
        assert await dec.warm()
        assert dec._proc is not None and dec._proc.stdin is not None
        # a job the worker cannot unpickle: it answers with the error's text, which the agent refuses
        dec._proc.stdin.write(book_decoder._HEADER.pack(3) + b"\x80\x05X")
        await dec._proc.stdin.drain()
        seq, answer = await dec._read()
        assert seq is None and isinstance(answer, str) and "Error" in answer
        dec._proc.stdin.write(book_decoder._HEADER.pack(3) + b"\x80\x05X")  # the next answer is that text
        assert_same(await dec.decode(values), decode_books(values, max_bytes=max_bytes))
        assert dec.failures == 1 and dec.inline == len(values)
    finally:
        await dec.close()


async def test_a_stale_answer_of_the_same_size_is_never_taken_for_the_next_batch() -> None:
    """An answer left in the pipe (a job whose caller went away) has the right size for the next batch
    of as many values: only the job number tells them apart."""
    a, max_bytes = hostile_batch(4)
    b, _ = hostile_batch(5)
    assert len(a) == len(b)
    dec = BookDecoder(max_bytes=max_bytes, min_records=1)
    try:
        assert await dec.warm()
        assert dec._proc is not None and dec._proc.stdin is not None
        frame = pickle.dumps((999, a, max_bytes))
        dec._proc.stdin.write(book_decoder._HEADER.pack(len(frame)) + frame)
        assert_same(await dec.decode(b), decode_books(b, max_bytes=max_bytes))
        assert dec.failures == 1 and dec.inline == len(b)
    finally:
        await dec.close()


async def test_a_job_cancelled_midway_takes_its_worker_with_it() -> None:
    values, max_bytes = hostile_batch(6, n=40)
    dec = BookDecoder(max_bytes=max_bytes, min_records=1)
    try:
        assert await dec.warm()
        pid = dec.pid
        assert pid is not None
        job = asyncio.create_task(dec.decode(values))
        await asyncio.sleep(0)  # the job is written, its answer not read
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert dec.pid is None and dec.failures == 0
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not alive(pid)
        other, _ = hostile_batch(7, n=40)
        assert_same(await dec.decode(other), decode_books(other, max_bytes=max_bytes))
        assert await dec.warm()  # and a new worker serves the next ones
        assert_same(await dec.decode(other), decode_books(other, max_bytes=max_bytes))
    finally:
        await dec.close()


def test_serve_answers_each_frame_in_order_and_stops_at_the_end_of_its_input() -> None:
    jobs = [hostile_batch(s, n=2) for s in range(2)]
    inp = io.BytesIO()
    for seq, (values, max_bytes) in enumerate(jobs):
        frame = pickle.dumps((seq, values, max_bytes))
        inp.write(book_decoder._HEADER.pack(len(frame)) + frame)
    inp.write(book_decoder._HEADER.pack(100) + b"cut short")  # a truncated frame: the agent is gone
    inp.seek(0)
    out = io.BytesIO()
    serve(inp, out)
    out.seek(0)
    answers = []
    while head := out.read(book_decoder._HEADER.size):
        (n,) = book_decoder._HEADER.unpack(head)
        answers.append(pickle.loads(out.read(n)))
    assert answers[0] == READY and len(answers) == 3
    for seq, ((values, max_bytes), (got_seq, got)) in enumerate(zip(jobs, answers[1:], strict=True)):
        assert got_seq == seq
        assert_same(got, decode_books(values, max_bytes=max_bytes))


async def test_close_stops_the_worker() -> None:
    dec = BookDecoder(max_bytes=1 << 20, min_records=1)
    assert await dec.warm()
    pid = dec.pid
    assert pid is not None and alive(pid)
    await dec.close()
    await dec.close()  # idempotent
    assert not alive(pid) and dec.pid is None and not dec.ready


def test_the_worker_exits_when_the_agent_is_killed() -> None:
    """An agent killed with SIGKILL (no close, no atexit): its worker sees its stdin close and exits."""
    script = textwrap.dedent("""
        import asyncio, os, signal, sys
        from agent.live.book_decoder import BookDecoder
        async def main():
            dec = BookDecoder(max_bytes=1 << 20, min_records=1)
            assert await dec.warm()
            print(dec.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the decode worker outlived the agent"


async def test_the_service_decides_the_same_with_the_worker_as_inline() -> None:
    """A parent order and market data through the service, once with every batch offloaded and once
    inline: the same child orders, the same DLQ copies, the same counts."""
    from tests.unit.agent.test_service import make_book, mbp_records, parent

    topics = TopicsSection()
    book = make_book()
    good = mbp_records(book[: len(book) // 2])
    bad = [b"{not json", good[3].replace(b'"bid_px":[', b'"bid_px":["x",')]

    def untimed(value: bytes) -> dict[str, object]:
        child = json.loads(value)
        child["solver"].pop("solve_us")  # wall time of the solve, the one field that may differ
        return child

    async def run(min_records: int) -> tuple[list[dict[str, object]], list[bytes | None], float | None,
                                                   BookDecoder]:
        bus = MemoryBus()
        p = parent()
        bus.apply([OutRecord(topics.parent_orders, codec.encode(codec.parent_from_model(p)), key=b"P1")])
        bus.apply([OutRecord(topics.md, v, key=b"FROG") for v in good[:40] + bad + good[40:]])
        m = metrics()
        svc = AgentService(ExecutionEngine(), sink=MemorySink(bus), metrics=m, clock=None,
                           source=MemorySource(bus, [topics.parent_orders, topics.fills, topics.md]),
                           settings=ServiceSection(poll_timeout_ms=10, max_batch_records=64,
                                                   decode_worker_min_records=min_records))
        async with svc:
            if min_records:
                assert await svc.decoder.warm()
            await svc.run(until_idle=True)
            decoder = svc.decoder
        assert decoder.pid is None, "the service's stop closed the worker"
        return ([untimed(v) for v in bus.values(topics.child_orders) if v is not None], [r.value for r in bus.records(topics.dlq)],
                m.registry.get_sample_value("mpc_agent_snapshots_total"), decoder)

    children, dlq, snaps, worker = await run(1)
    assert (children, dlq, snaps) == (await run(0))[:3]
    assert children and dlq == bad and snaps == len(good)
    assert worker.offloaded == len(good) + len(bad) and worker.inline == 0


class _BrokenSource(MemorySource):
    async def start(self) -> None:
        raise FeedError("broker unreachable")


async def test_a_kafka_agent_starts_its_worker_with_the_service_and_a_failed_start_takes_it_down() -> None:
    """``decode_worker_at_start`` (the Kafka agent: a restart begins with a backlog): the worker is
    starting before any batch is fetched and is gone after stop(); without it none starts; a service
    whose start fails leaves no worker behind (``async with`` calls no stop() then)."""
    topics = TopicsSection()
    bus = MemoryBus()

    def service(*, at_start: bool, source: type[MemorySource] = MemorySource) -> AgentService:
        return AgentService(ExecutionEngine(), sink=MemorySink(bus), metrics=metrics(), clock=None,
                            source=source(bus, [topics.parent_orders, topics.fills, topics.md]),
                            decode_worker_at_start=at_start)

    lazy = service(at_start=False)
    async with lazy:
        assert lazy.decoder._starting is None and lazy.decoder.pid is None
    eager = service(at_start=True)
    async with eager:
        assert eager.decoder._starting is not None, "started with the service, before any batch"
        assert await eager.decoder.warm()
        pid = eager.decoder.pid
        assert pid is not None and alive(pid)
    assert eager.decoder.pid is None and not alive(pid)

    broken = service(at_start=True, source=_BrokenSource)
    starting: list[asyncio.Task[None] | None] = []
    real_prestart = broken.decoder.prestart

    def prestart() -> None:
        real_prestart()
        starting.append(broken.decoder._starting)

    broken.decoder.prestart = prestart  # type: ignore[method-assign]
    with pytest.raises(FeedError, match="unreachable"):
        async with broken:
            pass
    assert starting and starting[0] is not None, "the worker was starting when the source failed"
    assert broken.decoder.pid is None and broken.decoder._starting is None
