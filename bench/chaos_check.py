"""The chaos soak's invariants, checked from the topics alone with an outside client (confluent-kafka).

:func:`check` reads, with ``read_committed``, the child orders, the fills,
the state records and the three DLQs, and counts violations of:

- ``duplicate_child_ids``: a ``child_order_id`` committed twice;
- ``child_periods_not_increasing``: per parent, in commit order, a child
  period at or before an earlier one;
- ``overallocated_parents``: per parent, child quantity above the parent's;
- ``filled_mismatch``: the parent's final ``filled_quantity`` differs from the
  sum of its fills (de-duplicated by ``fill_id``), or exceeds its quantity;
- ``unfinished_parents``: no final record, still ``active``, or
  ``remaining`` not ``quantity - filled``;
- ``filled_went_back``: per parent, in commit order, a state record with less
  filled than an earlier one (a stale writer);
- ``stale_decisions``: a child whose decision time (``ts_init``, the agent's
  wall clock) is more than ``max_snapshot_age_ms`` after its book
  (``ts_event``);
- ``hostile_not_dead_lettered`` / ``hostile_dead_lettered_twice`` /
  ``hostile_wrong_reason``: every hostile message on its DLQ exactly once
  (found by its ``source.topic/partition/offset`` headers) with the reason
  it was made for;
- ``good_dead_lettered``: a DLQ copy of anything that was not hostile.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Any

from tests.integration.outside import read_committed, scan_committed

INVARIANTS = ("duplicate_child_ids", "child_periods_not_increasing", "overallocated_parents", "filled_mismatch",
              "unfinished_parents", "filled_went_back", "stale_decisions", "hostile_not_dead_lettered",
              "hostile_dead_lettered_twice", "hostile_wrong_reason", "good_dead_lettered")
FILLED = re.compile(rb'"filled_quantity":\s*([0-9.eE+-]+)')


def _headers(m: Any) -> tuple[str, int, int]:
    h = m.headers
    return h["source.topic"].decode(), int(h["source.partition"]), int(h["source.offset"])


def check(bootstrap: str, topics: Any, parents: dict[str, float], hostile: dict[tuple[str, int, int], str],
          max_snapshot_age_ms: float) -> tuple[dict[str, int], dict[str, Any]]:
    """``(violations, figures)``; ``parents`` maps parent_id -> quantity."""
    v: Counter[str] = Counter({k: 0 for k in INVARIANTS})
    children = [m.json() | {"_p": m.partition, "_o": m.offset} for m in read_committed(bootstrap, topics.child_orders)]
    fills = [m.json() for m in read_committed(bootstrap, topics.fills)  # the venue's, not the hostile ones
             if (m.topic, m.partition, m.offset) not in hostile]
    final: dict[str, Any] = {}  # parent_id -> newest state record (the state topic is read once, not kept)
    filled_seen: dict[str, float] = {}

    def state(m: Any) -> None:
        if m.key is None:
            return
        pid = m.key.decode()
        final[pid] = m
        got = FILLED.search(m.value or b"")
        if got is not None:
            x = float(got.group(1))
            if x < filled_seen.get(pid, 0.0) - 1e-9:
                v["filled_went_back"] += 1
            filled_seen[pid] = x

    n_states = scan_committed(bootstrap, topics.agent_state, state, timeout_s=900)
    dlq = [m for t in (topics.dlq, f"{topics.parent_orders}.dlq", f"{topics.fills}.dlq")
           for m in read_committed(bootstrap, t, timeout_s=300)]
    # child orders
    ids = Counter(c["child_order_id"] for c in children)
    v["duplicate_child_ids"] = sum(n - 1 for n in ids.values() if n > 1)
    last_period: dict[str, int] = {}
    sent: dict[str, float] = defaultdict(float)
    ages = []
    for c in sorted(children, key=lambda c: (c["_p"], c["_o"])):
        pid = c["parent_id"]
        if c["period_index"] <= last_period.get(pid, -1):
            v["child_periods_not_increasing"] += 1
        last_period[pid] = c["period_index"]
        sent[pid] += c["quantity"]
        ages.append((c["ts_init"] - c["ts_event"]) / 1e6)
    v["stale_decisions"] = sum(1 for a in ages if a > max_snapshot_age_ms)
    v["overallocated_parents"] = sum(1 for pid, q in parents.items() if sent[pid] > q + 1e-6)
    # fills and final states
    filled: dict[str, float] = defaultdict(float)
    for f in {f["fill_id"]: f for f in fills}.values():
        filled[f["parent_id"]] += f["quantity"]
    statuses: Counter[str] = Counter()
    unfilled = 0.0
    for pid, q in parents.items():
        rec = json.loads(final[pid].value) if pid in final and final[pid].value else None
        if rec is None or rec["status"] == "active" or abs(rec["remaining"] - (q - rec["filled_quantity"])) > 1e-6:
            v["unfinished_parents"] += 1
            statuses["missing" if rec is None else rec["status"]] += 1
            continue
        statuses[rec["status"]] += 1
        unfilled += rec["remaining"]
        if abs(rec["filled_quantity"] - filled[pid]) > 1e-6 or filled[pid] > q + 1e-6:
            v["filled_mismatch"] += 1
    # dead letters
    copies = Counter(_headers(m) for m in dlq)
    reasons = {_headers(m): m.headers.get("error", b"").decode() for m in dlq}
    v["hostile_not_dead_lettered"] = sum(1 for k in hostile if copies[k] == 0)
    v["hostile_dead_lettered_twice"] = sum(1 for k in hostile if copies[k] > 1)
    wrong = Counter((r, reasons[k]) for k, r in hostile.items() if copies[k] and reasons[k] != r)
    v["hostile_wrong_reason"] = sum(wrong.values())
    good = Counter(reasons[k] for k in copies if k not in hostile)
    v["good_dead_lettered"] = sum(good.values())
    figures = {"child_orders": len(children), "fills": len(fills), "state_records_read": n_states,
               "dlq_records": len(dlq), "parent_status": dict(statuses), "unfilled_shares": unfilled,
               "shares_sent": sum(sent.values()), "shares_filled": sum(filled.values()),
               "max_decision_book_age_ms": max(ages, default=0.0),
               "hostile_wrong_reason_examples": [f"{a} -> {b}" for a, b in list(wrong)[:5]],
               "good_dead_lettered_reasons": dict(good)}
    return {k: int(v[k]) for k in INVARIANTS}, figures
