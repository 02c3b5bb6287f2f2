"""Where the live service's engine jobs run: on one worker thread, or on the event loop itself.

The engine (:class:`agent.core.engine.ExecutionEngine` behind
:class:`agent.live.engine_step.EngineDriver`) is synchronous and not thread-safe: every
engine call of the service goes through one runner, one job at a time, in order
(``service.engine_runner``).

- :class:`ThreadRunner` (``"thread"``, the default) runs jobs on a one-thread executor: the
  loop stays free during a job (fetching the next batch, waiting for acks, answering HTTP).
  In CPython both threads share one GIL, so the engine's Python work does not overlap the
  loop's, and each hand-off between them can wait up to the switch interval.
- :class:`LoopRunner` (``"loop"``) runs each job at once on the loop's own thread: no
  hand-offs, but a step's engine work blocks the loop for its length. A catch-up of held
  rows is deferred one symbol per loop callback, so I/O is served between symbols and a
  step never waits behind a whole catch-up.

Measured (README, "Engine runner"): on the 1,000-parent scenario the agent's process got
0.86-0.90 of a core with the loop against 0.75-0.80 with the thread (the machine had idle
cores either way); that did not make it keep up reliably. With the loop the backlog ingest
was ~10% slower, and 20 parents deciding in one batch were faster. A runner that moves
the engine to its own process would go behind the same interface.

"The engine thread" in the rest of :mod:`agent.live` means whichever thread runs engine
jobs: the executor's, or the loop's own with the loop runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, TypeVar

from agent.core.errors import FeedError

T = TypeVar("T")
RunnerKind = Literal["loop", "thread"]

NOT_STARTED = "service not started; use 'async with AgentService(...)'"


class EngineRunner(Protocol):
    """Runs engine jobs one at a time, in order (see the module docstring)."""

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` as the next engine job; its result (or exception)."""
        ...

    def defer(self, fn: Callable[[], Any]) -> None:
        """From inside a job: run ``fn`` later, behind the jobs already queued."""
        ...

    def waiting(self) -> bool:
        """From inside a deferred job: whether it should yield (another job, or the loop, waits)."""
        ...

    def start(self) -> None: ...

    @property
    def running(self) -> bool:
        """Started and not shut down: jobs are accepted."""
        ...

    def shutdown(self) -> None:
        """No job runs after this returns (waits for a running one)."""
        ...


class LoopRunner:
    """Jobs run on the event loop's thread (``service.engine_runner = "loop"``)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._loop is None:
            raise FeedError(NOT_STARTED)
        return fn(*args)

    def defer(self, fn: Callable[[], Any]) -> None:
        if self._loop is None:
            fn()
        else:
            self._loop.call_soon(self._deferred, fn)

    def _deferred(self, fn: Callable[[], Any]) -> None:
        if self._loop is not None:  # shut down since: dropped (the service's final flush fed the rows)
            fn()

    def waiting(self) -> bool:
        return True  # the loop always has other work: a deferred job yields after each piece

    def shutdown(self) -> None:
        self._loop = None


class ThreadRunner:
    """Jobs run on a one-thread executor (``service.engine_runner = "thread"``)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._queued = self._started = 0  # jobs submitted (loop thread) / begun (engine thread)

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpc-engine")

    @property
    def running(self) -> bool:
        return self._executor is not None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise FeedError(NOT_STARTED)
        self._queued += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._job, fn, *args)

    def _job(self, fn: Callable[..., T], *args: Any) -> T:
        self._started += 1
        return fn(*args)

    def defer(self, fn: Callable[[], Any]) -> None:
        if self._executor is None:
            fn()
        else:
            self._executor.submit(fn)

    def waiting(self) -> bool:
        return self._queued > self._started

    def shutdown(self) -> None:
        if self._executor is not None:  # waits for a job still running
            self._executor.shutdown(wait=True)
            self._executor = None


def make_runner(kind: RunnerKind) -> EngineRunner:
    return LoopRunner() if kind == "loop" else ThreadRunner()
