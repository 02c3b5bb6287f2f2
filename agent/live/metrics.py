"""Prometheus metrics of the live service (DESIGN.md section 7).

:class:`AgentMetrics` creates every metric on an *injected*
``CollectorRegistry`` (never the global one), so tests and several agents in
one process do not collide. Names use the ``mpc_agent_`` prefix and base
units (seconds, shares); labels are low-cardinality (status, reason, side,
symbol): never an order id.

Histogram buckets
-----------------
``mpc_agent_solve_duration_seconds`` uses log-spaced buckets from 10 us to
100 ms (``SOLVE_BUCKETS_S``, 3 per decade); decision latency (snapshot
arrival to broker ack) uses 100 us to 1 s; decision delay (period boundary to broker ack,
wall clock) 10 ms to 5 min.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from agent.core.model import ChildOrder

PREFIX = "mpc_agent_"

SOLVE_BUCKETS_S: tuple[float, ...] = tuple(
    float(f"{x:.3g}") for x in np.logspace(-5, -1, 13)
)
"""10 us ... 100 ms, 3 buckets per decade."""

LATENCY_BUCKETS_S: tuple[float, ...] = tuple(float(f"{x:.3g}") for x in np.logspace(-4, 0, 13))
"""100 us ... 1 s, 3 buckets per decade."""

ITERATION_BUCKETS: tuple[float, ...] = (5, 10, 25, 50, 100, 200, 400, 1000, 4000)
AGE_BUCKETS_S: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 30.0)
DELAY_BUCKETS_S: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class AgentMetrics:
    """Every metric of the agent, created on one registry (see :meth:`create`)."""

    registry: CollectorRegistry
    solve_duration: Histogram
    solve_iterations: Histogram
    solves: Counter
    fallback_plans: Counter
    snapshots: Counter
    snapshots_rejected: Counter
    snapshot_age: Histogram
    decision_latency: Histogram
    decisions: Counter
    decision_delay: Histogram
    decisions_late: Counter
    child_orders: Counter
    parent_remaining: Gauge
    impact_beta: Gauge
    impact_gamma: Gauge
    fills: Counter
    fills_duplicate: Counter
    messages_rejected: Counter
    feed_stale: Gauge
    no_data_alarms: Counter
    ready: Gauge
    kill_switch: Gauge
    parents: Gauge
    parent_unfilled: Counter
    md_decoded: Counter
    decode_worker_failures: Counter
    engine_cpu: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> AgentMetrics:
        """Register the metrics on ``registry`` (a fresh one when None)."""
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=reg)  # process_start_time_seconds (restarts), CPU, memory, open fds
        p = PREFIX
        return cls(
            registry=reg,
            solve_duration=Histogram(f"{p}solve_duration_seconds", "QP solve wall time per decision",
                                     buckets=SOLVE_BUCKETS_S, registry=reg),
            solve_iterations=Histogram(f"{p}solve_iterations", "OSQP iterations per decision",
                                       buckets=ITERATION_BUCKETS, registry=reg),
            solves=Counter(f"{p}solves", "Decisions solved, by solver status", ["status"], registry=reg),
            fallback_plans=Counter(f"{p}fallback_plans", "Plans that fell back, by reason", ["reason"],
                                   registry=reg),
            snapshots=Counter(f"{p}snapshots", "Valid MBP-10 snapshots received", registry=reg),
            snapshots_rejected=Counter(f"{p}snapshots_rejected",
                                       "Snapshots rejected at the boundary (sent to the DLQ), by reason",
                                       ["reason"], registry=reg),
            snapshot_age=Histogram(f"{p}snapshot_age_seconds",
                                   "Age of the newest snapshot of a batch when processed (clock - ts_event)",
                                   buckets=AGE_BUCKETS_S, registry=reg),
            decision_latency=Histogram(f"{p}decision_latency_seconds",
                                       "Arrival of the snapshot closing a period to the broker's ack of "
                                       "the child order", buckets=LATENCY_BUCKETS_S, registry=reg),
            decisions=Counter(f"{p}decisions", "Period decisions, by outcome: child_order, zero_quantity (nothing "
                              "to send) or why the period was skipped (stale_book, crossed_book, locked_book, "
                              "empty_side, kill_switch, limit_price)", ["outcome"], registry=reg),
            decision_delay=Histogram(f"{p}decision_delay_seconds",
                                     "Period boundary (parent start + k * period) to the broker's ack of the "
                                     "decision's step, wall clock (live feeds only: not under the event clock)",
                                     buckets=DELAY_BUCKETS_S, registry=reg),
            decisions_late=Counter(f"{p}decisions_late", "Decisions acknowledged more than one period after "
                                   "their boundary (wall clock; live feeds only)", registry=reg),
            child_orders=Counter(f"{p}child_orders", "Child orders published, by side", ["side"],
                                 registry=reg),
            parent_remaining=Gauge(f"{p}parent_remaining_shares", "Shares left to trade, by symbol",
                                   ["symbol"], registry=reg),
            impact_beta=Gauge(f"{p}impact_beta", "Current linear impact coefficient (dollars/share)",
                              ["symbol"], registry=reg),
            impact_gamma=Gauge(f"{p}impact_gamma", "Current quadratic impact coefficient (dollars/share^2)",
                               ["symbol"], registry=reg),
            fills=Counter(f"{p}fills", "Fills applied", registry=reg),
            fills_duplicate=Counter(f"{p}fills_duplicate", "Fills ignored as duplicates (same fill_id)",
                                    registry=reg),
            messages_rejected=Counter(f"{p}messages_rejected",
                                      "Control messages (parent orders, fills) rejected, by topic and reason",
                                      ["topic", "reason"], registry=reg),
            feed_stale=Gauge(f"{p}feed_stale", "1 when no market data arrived within the alarm window",
                             registry=reg),
            no_data_alarms=Counter(f"{p}no_data_alarms", "Times the watchdog found the feed silent",
                                   registry=reg),
            ready=Gauge(f"{p}ready", "1 when /readyz answers 200: broker reachable, partitions assigned, fresh "
                        "data for every symbol with an active parent, kill switch off", registry=reg),
            kill_switch=Gauge(f"{p}kill_switch", "1 while the kill switch is on (no child orders; parents held)",
                              registry=reg),
            parents=Gauge(f"{p}parents", "Parent orders held by the engine, by status (ended ones until their "
                          "retention passes)", ["status"], registry=reg),
            parent_unfilled=Counter(f"{p}parent_unfilled_shares", "Shares left unexecuted by parents that ended "
                                    "(expired or cancelled), by symbol", ["symbol"], registry=reg),
            md_decoded=Counter(f"{p}md_decoded", "Market-data values decoded, by where: inline on the event loop "
                               "or in the decode worker process", ["where"], registry=reg),
            decode_worker_failures=Counter(f"{p}decode_worker_failures", "Times the market-data decode worker "
                                           "failed (its batch decoded inline, a new worker started later)",
                                           registry=reg),
            engine_cpu=Counter(f"{p}engine_cpu_seconds", "CPU time of the engine thread in steps and catch-ups "
                               "(its rate: cores; near 1 the agent cannot decide more parents in time)",
                               registry=reg),
        )

    # ------------------------------------------------------------ helpers
    def observe_child(self, child: ChildOrder) -> None:
        """Solver, impact and order counters of one published child order."""
        self.child_orders.labels(side=child.side).inc()
        if child.solver is not None:
            self.observe_solve(child.solver.status, child.solver.iterations, child.solver.solve_us)
        if child.impact is not None:
            self.impact_beta.labels(symbol=child.symbol).set(child.impact.beta)
            self.impact_gamma.labels(symbol=child.symbol).set(child.impact.gamma)

    def observe_solve(self, status: str, iterations: int, solve_us: float) -> None:
        self.solves.labels(status=status or "unknown").inc()
        self.solve_iterations.observe(iterations)
        self.solve_duration.observe(solve_us * 1e-6)

    def observe_decisions(self, outcomes: Mapping[str, int], boundaries: Iterable[tuple[int, int]],
                          now_ns: int | None) -> None:
        """Count one step's decisions by outcome; with the wall clock ``now_ns`` (the step's ack), each
        one's delay after its period boundary, and those more than one period late."""
        for outcome, k in outcomes.items():
            self.decisions.labels(outcome=outcome).inc(k)
        if now_ns is None:
            return
        late = 0
        for start_ns, period_ns in boundaries:
            delay_ns = now_ns - start_ns
            self.decision_delay.observe(max(0, delay_ns) / 1e9)
            late += delay_ns > period_ns
        if late:
            self.decisions_late.inc(late)

    def reject(self, reason: str, n: int = 1) -> None:
        """Count ``n`` snapshots rejected for ``reason``."""
        if n:
            self.snapshots_rejected.labels(reason=reason).inc(n)


@dataclass
class ReliabilityMetrics:
    """Transactions, restores and broker reachability (created once per process registry).

    ``broker_reachable`` mirrors ``broker_up`` for readiness: None until a probe has run.
    """

    transactions: Counter
    state_records: Counter
    restored_parents: Counter
    broker_up: Gauge
    broker_outage_seconds: Counter
    service_restarts: Counter
    broker_reachable: bool | None = None

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReliabilityMetrics:
        p = PREFIX
        return cls(
            transactions=Counter(f"{p}transactions", "Step transactions, by outcome", ["outcome"], registry=registry),
            state_records=Counter(f"{p}state_records", "agent_state.v1 records produced", registry=registry),
            restored_parents=Counter(f"{p}restored_parents", "Parent orders restored from the state topic",
                                     registry=registry),
            broker_up=Gauge(f"{p}broker_up", "1 when a bootstrap broker accepts connections", registry=registry),
            broker_outage_seconds=Counter(f"{p}broker_outage_seconds", "Seconds the broker was unreachable",
                                          registry=registry),
            service_restarts=Counter(f"{p}service_restarts", "Service rebuilds after a feed failure, by cause",
                                     ["cause"], registry=registry),
        )
