"""One wire message of every schema (shared by the codec unit tests and the Kafka integration tests)."""

from __future__ import annotations

from feeds.wire.codec import (
    AgentStateMsg,
    ChildOrderMsg,
    FillMsg,
    ImpactMsg,
    KillSwitchMsg,
    Mbp10,
    ParentCancelMsg,
    ParentOrderMsg,
    SolverMsg,
    WireMessage,
)

T0 = 1_743_687_000_000_000_000  # 2025-04-03T13:30:00Z


def sample_messages() -> list[tuple[bytes, WireMessage]]:
    """One message of every schema, with the key DESIGN.md section 5 gives it."""
    parent = ParentOrderMsg(
        parent_id="P1", symbol="FROG", side="buy", quantity=5000.0, start=T0,
        end=T0 + 3_600 * 10**9, period_s=60.0, max_participation=0.1, risk_aversion=1e-6,
        limit_price=12.5,
    )
    return [
        (b"FROG", Mbp10(
            symbol="FROG", ts_event=T0 + 1, ts_recv=T0 + 2, sequence=7, action="T", side="B",
            price=10.02, size=300.0, bid_px=[10.01, 10.0, 9.99], bid_sz=[100.0, 200.0, 50.0],
            ask_px=[10.03, 10.04], ask_sz=[120.0, 80.0],
        )),
        (b"P1", parent),
        (b"P1", ParentCancelMsg(parent_id="P1", ts_event=T0 + 10, reason="trader")),
        (b"FROG", KillSwitchMsg(on=True, reason="halt", ts_event=T0 + 11, source="desk")),
        (b"P1", ChildOrderMsg(
            child_order_id="P1:3", parent_id="P1", symbol="FROG", side="buy", quantity=200.0,
            limit_price=10.05, period_index=3, ts_event=T0 + 180 * 10**9,
            ts_init=T0 + 180 * 10**9 + 5000, remaining_before=4400.0, plan=[200.0, 180.0, 150.0],
            solver=SolverMsg(status="solved", iterations=25, solve_us=140.5),
            impact=ImpactMsg(beta=0.005, gamma=2e-6),
        )),
        (b"P1", FillMsg(fill_id="F1", child_order_id="P1:3", parent_id="P1", quantity=150.0,
                        price=10.03, ts_event=T0 + 181 * 10**9)),
        (b"P1", AgentStateMsg(
            parent_id="P1", ts_event=T0 + 181 * 10**9, remaining=4250.0, filled_quantity=750.0,
            agent_id="a1", engine={"version": 2, "fill_ids": ["F1"], "last_plan": [180.0, 150.0]},
        )),
    ]
