"""Solver faults end to end (issue 7 item 2): a real agent process whose OSQP can never converge.

``MPC_AGENT_SOLVER__MAX_ITER=1`` makes every QP stop at "maximum iterations
reached". The agent must fall back (exact oracle / previous plan shifted /
even split, DESIGN.md section 4), count each fallback in
``mpc_agent_fallback_plans_total{reason}``, keep running and complete the
parent order. The test plays market and venue: one period of books at a time,
then a full fill of each child order, waiting until the agent has applied it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from feeds.kafka import KafkaSink, KafkaSource, create_topics
from feeds.wire import codec
from tests.integration.agent_process import AgentProcess, agent_env
from tests.integration.hostile import NS, Context, dumps, good_book, good_fill
from tests.integration.kafka_helpers import caught_up, drain, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PERIODS = 5
QTY = 3000.0


def _chunk(ctx: Context, rng: random.Random, t0: int, t1: int) -> list[bytes]:
    out = []
    for i, ts in enumerate(range(t0, t1, NS // 2)):
        d = good_book(ctx, ts, rng)
        if i % 2 == 0:  # a trade every second: volume for the participation cap
            d.update(action="T", side="A", price=d["ask_px"][0], size=2000.0)
        out.append(dumps(d))
    return out


async def _wait_metric(agent: AgentProcess, name: str, value: float, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if agent.samples().get((name, ()), 0.0) >= value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not reach {value} within {timeout_s} s: {agent.log_text()[-2000:]}")


async def _play(bootstrap: str, topics: dict[str, str], group: str, agent: AgentProcess) -> list[codec.ChildOrderMsg]:
    rng = random.Random(7)
    now = time.time_ns() // NS * NS
    ctx = Context(now_ns=now, last_good_ns=now)
    start = now - 240 * NS
    parent = {"schema": "parent_order.v1", "parent_id": "SF-1", "symbol": ctx.symbol, "side": "buy",
              "quantity": QTY, "start": start, "end": start + PERIODS * 60 * NS, "period_s": 60.0,
              "max_participation": 0.5, "risk_aversion": 1e-6}
    children: list[codec.ChildOrderMsg] = []
    async with KafkaSink(bootstrap) as sink, KafkaSource(bootstrap, [topics["child_orders"]], group_id=None) as kids:
        await sink.send(topics["parent_orders"], dumps(parent), key=b"SF-1")
        for v in _chunk(ctx, rng, start - 60 * NS, start):  # warm-up: the estimators see a period first
            await sink.send(topics["md"], v, key=b"FROG")
        for k in range(PERIODS + 1):
            t0 = start + k * 60 * NS
            for v in _chunk(ctx, rng, t0, t0 + 60 * NS):
                await sink.send(topics["md"], v, key=b"FROG")
            await caught_up(bootstrap, group, [topics["md"]], 60)
            new = [codec.decode_as(r.value, codec.ChildOrderMsg) for r in await drain(kids, quiet_s=1.0)]
            for c in new:
                ctx.last_good_ns = c.ts_event
                f = good_fill(ctx, "SF-1", f"sf-fill-{c.period_index}", c.quantity) | {
                    "child_order_id": c.child_order_id, "price": c.limit_price}
                await sink.send(topics["fills"], dumps(f), key=b"SF-1")
            children += new
            await _wait_metric(agent, "mpc_agent_fills_total", len(children))
    return children


def test_solver_that_never_converges_falls_back_counts_and_the_parent_completes(
    kafka_bootstrap: str, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    topics = {k: unique_topic(k) for k in ("md", "parent_orders", "fills", "child_orders", "dlq", "agent_state")}
    group = unique_topic("g")
    asyncio.run(create_topics(kafka_bootstrap, list(topics.values())))
    env = agent_env(kafka_bootstrap, topics, group_id=group, metrics_port=free_port(), MPC_AGENT_SOLVER__MAX_ITER="1",
                    MPC_AGENT_RISK__MAX_SNAPSHOT_AGE_MS="3600000")
    agent = AgentProcess.spawn(env, tmp_path / "agent.log")
    try:
        agent.wait_ready()
        children = asyncio.run(_play(kafka_bootstrap, topics, group, agent))
        samples = agent.samples()
        alive = agent.proc.poll() is None
        summary = agent.stop()
    finally:
        agent.close()
    fallbacks = {dict(lab)["reason"]: v for (name, lab), v in samples.items()
                 if name == "mpc_agent_fallback_plans_total"}
    solved = {dict(lab)["status"]: v for (name, lab), v in samples.items() if name == "mpc_agent_solves_total"}
    print(f"solver faults: {len(children)} child orders ({sum(c.quantity for c in children):g} shares), "
          f"fallbacks {fallbacks}, solver statuses {solved}")
    assert alive
    assert sum(c.quantity for c in children) == pytest.approx(QTY)
    assert summary is not None and summary["parents"]["SF-1"]["done"] is True
    assert summary["parents"]["SF-1"]["remaining"] == pytest.approx(0.0)
    assert fallbacks.get("maximum_iterations_reached", 0) >= len(children) >= 2
    assert samples[("mpc_agent_parent_remaining_shares", (("symbol", "FROG"),))] == 0.0
    assert "solved" not in solved  # every decision came from a fallback plan
