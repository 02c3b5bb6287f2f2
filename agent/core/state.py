"""What must survive a crash: per-parent engine state as a JSON-able dict.

The live service writes :func:`export_parent` to the compacted
``exec.agent-state`` topic (key = parent_id) in the same Kafka transaction as
the child orders and the consumed offsets; a restarted agent calls
:func:`restore_parent` for every record before it consumes anything else.

A record holds the parent order, the fill-driven progress (filled quantity,
notional, fill ids seen), the next period to decide, the lot-rounding carry,
the last plan, the parent's impact estimator and a copy of its symbol's
volume/volatility estimators (shared by the symbol's parents: the newest copy
wins on restore). The QP itself is not saved: it is rebuilt (one setup) and
cold-started on the first decision after a restore.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from agent.core.engine import ExecutionEngine, _ParentState, _SymbolState
from agent.core.forecast.volume import VolatilityEstimator, VolumeEstimator
from agent.core.impact.estimator import OnlineImpactEstimator
from agent.core.model import ParentOrder
from agent.core.mpc.qp import LotRounder

STATE_VERSION = 1


def export_parent(engine: ExecutionEngine, parent_id: str) -> dict[str, Any]:
    """The crash-recovery record of one parent order (JSON-able, deterministic key order)."""
    st = engine.parents[parent_id]
    mkt = engine.symbols[st.parent.symbol]
    return {
        "version": STATE_VERSION,
        "parent": asdict(st.parent),
        "status": st.status,
        "filled": st.filled,
        "notional": st.notional,
        "remaining": st.remaining,
        "next_period": st.next_period,
        "cum_volume_at_decision": st.cum_volume_at_decision,
        "fill_ids": sorted(st.fill_ids),
        "last_plan": list(st.last_plan),
        "rounder": st.rounder.state(),
        "impact": st.impact.state(),
        "impact_now": None if st.impact_now is None else st.impact_now.state(),
        "symbol": {
            "volume": mkt.volume.state(),
            "volatility": mkt.volatility.state(),
            "cum_volume": mkt.cum_volume,
        },
    }


def restore_parent(engine: ExecutionEngine, record: dict[str, Any]) -> str:
    """Rebuild a parent order's state from :func:`export_parent`; returns its id.

    Replaces any state the engine already holds for that parent. Raises
    ``ValueError`` for a record of another version.
    """
    if record.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported engine state version {record.get('version')!r}")
    parent = ParentOrder(**record["parent"])
    policy = engine.policy_factory(parent, engine.settings)
    st = _ParentState(
        parent=parent,
        policy=policy,
        impact=OnlineImpactEstimator.from_state(record["impact"]),
        impact_now=None if record.get("impact_now") is None
        else OnlineImpactEstimator.from_state(record["impact_now"]),
        rounder=LotRounder.from_state(record["rounder"]),
        filled=float(record["filled"]),
        notional=float(record["notional"]),
        next_period=int(record["next_period"]),
        cum_volume_at_decision=float(record["cum_volume_at_decision"]),
        fill_ids=set(record["fill_ids"]),
        last_plan=tuple(float(x) for x in record["last_plan"]),
    )
    if record["status"] != "active":
        st.finish(str(record["status"]))
    engine.parents[parent.parent_id] = st
    sym = record["symbol"]
    mkt = engine.symbols.get(parent.symbol)
    restored = _SymbolState(
        VolumeEstimator.from_state(sym["volume"]),
        VolatilityEstimator.from_state(sym["volatility"]),
        float(sym["cum_volume"]),
    )
    if mkt is None or _last_ts(restored) >= _last_ts(mkt):
        engine.symbols[parent.symbol] = restored
    return parent.parent_id


def _last_ts(mkt: _SymbolState) -> int:
    state = mkt.volume.state()
    value = state.get("last_ts_ns", state.get("last_ts"))
    return int(value) if value is not None else -(2**62)
