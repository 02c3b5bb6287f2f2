"""Chaos soak (issue 13 item 5): agents killed, stalled and cut off from the broker; nothing lost or doubled.

What it does, on a PRIVATE broker (``scripts/kafka-local`` in its own
directory: it is paused, so never the shared one):

- ``agents`` real ``python -m agent run`` processes (exactly once, wall
  clock) in one consumer group; the input topics have ``partitions``
  partitions;
- ``parents`` parent orders on ``symbols`` symbols (two per symbol, a buy and
  a sell), ``period_s`` periods, from a warm-up to the end of the run;
- :class:`bench.chaos_feed.Feed`: wall-clock books paced at ``md_hz`` per
  symbol with ``hostile`` hostile messages interleaved;
- a venue filling every committed child order in full (``Venue``);
- a seeded schedule: ``kills`` SIGKILLs of a random agent (restarted 0.5-3 s
  later), ``stops`` SIGSTOP/SIGCONT of an agent for ``stop_s`` (past the 6 s
  session timeout: a zombie), broker pauses of ``pauses`` seconds (the broker
  process stopped and started again on the same port and data).

Then the invariants of :mod:`bench.chaos_check`, from the topics alone.
Prints a table of what it did and what held; JSON to ``bench/out/chaos.json``.

Run: ``.venv/bin/python -m bench.chaos`` (defaults: 10 minutes, 3 agents, 20
parents on 10 symbols, 50 kills, 2 stops, pauses of 30 and 60 s, 100,000
hostile messages); ``--minutes 2 --kills 8 ...`` for a short one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.core.model import NS_PER_S, ParentOrder
from agent.live.backoff import QuietRepeats, install_quiet_repeats
from bench._common import environment, print_table, write_json
from bench.chaos_check import check
from bench.chaos_feed import Feed
from feeds.kafka import KafkaConnection, create_topics
from feeds.wire import codec
from tests.integration.agent_process import AgentProcess, Venue, agent_env
from tests.integration.outside import LOG_APPEND_TIME, Producer
from tests.integration.test_crash_recovery import make_topics
from tests.integration.test_zombie import symbols_by_partition

ROOT = Path(__file__).resolve().parents[1]
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
MAX_AGE_MS = 2000.0  # risk.max_snapshot_age_ms default


@dataclass
class ChaosConfig:
    minutes: float = 10.0
    agents: int = 3
    partitions: int = 6
    symbols: int = 10
    parents: int = 20
    period_s: float = 2.0
    shares_per_period: float = 60.0  # parent quantity = this x its periods (well inside the volume cap)
    md_hz: float = 2.0
    hostile: int = 100_000
    kills: int = 50
    stops: int = 2
    stop_s: float = 15.0
    pauses: list[float] = field(default_factory=lambda: [30.0, 60.0])
    warmup_s: float = 25.0
    seed: int = 20250413
    out: str = "bench/out/chaos.json"
    workdir: str = ""


class Broker:
    """A private ``scripts/kafka-local`` broker (own directory; jars shared when present)."""

    def __init__(self, base: Path) -> None:
        self.env = dict(os.environ, KAFKA_LOCAL_DIR=str(base))
        for lib in (ROOT / ".kafka-local" / "lib", Path("/work/main/.kafka-local/lib")):
            jars = sorted(lib.glob("kafka_*")) if lib.exists() else []
            if jars and (jars[-1] / ".complete").exists():
                self.env["KAFKA_LOCAL_LIB"] = str(jars[-1])
                break

    def run(self, cmd: str, timeout_s: float = 300) -> str:
        res = subprocess.run([str(KAFKA_LOCAL), cmd], env=self.env, capture_output=True, text=True,
                             timeout=timeout_s, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"scripts/kafka-local {cmd} failed: {res.stderr[-2000:]}")
        return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


def schedule(cfg: ChaosConfig, rng: random.Random) -> list[tuple[float, str, Any]]:
    """``(seconds from start, action, argument)``: kills, stops and broker pauses, sorted."""
    t_end = cfg.minutes * 60 - 20
    ev: list[tuple[float, str, Any]] = []
    span = (t_end - cfg.warmup_s) / max(1, len(cfg.pauses) + 1)
    for i, d in enumerate(cfg.pauses):
        t = cfg.warmup_s + span * (i + 1) - d / 2
        ev += [(t, "pause", d), (t + d, "resume", d)]
    for i in range(cfg.stops):
        t = cfg.warmup_s + (t_end - cfg.warmup_s) * (i + 0.3) / max(1, cfg.stops)
        ev += [(t, "stop", cfg.stop_s)]
    ev += [(rng.uniform(cfg.warmup_s, t_end), "kill", None) for _ in range(cfg.kills)]
    return sorted(ev, key=lambda e: e[0])


async def run(cfg: ChaosConfig) -> dict[str, Any]:
    """One soak; returns the report (also written to ``cfg.out``)."""
    rng = random.Random(cfg.seed)
    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="chaos-"))
    broker = Broker(work / "kafka")
    bootstrap = await asyncio.to_thread(broker.run, "start")
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"chaos-{tag}", request_timeout_ms=10000)
    did: dict[str, Any] = {"kills": 0, "kill_restore_s": [], "restart_restore_s": [], "stops": 0, "pauses_s": [],
                           "broker_down_s": []}
    agents: list[AgentProcess] = []
    feed: Feed | None = None
    try:
        await create_topics(conn, [topics.md, topics.parent_orders, topics.fills], cfg.partitions)
        await create_topics(conn, [topics.child_orders, topics.dlq, f"{topics.parent_orders}.dlq",
                                   f"{topics.fills}.dlq"], cfg.partitions, configs=LOG_APPEND_TIME)
        await create_topics(conn, [topics.agent_state], cfg.partitions, compacted=True)
        symbols = symbols_by_partition(cfg.partitions, -(-cfg.symbols // cfg.partitions))[: cfg.symbols]
        t0 = time.time_ns()
        start = t0 + int(cfg.warmup_s * 0.6 * NS_PER_S)
        end = t0 + int(cfg.minutes * 60 * NS_PER_S)
        qty = cfg.shares_per_period * int((end - start) / (cfg.period_s * NS_PER_S))
        parents = [ParentOrder(f"CH{i:02d}-{tag}", symbols[i % len(symbols)], "buy" if i % 2 == 0 else "sell",
                               qty, start, end, period_s=cfg.period_s) for i in range(cfg.parents)]
        pub = Producer(bootstrap, log_level=2)
        for p in parents:
            pub.send(topics.parent_orders, codec.encode(codec.parent_from_model(p)), key=p.symbol.encode())
        pub.flush()
        agents = [AgentProcess(agent_env(bootstrap, topics, agent_id=f"chaos{i}-{tag}", group_id=f"g-{tag}",
                                         extra={"MPC_AGENT_SERVICE__POLL_TIMEOUT_MS": "100"}),
                               work / f"agent{i}.log") for i in range(cfg.agents)]
        for a in agents:
            a.start()
        feed = Feed(bootstrap, topics, symbols, {p.symbol: p.parent_id for p in parents}, md_hz=cfg.md_hz,
                    hostile=cfg.hostile, hostile_from_s=cfg.warmup_s, hostile_to_s=cfg.minutes * 60 - 30,
                    seed=cfg.seed)
        feed.start()
        t_start = time.monotonic()
        async with Venue(conn, topics):
            await _chaos(cfg, schedule(cfg, rng), agents, broker, rng, t_start, did)
            await asyncio.sleep(max(0.0, (end - time.time_ns()) / NS_PER_S) + 3 * cfg.period_s)
            feed.stop()
            await asyncio.to_thread(feed.join, 180)
            await _drained(bootstrap, f"g-{tag}", topics, cfg.partitions)
            for a in agents:
                a.stop()
        violations, figures = await asyncio.to_thread(
            check, bootstrap, topics, {p.parent_id: p.quantity for p in parents}, feed.sent.hostile, MAX_AGE_MS)
    finally:
        if feed is not None:
            feed.stop()
        for a in agents:
            if a.alive:
                a.resume()
            a.kill()
        await asyncio.to_thread(broker.run, "stop", 120)
    restores = sorted(did.pop("kill_restore_s"))
    from_start = sorted(did.pop("restart_restore_s"))
    report = {"config": asdict(cfg), "environment": environment(), "did": {
        **did, "agent_starts": sum(a.starts for a in agents), "md_sent": feed.sent.md,
        "hostile_sent": len(feed.sent.hostile), "hostile_by_topic": feed.sent.hostile_by_topic,
        "publish_failures": feed.sent.failed, "restore_after_kill_s_p50": restores[len(restores) // 2] if restores else None,
        "restore_after_kill_s_max": restores[-1] if restores else None,
        "restore_after_restart_s_p50": from_start[len(from_start) // 2] if from_start else None,
        "restore_after_restart_s_max": from_start[-1] if from_start else None}, "figures": figures,
        "violations": violations, "held": not any(violations.values()), "workdir": str(work)}
    write_json(cfg.out, report)
    return report


async def _chaos(cfg: ChaosConfig, events: list[tuple[float, str, Any]], agents: list[AgentProcess],
                 broker: Broker, rng: random.Random, t_start: float, did: dict[str, Any]) -> None:
    stopped: set[int] = set()
    tasks: list[asyncio.Task[None]] = []

    async def stall(i: int, secs: float) -> None:
        agents[i].pause()
        await asyncio.sleep(secs)
        agents[i].resume()
        stopped.discard(i)

    async def kill(i: int) -> None:
        a = agents[i]
        t = time.time()
        a.kill()
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        n = a.assigned_count()
        t_start = time.time()
        a.start()
        deadline = time.monotonic() + 120
        while a.assigned_count() <= n and time.monotonic() < deadline and a.alive:
            await asyncio.sleep(0.2)
        got = [s for s, _ in a.log_events(" parent-order partition(s) of ") if s > t]
        if got:
            did["kill_restore_s"].append(round(got[0] - t, 2))
            did["restart_restore_s"].append(round(got[0] - t_start, 2))

    down_at = 0.0
    for t, action, arg in events:
        await asyncio.sleep(max(0.0, t_start + t - time.monotonic()))
        if action == "pause":
            down_at = time.monotonic()
            await asyncio.to_thread(broker.run, "pause")
            did["pauses_s"].append(arg)
        elif action == "resume":
            await asyncio.to_thread(broker.run, "resume")
            did["broker_down_s"].append(round(time.monotonic() - down_at, 1))
        elif action == "stop":
            free = [i for i in range(len(agents)) if i not in stopped and agents[i].alive]
            if free:
                i = rng.choice(free)
                stopped.add(i)
                did["stops"] += 1
                tasks.append(asyncio.create_task(stall(i, arg)))
        else:
            free = [i for i in range(len(agents)) if i not in stopped and agents[i].alive]
            if free:
                did["kills"] += 1
                tasks.append(asyncio.create_task(kill(rng.choice(free))))
    await asyncio.gather(*tasks)


async def _drained(bootstrap: str, group: str, topics: Any, partitions: int, timeout_s: float = 180) -> None:
    """Wait until the group's committed offsets reach the end of the fill and parent-order topics."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t in (topics.fills, topics.parent_orders) for p in range(partitions)]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ends = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
            done = [tp.offset for tp in c.committed(tps, timeout=10)]
            if all(d >= e or e == 0 for d, e in zip(done, ends, strict=True)):
                return
            await asyncio.sleep(1.0)
    finally:
        c.close()


def print_report(rep: dict[str, Any]) -> None:
    did, fig = rep["did"], rep["figures"]
    rows = [{"what": "agents / partitions / parents / symbols", "value": f"{rep['config']['agents']} / "
             f"{rep['config']['partitions']} / {rep['config']['parents']} / {rep['config']['symbols']}"},
            {"what": "minutes of paced data", "value": rep["config"]["minutes"]},
            {"what": "SIGKILLs (agent starts)", "value": f"{did['kills']} ({did['agent_starts']})"},
            {"what": "restored after a kill, p50 / max s", "value": f"{did['restore_after_kill_s_p50']} / "
             f"{did['restore_after_kill_s_max']} (after the restart: {did['restore_after_restart_s_p50']} / "
             f"{did['restore_after_restart_s_max']}; restarted 0.5-3 s after the kill)"},
            {"what": "SIGSTOP/SIGCONT (s each)", "value": f"{did['stops']} ({rep['config']['stop_s']})"},
            {"what": "broker pauses / down s", "value": f"{did['pauses_s']} / {did['broker_down_s']}"},
            {"what": "books / hostile messages", "value": f"{did['md_sent']:,} / {did['hostile_sent']:,}"},
            {"what": "child orders / fills / shares sent", "value": f"{fig['child_orders']:,} / {fig['fills']:,} / "
             f"{fig['shares_sent']:,.0f}"},
            {"what": "parents by final status / unfilled", "value": f"{fig['parent_status']} / "
             f"{fig['unfilled_shares']:,.0f}"},
            {"what": "max decision book age ms", "value": round(fig["max_decision_book_age_ms"], 1)}]
    print_table(rows, ["what", "value"])
    print()
    print_table([{"invariant": k, "violations": n, "held": n == 0} for k, n in rep["violations"].items()],
                ["invariant", "violations", "held"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = ChaosConfig()
    for name in ("minutes", "stop_s", "period_s", "md_hz", "shares_per_period", "warmup_s"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    for name in ("agents", "partitions", "symbols", "parents", "hostile", "kills", "stops", "seed"):
        ap.add_argument(f"--{name}", type=int, default=getattr(d, name))
    ap.add_argument("--pauses", type=float, nargs="*", default=d.pauses, help="broker pause lengths, s")
    ap.add_argument("--out", default=d.out)
    ap.add_argument("--workdir", default="")
    cfg = ChaosConfig(**vars(ap.parse_args(argv)))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_quiet_repeats(QuietRepeats(("aiokafka",)))  # the venue's client during broker pauses
    rep = asyncio.run(run(cfg))
    print_report(rep)
    return 0 if rep["held"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
