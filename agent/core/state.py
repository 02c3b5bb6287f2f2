"""What must survive a crash: the per-parent engine record, as a JSON-able dict.

The live service writes :meth:`agent.core.engine.ExecutionEngine.snapshot`
(built here by :func:`export_record`) to the compacted ``exec.agent-state``
topic (key = parent_id) in the same Kafka transaction as the child orders and
the consumed offsets; a restarted agent calls
:meth:`~agent.core.engine.ExecutionEngine.restore` (:func:`parse_record`) for
every record before it consumes anything else.

A record holds the parent order, the fill-driven progress (filled quantity,
notional, fill ids seen), the lifecycle status, the next period to decide,
the lot-rounding carry, the last plan, the periods skipped by reason, the reverting forecast's estimators on
the parent's size grid (when that forecast is on) and, optionally, a copy of
its symbol's market state (volume, volatility and cost-curve estimators and
the book sampler's position, shared by the symbol's parents: the newest copy
wins on restore; the sampled rows themselves are memory only). The live
service leaves that copy out (``"symbol": null``, version 3) and writes each
symbol's market state in records of its own, at most every few seconds of
event time (:mod:`agent.live.state_topic`): a parent's record is then ~0.5 kB
and is written only when the parent itself changed. Version 2 records (the
copy always present) are still read. The QP itself is not saved: it is
rebuilt (one setup) and cold-started on the first decision after a restore.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from agent.core.forecast.cost_forecast import ParentForecaster
from agent.core.market import SymbolMarket
from agent.core.model import ParentOrder
from agent.core.mpc.rounding import LotRounder
from agent.core.parent_state import STATUSES, ParentState

_PARENT_FIELDS = fields(ParentOrder)
STATE_VERSION = 3
READABLE_VERSIONS = (2, 3)


def export_record(st: ParentState, market: SymbolMarket | None) -> dict[str, Any]:
    """The crash-recovery record of one parent order (JSON-able, deterministic key order);
    ``market=None``: without the copy of the symbol's market state."""
    return {
        "version": STATE_VERSION,
        "parent": {f.name: getattr(st.parent, f.name) for f in _PARENT_FIELDS},  # flat: asdict's copy
        "status": st.status,
        "filled": st.filled,
        "notional": st.notional,
        "next_period": st.next_period,
        "cum_volume_at_decision": st.cum_volume_at_decision,
        "fill_ids": sorted(st.fill_ids),
        "last_plan": list(st.last_plan),
        "last_child_ts": st.last_child_ts,
        "skipped": dict(sorted(st.skipped.items())),
        "rounder": st.rounder.state(),
        "forecaster": None if st.forecaster is None else st.forecaster.state(),
        "symbol": None if market is None else market.state(),
    }


def parse_record(record: dict[str, Any]) -> tuple[ParentOrder, dict[str, Any], SymbolMarket | None]:
    """``(parent, ParentState field values, symbol market or None)`` of an :func:`export_record` record.

    Raises ``ValueError`` for a record of another version or an unknown status.
    """
    if record.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"unsupported engine state version {record.get('version')!r}")
    if record["status"] not in STATUSES:
        raise ValueError(f"unknown parent status {record['status']!r}")
    parent = ParentOrder(**record["parent"])
    fields = {
        "status": str(record["status"]),
        "filled": float(record["filled"]),
        "notional": float(record["notional"]),
        "next_period": int(record["next_period"]),
        "cum_volume_at_decision": float(record["cum_volume_at_decision"]),
        "fill_ids": set(record["fill_ids"]),
        "last_plan": tuple(float(x) for x in record["last_plan"]),
        "last_child_ts": None if record.get("last_child_ts") is None else int(record["last_child_ts"]),
        "rounder": LotRounder.from_state(record["rounder"]),
        "skipped": {str(k): int(v) for k, v in (record.get("skipped") or {}).items()},  # (absent before)
    }
    if record.get("forecaster") is not None:
        fields["forecaster"] = ParentForecaster.from_state(record["forecaster"])
    market = record.get("symbol")
    return parent, fields, None if market is None else SymbolMarket.from_state(market)
