"""agent.live.metrics: names, buckets, labels (the HTTP endpoints: test_http.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.core.model import ChildOrder, ImpactParams, SolverInfo
from agent.live.metrics import SOLVE_BUCKETS_S, AgentMetrics

REQUIRED = {
    "mpc_agent_solve_duration_seconds": "histogram",
    "mpc_agent_solve_iterations": "histogram",
    "mpc_agent_solves": "counter",
    "mpc_agent_fallback_plans": "counter",
    "mpc_agent_snapshots": "counter",
    "mpc_agent_snapshots_rejected": "counter",
    "mpc_agent_snapshot_age_seconds": "histogram",
    "mpc_agent_decision_latency_seconds": "histogram",
    "mpc_agent_decisions": "counter",
    "mpc_agent_decision_delay_seconds": "histogram",
    "mpc_agent_decisions_late": "counter",
    "mpc_agent_child_orders": "counter",
    "mpc_agent_parent_remaining_shares": "gauge",
    "mpc_agent_impact_beta": "gauge",
    "mpc_agent_impact_gamma": "gauge",
    "mpc_agent_ready": "gauge",
    "mpc_agent_kill_switch": "gauge",
    "mpc_agent_parents": "gauge",
    "mpc_agent_parent_unfilled_shares": "counter",
    "mpc_agent_md_decoded": "counter",
    "mpc_agent_decode_worker_failures": "counter",
    "mpc_agent_engine_cpu_seconds": "counter",
    "process_start_time_seconds": "gauge",
}


def _child() -> ChildOrder:
    return ChildOrder("P1:3", "P1", "FROG", "buy", 100.0, 10.5, 3, 1, 2, 500.0,
                      solver=SolverInfo("osqp", "solved", 25, 180.0), impact=ImpactParams(0.01, 1e-5))


def _families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_create_registers_every_design_metric_on_the_injected_registry() -> None:
    reg = CollectorRegistry()
    m = AgentMetrics.create(reg)
    from prometheus_client import generate_latest

    m.solves.labels(status="solved")
    m.fallback_plans.labels(reason="solver_failed")
    m.snapshots_rejected.labels(reason="crossed_book")
    m.child_orders.labels(side="buy")
    m.decisions.labels(outcome="child_order")
    m.md_decoded.labels(where="process")
    for g in (m.parent_remaining, m.impact_beta, m.impact_gamma):
        g.labels(symbol="FROG")
    fams = _families(generate_latest(reg).decode())
    for name, kind in REQUIRED.items():
        assert fams.get(name) == kind, f"{name} missing or not a {kind}"


def test_two_bundles_on_separate_registries_do_not_collide() -> None:
    AgentMetrics.create(CollectorRegistry())
    AgentMetrics.create(CollectorRegistry())


def test_solve_buckets_span_10us_to_100ms() -> None:
    assert SOLVE_BUCKETS_S[0] == pytest.approx(1e-5)
    assert SOLVE_BUCKETS_S[-1] == pytest.approx(0.1)
    assert list(SOLVE_BUCKETS_S) == sorted(SOLVE_BUCKETS_S)


def test_observe_child_counts_side_solver_and_impact_without_order_id_labels() -> None:
    reg = CollectorRegistry()
    m = AgentMetrics.create(reg)
    m.observe_child(_child())
    assert reg.get_sample_value("mpc_agent_child_orders_total", {"side": "buy"}) == 1.0
    assert reg.get_sample_value("mpc_agent_solves_total", {"status": "solved"}) == 1.0
    assert reg.get_sample_value("mpc_agent_solve_duration_seconds_count") == 1.0
    # 180 us falls in the 215 us bucket, not in the 100 us one
    assert reg.get_sample_value("mpc_agent_solve_duration_seconds_bucket", {"le": "0.000215"}) == 1.0
    assert reg.get_sample_value("mpc_agent_solve_duration_seconds_bucket", {"le": "0.0001"}) == 0.0
    assert reg.get_sample_value("mpc_agent_impact_beta", {"symbol": "FROG"}) == 0.01
    for metric in reg.collect():
        for s in metric.samples:
            assert "P1" not in s.labels.values(), f"{s.name} carries an order id label"


def test_observe_decisions_counts_outcomes_delays_and_late_ones_and_no_delay_under_the_event_clock() -> None:
    m = AgentMetrics.create(CollectorRegistry())
    reg = m.registry
    s = 1_000_000_000
    # three decisions acked at t = 100 s: 0.05 s, 1 s (not late: exactly one period) and 1.5 s after
    # their boundaries, periods of 1 s; a fourth of a 60 s period, 1.5 s after its boundary
    boundaries = [(100 * s - s // 20, s), (99 * s, s), (100 * s - 3 * s // 2, s), (100 * s - 3 * s // 2, 60 * s)]
    m.observe_decisions({"child_order": 3, "stale_book": 1}, boundaries, 100 * s)
    assert reg.get_sample_value("mpc_agent_decisions_total", {"outcome": "child_order"}) == 3
    assert reg.get_sample_value("mpc_agent_decisions_total", {"outcome": "stale_book"}) == 1
    assert reg.get_sample_value("mpc_agent_decisions_late_total") == 1
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_count") == 4
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_bucket", {"le": "0.05"}) == 1
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_bucket", {"le": "1.0"}) == 2
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_bucket", {"le": "2.5"}) == 4
    m.observe_decisions({"zero_quantity": 2}, [(0, s), (0, s)], None)  # event clock: outcomes only
    assert reg.get_sample_value("mpc_agent_decisions_total", {"outcome": "zero_quantity"}) == 2
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_count") == 4
    assert reg.get_sample_value("mpc_agent_decisions_late_total") == 1
