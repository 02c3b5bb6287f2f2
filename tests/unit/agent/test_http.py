"""agent.live.http over a real service: aiohttp server, app Runtime, AgentService on the in-memory bus.

Subjects: /metrics (content type, parseable, gzip), /livez, /readyz and its /healthz alias (the body
names the failing condition: stale market data of an active parent, the kill switch), /parents during
and after a parent, POST /kill-switch authentication (403 without a configured token, 401 without or
with a wrong one, 400 on a bad body) and effect (gauge, readiness, engine), the rebuild gap.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.app.runtime import Runtime
from agent.core.engine import ExecutionEngine
from agent.core.model import NS_PER_S, ParentOrder
from agent.live.http import HttpServer
from agent.live.kill_switch import KillSwitch
from agent.live.metrics import AgentMetrics
from agent.live.service import AgentService
from agent.live.settings import ServiceSection, TopicsSection
from feeds.memory import MemoryBus, MemorySink, MemorySource
from feeds.ports import OutRecord
from feeds.wire import codec
from tests.unit.agent.books import ladder_book

TOPICS = TopicsSection()
TOKEN = "s3cret-token-for-tests"


class Agent:
    """A running service on the memory bus behind an HTTP server (what ``run_live`` wires)."""

    def __init__(self, *, token: str | None = TOKEN, retention_s: float = 3600.0) -> None:
        self.bus = MemoryBus()
        self.metrics = AgentMetrics.create(CollectorRegistry())
        self.kill = KillSwitch(gauge=self.metrics.kill_switch)
        self.engine = ExecutionEngine()
        settings = ServiceSection(poll_timeout_ms=10, housekeeping_interval_ms=20,
                                  ended_parent_retention_s=retention_s)
        self.service = AgentService(self.engine, sink=MemorySink(self.bus), metrics=self.metrics, settings=settings,
                                    source=MemorySource(self.bus, [TOPICS.md, TOPICS.parent_orders, TOPICS.fills]),
                                    kill_switch=self.kill)
        self.current: dict[str, Any] = {}
        self.http = HttpServer(self.metrics.registry, Runtime(self.current, self.kill), host="127.0.0.1", port=0,
                               admin_token=token)
        self.session: aiohttp.ClientSession | None = None
        self._run: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Agent:
        await self.http.start()
        await self.service.start()
        self.current["service"] = self.service
        self._run = asyncio.create_task(self.service.run())
        self.session = aiohttp.ClientSession(self.http.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None and self._run is not None
        await self.session.close()
        self.service.request_stop()
        await asyncio.wait_for(self._run, 5)
        await self.service.stop()
        await self.http.stop()

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        assert self.session is not None
        async with self.session.get(path, **kw) as r:
            body = await (r.json() if r.content_type == "application/json" else r.read())
            return r.status, body, r

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.post(path, **kw) as r:
            return r.status, await r.json()

    def publish_books(self, symbol: str, n: int = 5) -> None:
        now = time.time_ns()
        book = ladder_book(now - np.arange(n)[::-1] * 1_000_000, symbol=symbol)
        self.bus.apply([OutRecord(TOPICS.md, codec.encode(codec.batch_row_to_mbp10(book, i)), key=symbol.encode())
                        for i in range(n)])

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})


async def until(cond: Any, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (await cond() if asyncio.iscoroutinefunction(cond) else cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def parent(pid: str = "P1", symbol: str = "FROG", qty: float = 1000.0, end_s: float = 600.0) -> ParentOrder:
    now = time.time_ns()
    return ParentOrder(pid, symbol, "buy", qty, now - NS_PER_S, now + int(end_s * NS_PER_S), period_s=60.0)


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    async with Agent() as a:
        yield a


async def test_metrics_are_the_prometheus_text_format_and_gzip_on_request(agent: Agent) -> None:
    status, body, r = await agent.get("/metrics")
    assert status == 200 and r.headers["Content-Type"] == CONTENT_TYPE_LATEST
    fams = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name in ("mpc_agent_solve_duration_seconds", "mpc_agent_kill_switch", "mpc_agent_parents",
                 "mpc_agent_ready", "process_start_time_seconds"):
        assert name in fams, name
    async with aiohttp.ClientSession(auto_decompress=False) as raw, raw.get(  # see the encoding
            agent.http.url + "/metrics", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers.get("Content-Encoding") == "gzip"
        assert b"mpc_agent_ready" in gzip.decompress(await r.read())


async def test_readyz_fails_on_stale_data_of_an_active_parent_and_recovers_with_fresh_books(agent: Agent) -> None:
    status, body, _ = await agent.get("/readyz")
    assert status == 200 and body["ready"] is True and body["failing"] == []
    assert (await agent.get("/livez"))[0] == 200
    await agent.service.submit(parent())
    await until(lambda: agent.sample("mpc_agent_ready") == 0.0, "the gauge to follow")
    status, body, _ = await agent.get("/readyz")
    assert status == 503 and body["failing"] == ["market_data"], body
    assert body["conditions"]["market_data"]["stale"] == ["FROG"]
    assert (await agent.get("/healthz"))[1]["failing"] == ["market_data"]  # the alias
    agent.publish_books("FROG")
    await until(lambda: agent.sample("mpc_agent_ready") == 1.0, "ready with fresh FROG books")
    status, body, _ = await agent.get("/readyz")
    assert status == 200 and body["conditions"]["market_data"]["age_s"]["FROG"] < 2.0


async def test_parents_lists_progress_and_an_ended_parent_until_its_retention(agent: Agent) -> None:
    p1 = parent("P1")
    await agent.service.submit(p1)
    await agent.service.submit(parent("P2", qty=500.0))
    status, body, _ = await agent.get("/parents")
    assert status == 200
    rows = {r["parent_id"]: r for r in body["parents"]}
    assert set(rows) == {"P1", "P2"}
    r = rows["P1"]
    for key in ("parent_id", "symbol", "side", "quantity", "filled", "remaining", "average_price", "status",
                "next_period", "periods", "last_child_ts", "skipped_periods", "skipped"):
        assert key in r, key
    assert (r["skipped_periods"], r["skipped"]) == (0, {})
    assert (r["status"], r["quantity"], r["filled"], r["remaining"], r["periods"]) == ("active", 1000.0, 0.0,
                                                                                      1000.0, p1.n_periods)
    agent.bus.apply([OutRecord(TOPICS.parent_orders, codec.encode(codec.build(
        codec.ParentCancelMsg, parent_id="P2", reason="test")), key=b"FROG")])
    await until(lambda: agent.sample("mpc_agent_parents", {"status": "cancelled"}) == 1.0, "P2 cancelled")
    rows = {r["parent_id"]: r for r in (await agent.get("/parents"))[1]["parents"]}
    assert rows["P2"]["status"] == "cancelled" and rows["P2"]["ended_ns"] is not None
    assert agent.sample("mpc_agent_parent_unfilled_shares_total", {"symbol": "FROG"}) == 500.0
    assert agent.sample("mpc_agent_parents", {"status": "active"}) == 1.0


async def test_ended_parents_are_dropped_after_their_retention() -> None:
    async with Agent(retention_s=0.05) as agent:
        flushes: list[bool] = []
        flush = agent.service.flush

        async def spy(*, state: bool = False) -> None:
            flushes.append(state)
            await flush(state=state)

        agent.service.flush = spy  # type: ignore[method-assign]
        await agent.service.submit(parent("P1"))
        await agent.service.submit(parent("P2"))
        agent.bus.apply([OutRecord(TOPICS.parent_orders, codec.encode(codec.build(
            codec.ParentCancelMsg, parent_id="P1")), key=b"FROG")])

        async def gone() -> bool:
            return [r["parent_id"] for r in (await agent.get("/parents"))[1]["parents"]] == ["P2"]

        await until(gone, "P1 dropped from /parents")
        assert "P1" not in agent.engine.parents
        assert agent.sample("mpc_agent_parents", {"status": "cancelled"}) == 0.0
        # the drop is published at once (with transactions: P1's tombstone), not with the next input
        await until(lambda: flushes == [True], "a state flush after the drop")


async def test_kill_switch_post_needs_the_bearer_token_and_holds_trading(agent: Agent) -> None:
    body = {"on": True, "reason": "venue halt"}
    assert (await agent.post("/kill-switch", json=body))[0] == 401
    status, err = await agent.post("/kill-switch", json=body, headers={"Authorization": "Bearer wrong"})
    assert status == 401 and "bearer" in err["error"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for bad in ({"on": "yes", "reason": "x"}, {"on": True}, {"on": True, "reason": "x", "extra": 1}, [1]):
        status, err = await agent.post("/kill-switch", json=bad, headers=auth)
        assert status == 400, (bad, err)
    status, state = await agent.post("/kill-switch", json=body, headers=auth)
    assert status == 200 and state["on"] is True and state["changed"] is True and state["reason"] == "venue halt"
    assert agent.engine.kill_switch is True and agent.sample("mpc_agent_kill_switch") == 1.0
    status, ready, _ = await agent.get("/readyz")
    assert status == 503 and ready["failing"] == ["kill_switch"]
    assert ready["conditions"]["kill_switch"]["detail"] == "on: venue halt"
    assert (await agent.get("/kill-switch"))[1]["on"] is True
    status, state = await agent.post("/kill-switch", json=body, headers=auth)
    assert status == 200 and state["changed"] is False
    status, state = await agent.post("/kill-switch", json={"on": False, "reason": "resumed"}, headers=auth)
    assert state["changed"] is True and agent.engine.kill_switch is False
    await until(lambda: agent.sample("mpc_agent_ready") == 1.0, "ready again")


async def test_kill_switch_post_is_forbidden_without_a_configured_token() -> None:
    async with Agent(token=None) as agent:
        status, err = await agent.post("/kill-switch", json={"on": True, "reason": "x"},
                                       headers={"Authorization": "Bearer anything"})
        assert status == 403 and "admin_token" in err["error"]
        assert agent.engine.kill_switch is False


async def test_unknown_path_and_wrong_method_are_json_errors(agent: Agent) -> None:
    status, body, _ = await agent.get("/nope")
    assert status == 404 and "error" in body
    assert (await agent.post("/parents"))[0] == 405


async def test_between_two_services_the_process_is_alive_not_ready_and_keeps_the_kill_switch() -> None:
    metrics = AgentMetrics.create(CollectorRegistry())
    kill = KillSwitch(gauge=metrics.kill_switch)
    current: dict[str, Any] = {}
    async with HttpServer(metrics.registry, Runtime(current, kill), host="127.0.0.1", port=0,
                          admin_token=TOKEN) as http, aiohttp.ClientSession(http.url) as s:
        async with s.get("/livez") as r:
            assert r.status == 200 and (await r.json())["running"] is False
        async with s.get("/readyz") as r:
            assert r.status == 503 and (await r.json())["failing"] == ["service"]
        async with s.get("/parents") as r:
            assert r.status == 503
        async with s.post("/kill-switch", json={"on": True, "reason": "during rebuild"},
                          headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            body = await r.json()
            assert r.status == 200 and body["on"] is True and body["applied_to_engine"] is False
    assert kill.on and metrics.registry.get_sample_value("mpc_agent_kill_switch") == 1.0
    engine = ExecutionEngine()
    async with AgentService(engine, sink=MemorySink(MemoryBus()), metrics=metrics, kill_switch=kill):
        assert engine.kill_switch is True  # the next service starts with the process's switch
