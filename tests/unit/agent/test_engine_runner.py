"""Where engine jobs run (``agent.live.engine_runner``): one at a time, in order, on the loop or a thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.core.errors import FeedError
from agent.live.engine_runner import LoopRunner, ThreadRunner, make_runner


async def test_the_loop_runner_runs_a_job_at_once_on_the_loop_thread_and_defers_behind_it() -> None:
    runner = LoopRunner()
    with pytest.raises(FeedError, match="not started"):
        await runner.call(lambda: 1)
    runner.start()
    order: list[str] = []

    def job(name: str) -> int:
        order.append(name)
        runner.defer(lambda: order.append(f"{name}:deferred"))  # behind the job, not inside it
        order.append(f"{name}:end")
        return threading.get_ident()

    assert await runner.call(job, "a") == threading.get_ident()
    assert order == ["a", "a:end"]
    await asyncio.sleep(0)
    assert order == ["a", "a:end", "a:deferred"]
    assert runner.waiting()  # a deferred job always yields to the loop after one piece
    with pytest.raises(ZeroDivisionError):
        await runner.call(lambda: 1 / 0)
    runner.defer(lambda: order.append("dropped"))
    runner.shutdown()
    await asyncio.sleep(0)
    assert "dropped" not in order and not runner.running  # nothing runs after shutdown


async def test_the_thread_runner_runs_jobs_in_order_on_its_one_thread_and_says_when_one_waits() -> None:
    runner = ThreadRunner()
    runner.start()
    gate, seen = threading.Event(), []

    def first() -> int:
        gate.wait(5)
        seen.append(runner.waiting())  # the second call is queued behind this job
        return threading.get_ident()

    a = asyncio.ensure_future(runner.call(first))
    await asyncio.sleep(0.05)
    b = asyncio.ensure_future(runner.call(lambda: threading.get_ident()))
    await asyncio.sleep(0.05)
    gate.set()
    ta, tb = await a, await b
    assert ta == tb != threading.get_ident()  # one engine thread, not the loop's
    assert seen == [True] and not runner.waiting()
    runner.shutdown()
    assert not runner.running
    with pytest.raises(FeedError, match="not started"):
        await runner.call(lambda: 1)


def test_make_runner_builds_the_configured_kind() -> None:
    assert isinstance(make_runner("loop"), LoopRunner)
    assert isinstance(make_runner("thread"), ThreadRunner)


async def test_the_service_runs_engine_jobs_on_the_configured_runner() -> None:
    from prometheus_client import CollectorRegistry

    from agent.core.engine import ExecutionEngine
    from agent.live.metrics import AgentMetrics
    from agent.live.service import AgentService
    from agent.live.settings import ServiceSection
    from feeds.memory import MemoryBus, MemorySink

    for kind, on_loop in (("loop", True), ("thread", False)):
        svc = AgentService(ExecutionEngine(), sink=MemorySink(MemoryBus()),
                           metrics=AgentMetrics.create(CollectorRegistry()),
                           settings=ServiceSection(engine_runner=kind))  # type: ignore[arg-type]
        async with svc:
            ident = await svc.call(threading.get_ident)
        assert (ident == threading.get_ident()) is on_loop, kind
