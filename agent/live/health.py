"""Liveness and readiness: what ``/livez`` and ``/readyz`` answer, and why.

Readiness (``/readyz``, alias ``/healthz``, gauge ``mpc_agent_ready``) is the
conjunction of named conditions; the JSON body lists each with ``ok`` and a
``detail`` and ``failing`` names the ones that fail:

=================  ===========================================================================
``service``        the service is started and not stopping (false while the app rebuilds it)
``broker``         a bootstrap broker accepts connections (``mpc_agent_broker_up``); skipped
                   when nothing probes the broker (file feed)
``partitions``     the consumer has partitions assigned (Kafka feed); an agent of a group with
                   more agents than partitions is a standby and reports not ready
``market_data``    every symbol with an active parent that has started has a snapshot younger
                   than ``service.ready_max_data_age_ms`` (default ``risk.max_snapshot_age_ms``)
                   by the service clock (the wall clock live; the newest ``ts_event`` seen in
                   event-time mode): the engine would not trade on an older one
``kill_switch``    the kill switch is off
=================  ===========================================================================

Liveness (``/livez``) only says the process is not wedged: the step loop and
the engine thread both made progress within ``service.liveness_timeout_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.live.kill_switch import KillSwitchCommand


@dataclass(frozen=True, slots=True)
class ReadinessInput:
    """Everything readiness depends on, gathered by :class:`agent.live.operations.Operations`."""

    running: bool
    broker_up: bool | None
    assigned: int | None
    active_symbols: Mapping[str, int]
    last_ts: Mapping[str, int]
    now_ns: int | None
    max_age_ns: int
    kill: KillSwitchCommand


def readiness(x: ReadinessInput) -> tuple[bool, dict[str, Any]]:
    """``(ready, body)``: see the module docstring for the conditions."""
    cond: dict[str, dict[str, Any]] = {
        "service": {"ok": x.running, "detail": "running" if x.running else "not running"},
    }
    if x.broker_up is not None:
        cond["broker"] = {"ok": x.broker_up, "detail": "reachable" if x.broker_up else "unreachable"}
    if x.assigned is not None:
        cond["partitions"] = {"ok": x.assigned > 0, "detail": f"{x.assigned} assigned"}
    cond["market_data"] = _market_data(x)
    k = x.kill
    cond["kill_switch"] = {"ok": not k.on, "detail": ("on: " if k.on else "off") + (k.reason if k.on else ""),
                           "source": k.source or None, "since_ns": k.ts_ns or None}
    failing = [name for name, c in cond.items() if not c["ok"]]
    return not failing, {"ready": not failing, "failing": failing, "conditions": cond}


def _market_data(x: ReadinessInput) -> dict[str, Any]:
    now = x.now_ns if x.now_ns is not None else max(x.last_ts.values(), default=None)
    ages: dict[str, float | None] = {}
    stale: list[str] = []
    for sym in sorted(x.active_symbols):
        ts = x.last_ts.get(sym)
        age = None if ts is None or now is None else (now - ts) / 1e9
        ages[sym] = None if age is None else round(age, 3)
        if age is None or age * 1e9 > x.max_age_ns:
            stale.append(sym)
    detail = (f"no snapshot younger than {x.max_age_ns / 1e6:g} ms for {', '.join(stale)}" if stale
              else f"{len(ages)} symbol(s) with an active parent, all fresh" if ages
              else "no active parent")
    return {"ok": not stale, "detail": detail, "age_s": ages, "stale": stale}


def liveness(*, running: bool, loop_idle_s: float, engine_idle_s: float, timeout_s: float) -> tuple[bool, dict[str, Any]]:
    """``(alive, body)``: alive while started and both the step loop and the engine thread moved
    within ``timeout_s`` (a service that is not running yet or any more is reported as such)."""
    ok = (not running) or (loop_idle_s <= timeout_s and engine_idle_s <= timeout_s)
    return ok, {"alive": ok, "running": running, "loop_idle_s": round(loop_idle_s, 3),
                "engine_idle_s": round(engine_idle_s, 3), "timeout_s": timeout_s}
