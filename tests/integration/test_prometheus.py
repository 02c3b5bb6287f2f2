"""Monitoring checked for real (issue 14 item 8): Debian's Prometheus scraping a real agent.

A private broker (``scripts/kafka-local`` with its own ``KAFKA_LOCAL_DIR``: it is paused below, so
never the shared one), a real agent process (``python -m agent run``, exactly-once mode) executing
a buy parent order with 1 s periods against a live synthetic market and a venue filling every
child order, and ``scripts/prometheus-local`` scraping the agent every second with the real
``deploy/prometheus/alerts.yml`` evaluated every second. A malformed parent order and a crossed
book are published too, so the rejection counters have series.

Checked through Prometheus' HTTP API:

- every dashboard and alert expression evaluates without error, and every alert rule reports
  health ``ok``; every metric they use is exported by the agent or pending (``tests/monitoring.py``);
- every dashboard expression whose metrics the agent exports (has samples of) returns data with a
  finite value while the parent runs; the others are listed (pending metrics, counters without an
  event), and become required as soon as the agent exports them;
- the kill-switch alert fires when a ``kill_switch.v1`` message turns the switch on (once the agent
  exports ``mpc_agent_kill_switch``; reported as not exercised before);
- pausing the broker puts ``MpcAgentBrokerDown`` pending or firing, and ``MpcAgentNotReady`` too
  whenever the agent's ``/readyz`` answers 503 during the outage (the gauge must agree with it).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.core.model import NS_PER_S, ParentOrder
from feeds.kafka import KafkaConnection, KafkaSink
from feeds.ports import OutRecord
from feeds.wire import codec
from tests.integration.agent_process import AgentProcess, Market, Venue, agent_env, book_row
from tests.integration.kafka_helpers import PrivateBroker, free_port
from tests.integration.test_crash_recovery import make_topics, publish_parents, setup_topics
from tests.monitoring import (
    PENDING_METRICS,
    PROMETHEUS_LOCAL,
    PROMETHEUS_SYNTHETIC,
    alert_rules,
    dashboard_exprs,
    family,
    in_ci,
    metric_names,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DATA_TIMEOUT_S = 40.0
ALERT_TIMEOUT_S = 30.0


class LocalPrometheus:
    """``scripts/prometheus-local`` with its own cache dir."""

    def __init__(self, base: Path) -> None:
        self.env = dict(os.environ, PROMETHEUS_LOCAL_DIR=str(base))
        self.address = ""

    def start(self, *targets: str) -> str:
        res = subprocess.run([str(PROMETHEUS_LOCAL), "start", "--scrape-interval", "1s", "--eval-interval", "1s",
                              *targets], env=self.env, capture_output=True, text=True, timeout=900, check=False)
        if res.returncode != 0 or not res.stdout.strip():
            msg = f"scripts/prometheus-local start failed: {res.stderr.strip()[-2000:]}"
            if in_ci():
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
        self.address = res.stdout.strip().splitlines()[-1]
        return self.address

    def stop(self) -> None:
        subprocess.run([str(PROMETHEUS_LOCAL), "stop"], env=self.env, capture_output=True, timeout=60, check=False)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://{self.address}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; the body says why
            return json.loads(exc.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)  # type: ignore[no-any-return]

    def diagnose(self, since: float) -> str:
        """The scrape health and ``mpc_agent_broker_up`` since ``since`` (for failure messages)."""
        out = []
        for expr in ("up", "scrape_duration_seconds", "mpc_agent_broker_up"):
            res = self.api("query_range", query=expr, start=str(since - 5), end=str(time.time()), step="1")
            out.append(f"{expr}: " + " ".join(f"{float(t) - since:+.0f}s={v}" for r in res["data"]["result"]
                                             for t, v in r["values"]))
        targets = self.api("targets")["data"]["activeTargets"]
        out.append("targets: " + "; ".join(f"{t['scrapeUrl']} {t['health']} {t['lastError']}" for t in targets))
        return "\n".join(out)

    def alert_states(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for a in self.api("alerts")["data"]["alerts"]:
            out.setdefault(a["labels"]["alertname"], set()).add(a["state"])
        return out


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[LocalPrometheus]:
    prom = LocalPrometheus(tmp_path / "prometheus")
    try:
        yield prom
    finally:
        prom.stop()


def agent_metrics(port: int) -> tuple[set[str], set[str]]:
    """``(families, sample names with a sample)`` of the agent's /metrics (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return set(), set()
    families: set[str] = set()
    samples: set[str] = set()
    for fam in text_string_to_metric_families(text):
        families.add(fam.name)
        samples |= {s.name for s in fam.samples}
    return families, samples


def exposed(name: str, families: set[str]) -> bool:
    return name in PROMETHEUS_SYNTHETIC or family(name, families) in families


def has_finite_data(res: dict[str, Any]) -> bool:
    if res.get("status") != "success":
        return False
    data = res["data"]
    values = [v["value"][1] for v in data["result"]] if data["resultType"] == "vector" else \
        [data["result"][1]] if data["resultType"] == "scalar" else []
    return any(math.isfinite(float(v)) for v in values)


def test_prometheus_evaluates_every_dashboard_and_alert_expression_on_a_live_agent(
        private_broker: tuple[PrivateBroker, str], prometheus: LocalPrometheus, tmp_path: Path) -> None:
    asyncio.run(_scenario(*private_broker, prometheus, tmp_path))


async def _wait(cond: Any, what: str, timeout_s: float, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)


async def _scenario(broker: PrivateBroker, bootstrap: str, prom: LocalPrometheus, tmp_path: Path) -> None:
    t0 = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await setup_topics(conn, topics, 1)
    port = free_port()
    prom.start(f"127.0.0.1:{port}")  # before the agent: Prometheus 2.42 starts scraping after ~5 s
    start = time.time_ns() + 4 * NS_PER_S
    parent = ParentOrder(f"O-{tag}", "FROG", "buy", 3000.0, start, start + 180 * NS_PER_S, period_s=1.0)
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"prom-{tag}", group_id=f"g-{tag}",
                                   metrics_port=port), tmp_path / "agent.log")
    report: list[str] = []
    try:
        async with Market(conn, topics.md, ["FROG"]), Venue(conn, topics):
            await publish_parents(conn, topics.parent_orders, [parent])
            agent.start()
            crossed = json.loads(codec.encode(book_row("FROG", time.time_ns(), 1, 10.0)))
            crossed["bid_px"], crossed["ask_px"] = crossed["ask_px"], crossed["bid_px"]
            async with KafkaSink(conn) as sink:  # one bad record on each kind of topic: rejection series
                await sink.send(topics.parent_orders, b'{"schema": "parent_order.v1", "parent_id": ""}',
                                key=b"FROG")
                await sink.send_many([OutRecord(topics.md, json.dumps(crossed).encode(), key=b"FROG")])

            def trading() -> bool:
                res = prom.query("sum(mpc_agent_child_orders_total) > 2")
                return bool(res.get("status") == "success" and res["data"]["result"])

            await _wait(trading, "child orders seen by Prometheus", 60)
            assert agent.alive, agent.log_text()[-3000:]
            report.append(f"trading after {time.monotonic() - t0:.1f} s")

            # ---- every expression evaluates; those over exported metrics return data
            exprs = [(f"panel {title!r}", e) for title, e in dashboard_exprs()]
            alerts = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
            families, _ = agent_metrics(port)
            for where, e in exprs + alerts:
                res = prom.query(e)
                assert res.get("status") == "success", f"{where}: {e}: {res}"
                unknown = {n for n in metric_names(e) if not exposed(n, families) and n not in PENDING_METRICS}
                assert not unknown, f"{where} uses {unknown}, not in the agent's /metrics nor pending"
            waiting: dict[str, str] = {}
            missing: list[str] = []

            def dashboard_has_data() -> bool:
                _, samples = agent_metrics(port)
                waiting.clear()
                missing.clear()
                for where, e in exprs:
                    absent = sorted(n for n in metric_names(e) if n not in PROMETHEUS_SYNTHETIC and n not in samples)
                    if absent:
                        waiting[f"{where}: {e}"] = f"{where}: no samples of {', '.join(absent)}" + (
                            " (pending)" if all(n in PENDING_METRICS for n in absent) else "")
                    elif not has_finite_data(prom.query(e)):
                        missing.append(f"{where}: {e}")
                return not missing

            try:
                await _wait(dashboard_has_data, "data for every dashboard expression", DATA_TIMEOUT_S, 1.0)
            except AssertionError:
                raise AssertionError("no data: " + "; ".join(missing)) from None
            required = len(exprs) - len(waiting)
            report.append(f"{required}/{len(exprs)} dashboard expressions returned data after "
                          f"{time.monotonic() - t0:.1f} s; {len(alerts)} alert expressions evaluated")
            report += [f"  not yet required: {w}" for w in waiting.values()]

            def rules_healthy() -> bool:
                rules = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
                bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
                assert not [b for b in bad if b[1]], f"rule evaluation errors: {bad}"
                return len(rules) == len(alerts) and not bad

            await _wait(rules_healthy, "every alert rule evaluated with health ok", 10)

            # ---- kill switch (once the agent exports its gauge)
            if "mpc_agent_kill_switch" in families:
                async with KafkaSink(conn) as sink:
                    await sink.send(topics.parent_orders, json.dumps(
                        {"schema": "kill_switch.v1", "on": True, "reason": "test_prometheus"}).encode(), key=b"FROG")
                await _wait(lambda: bool(prom.alert_states().get("MpcAgentKillSwitchOn", set()) & {"pending", "firing"}),
                            "MpcAgentKillSwitchOn pending or firing", ALERT_TIMEOUT_S)
                report.append("kill switch on: MpcAgentKillSwitchOn fired")
            else:
                report.append("kill switch: the agent does not export mpc_agent_kill_switch yet (alert not exercised)")

        # the market and the venue stop while the broker is up (their clients would hang on a dead one)
        assert agent.alive, agent.log_text()[-3000:]
        # ---- broker down
        wall_down = time.time()
        await asyncio.to_thread(broker.run, "pause")
        t_down = time.monotonic()
        seen: dict[str, set[str]] = {}
        readyz: set[int | None] = set()

        def down_alerts() -> bool:
            readyz.add(agent_get(port, "/readyz"))
            seen.update(prom.alert_states())
            broker_down = bool(seen.get("MpcAgentBrokerDown", set()) & {"pending", "firing"})
            not_ready = bool(seen.get("MpcAgentNotReady", set()) & {"pending", "firing"})
            return broker_down and (not_ready or 503 not in readyz)  # /readyz 503 <=> mpc_agent_ready 0

        try:
            await _wait(down_alerts, "MpcAgentBrokerDown (and MpcAgentNotReady once /readyz answers 503) "
                        "pending or firing", ALERT_TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: alert states {seen}, /readyz {readyz}; {prom.diagnose(wall_down)}") from None
        first_zero: list[float] = []

        def zero_in_range() -> bool:  # the alert may be pending before the step grid of a range query reaches the 0
            first_zero[:] = [float(t) - wall_down for t, v in prom.api(
                "query_range", query="min(mpc_agent_broker_up)", start=str(wall_down - 5), end=str(time.time()),
                step="1")["data"]["result"][0]["values"] if v == "0"]
            return bool(first_zero)

        await _wait(zero_in_range, "mpc_agent_broker_up 0 in a range query", 10)
        report.append(f"broker paused: mpc_agent_broker_up 0 in Prometheus {first_zero[0]:.1f} s after the "
                      f"pause began, MpcAgentBrokerDown {sorted(seen['MpcAgentBrokerDown'])} "
                      f"{time.monotonic() - t_down:.1f} s after the broker stopped; MpcAgentNotReady "
                      f"{sorted(seen.get('MpcAgentNotReady', set())) or 'not seen'}, /readyz {sorted(readyz, key=str)} "
                      "during the outage")
        assert agent.alive, agent.log_text()[-3000:]
    finally:
        agent.kill()
    print(f"\nprometheus: {'; '.join(report[:2])}\n" + "\n".join(report[2:]) +
          f"\ntotal {time.monotonic() - t0:.1f} s")


def agent_get(port: int, path: str) -> int | None:
    """HTTP status of ``GET path`` on the agent (None when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None
