"""What the service tells an observer about each step, and whether its control topics are caught up.

- :class:`StepReport`: the timing of one published step (fetch -> engine ->
  published), handed to the service's ``on_step`` callback: benchmarks and
  operators time the live path with it instead of patching the service.
- :class:`ControlGate`: parent orders and fills are read before market data of
  the same instant. Market data are held (``Inbound.hold_md``) while a
  parent-order or fill partition's position is behind its end offset as of
  the last fetch (the last stable offset under ``read_committed``), so a parent
  order published before a market-data backlog reaches the engine before any
  row past its start. A gate that stays shut longer than ``max_wait_ms`` opens
  (logged once): market data must never stall behind a partition that does not
  advance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.core.errors import FeedError

log = logging.getLogger("agent.live.observe")


@dataclass(frozen=True, slots=True)
class StepReport:
    """Timing of one published step (``time.perf_counter()`` seconds; CPU in seconds).

    ``t_fetched``: the batch was fetched and decoded; ``t_engine_start`` / ``t_engine_end``: the
    engine step ran on the engine thread (its decisions were taken by ``t_engine_end``);
    ``t_published``: its outputs were acknowledged (committed, with transactions).
    """

    t_fetched: float
    t_engine_start: float
    t_engine_end: float
    t_published: float
    children: int
    decisions: int
    engine_cpu_s: float

    @property
    def latency_s(self) -> float:
        """Fetched -> published: the decision latency of a step that sent child orders."""
        return self.t_published - self.t_fetched


class ControlGate:
    """Holds market data while the control topics are behind (see the module docstring).

    Parameters
    ----------
    topics : the parent-order and fill topics.
    max_wait_ms : longest time the gate stays shut in one go.
    """

    def __init__(self, topics: Iterable[str], *, max_wait_ms: float = 2_000.0) -> None:
        self.topics = frozenset(topics)
        self.max_wait_s = max_wait_ms / 1000.0
        self._shut_since: float | None = None
        self.held_steps = 0

    async def hold(self, source: Any) -> bool:
        """True while a control partition of ``source`` (a ``KafkaSource``) is behind."""
        try:
            consumer = source.consumer
        except (AttributeError, FeedError):  # not Kafka (or not started): nothing to wait for
            return False
        behind = await _behind(consumer, self.topics)
        now = time.monotonic()
        if not behind:
            self._shut_since = None
            return False
        if self._shut_since is None:
            self._shut_since = now
        elif now - self._shut_since > self.max_wait_s:
            if self._shut_since > 0:
                log.warning("parent-order/fill partitions still behind after %.1f s; feeding market data",
                            self.max_wait_s)
                self._shut_since = -1.0
            return False
        self.held_steps += 1
        return True


async def _behind(consumer: Any, topics: frozenset[str]) -> bool:
    """True when an assigned partition of ``topics`` has records past the consumer's position."""
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        end = consumer.last_stable_offset(tp)
        if end is None or end < 0:  # read_uncommitted (-1) or an old broker (None)
            end = consumer.highwater(tp)
        if end is None:  # never fetched: its end is not known yet
            return True
        if await consumer.position(tp) < end:
            return True
    return False
