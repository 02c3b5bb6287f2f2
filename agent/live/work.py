"""What moves between the service loop and its delivery: one fetched batch, and the host protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agent.core.engine import ExecutionEngine
from agent.live.engine_step import EngineDriver, StepResult
from agent.live.intake import Inbound, Intake
from agent.live.kill_switch import KillSwitch
from agent.live.settings import ServiceSection, TopicsSection
from feeds.ports import OutRecord, Record

T = TypeVar("T")


@dataclass
class Work:
    """One fetched and decoded batch waiting for the engine."""

    inbound: Inbound
    records: dict[str, list[Record]]
    t_arrival: float
    n: int
    generation: int = 0  # rebalance generation at fetch time (transactional delivery)


class Host(Protocol):
    """What a delivery uses of the service (:class:`agent.live.service.AgentService`)."""

    engine: ExecutionEngine
    driver: EngineDriver
    intake: Intake
    topics: TopicsSection
    settings: ServiceSection
    sink: Any
    source: Any
    processed_ts: dict[str, int]
    kill_switch: KillSwitch

    async def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    def outputs(self, res: StepResult, inb: Inbound) -> list[OutRecord]: ...

    def observe(self, res: StepResult, t_arrival: float) -> None: ...

    async def send(self, out: list[OutRecord]) -> None: ...

    def spawn(self, coro: Any, *, name: str) -> Any: ...
