"""The operator's side of one service: kill switch, parent lifecycle, health and housekeeping.

:class:`Operations` is owned by :class:`agent.live.service.AgentService`, which
calls its hooks from the step path (``on_outputs`` when a step's outputs are
built, ``on_sent`` once its child orders are acknowledged, ``apply_kill``
before a step whose batch carries kill-switch commands) and runs
:meth:`Operations.housekeeping` as a background task. The HTTP layer reads it
through the service (``liveness``, ``readiness``, ``parents``,
``request_kill``).

Every ``service.housekeeping_interval_ms`` the housekeeping task

1. runs :meth:`agent.live.lifecycle.ParentLifecycle.scan` on the engine thread
   (a scan still running from the previous tick is awaited, never stacked):
   ended parents are logged (event ``parent_<status>``) and their unfilled
   shares counted, ``mpc_agent_parents{status}`` is set, parents past their
   retention are dropped (and their tombstones committed at once: a flush, so a
   quiet feed does not leave them on the state topic); the scan's return also
   proves the engine thread alive;
2. closes the dead-letter log windows that ended (their suppressed counts);
3. evaluates :meth:`readiness`, which sets ``mpc_agent_ready`` (so does every
   ``/readyz`` request): the gauge and the endpoint always agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from agent.core.engine import ExecutionEngine
from agent.core.model import ChildOrder, ParentOrder
from agent.live import health
from agent.live.events import emit
from agent.live.intake import Inbound, Intake
from agent.live.kill_switch import KillSwitch, KillSwitchCommand
from agent.live.lifecycle import Ended, ParentLifecycle, Scan
from agent.live.metrics import AgentMetrics
from agent.live.settings import ServiceSection

log = logging.getLogger("agent.live.operations")
T = TypeVar("T")


class OpsHost(Protocol):
    """What :class:`Operations` uses of the service."""

    engine: ExecutionEngine
    metrics: AgentMetrics
    intake: Intake
    source: Any
    clock: Callable[[], int] | None

    @property
    def running(self) -> bool: ...

    async def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def flush(self, *, state: bool = False) -> None: ...


class Operations:
    """Kill switch, lifecycle, health and housekeeping of one service (see the module docstring).

    Parameters
    ----------
    svc : the service.
    settings : ``ended_parent_retention_s``, ``housekeeping_interval_ms``, ``liveness_timeout_s``,
        ``ready_max_data_age_ms``.
    kill_switch : the process's switch (kept across service rebuilds).
    broker_up : whether the broker is reachable; None (or returning None: no probe has run) leaves the
        ``broker`` condition out of readiness.
    """

    def __init__(self, svc: OpsHost, settings: ServiceSection, *, kill_switch: KillSwitch,
                 broker_up: Callable[[], bool | None] | None = None) -> None:
        self.svc, self.settings, self.kill_switch, self.broker_up = svc, settings, kill_switch, broker_up
        kill_switch.bind_gauge(svc.metrics.kill_switch)
        self.lifecycle = ParentLifecycle(settings.ended_parent_retention_s, wall_clock=time.time_ns)
        self.loop_beat = self.engine_beat = time.monotonic()
        self.active_symbols: dict[str, int] = {}
        self._pending_kill: list[KillSwitchCommand] = []
        self._scan: asyncio.Future[Scan] | None = None
        risk_age_ms = svc.engine.settings.risk.max_snapshot_age_ms
        self.max_age_ns = int((settings.ready_max_data_age_ms or risk_age_ms) * 1e6)

    # ------------------------------------------------------------ step hooks
    def on_outputs(self, inb: Inbound, rejected: Sequence[tuple[str, int, str]]) -> None:
        """Log the parent orders a step accepted and the cancels it passed to the engine."""
        if not inb.control:
            return
        refused = {i for kind, i, _ in rejected if kind == "control"}
        for i, item in enumerate(inb.control):
            if i in refused:
                continue
            if isinstance(item, ParentOrder):
                self.accepted(item)
            else:
                emit(log, logging.INFO, "parent_cancel_requested", "cancel of parent %s requested", item,
                     parent_id=item)

    def expect(self, inb: Inbound) -> None:
        """Before a step is queued: the parents it may submit (see :meth:`ParentLifecycle.expect`)."""
        self.lifecycle.expect(p.parent_id for p in inb.control if isinstance(p, ParentOrder))

    def accepted(self, p: ParentOrder) -> None:
        """One ``parent_accepted`` line (a parent from the topic or from the configuration)."""
        emit(log, logging.INFO, "parent_accepted", "parent %s accepted: %s %g %s over %d period(s) of %g s",
             p.parent_id, p.side, p.quantity, p.symbol, p.n_periods, p.period_s,
             parent_id=p.parent_id, symbol=p.symbol, side=p.side, quantity=p.quantity, start_ns=p.start_ns,
             end_ns=p.end_ns, period_s=p.period_s, periods=p.n_periods, limit_price=p.limit_price,
             max_participation=p.max_participation)

    def on_sent(self, children: Sequence[ChildOrder], latency_s: float) -> None:
        """One ``child_sent`` line per child order acknowledged by the broker."""
        for c in children:
            s = c.solver
            emit(log, logging.INFO, "child_sent", "child %s sent: %s %g %s limit %g", c.child_order_id, c.side,
                 c.quantity, c.symbol, c.limit_price, child_order_id=c.child_order_id, parent_id=c.parent_id,
                 symbol=c.symbol, side=c.side, quantity=c.quantity, limit_price=c.limit_price,
                 period_index=c.period_index, remaining_before=c.remaining_before, ts_event=c.ts_event,
                 solver_status=None if s is None else s.status, solve_us=None if s is None else round(s.solve_us, 1),
                 decision_latency_ms=round(latency_s * 1e3, 3))

    def beat(self) -> None:
        """The step loop made progress (called once per loop iteration)."""
        self.loop_beat = time.monotonic()

    # ------------------------------------------------------------ kill switch
    async def apply_kill(self, cmds: Sequence[KillSwitchCommand]) -> None:
        """Kill-switch commands of a batch: set the process's switch, then the engine's (engine thread)."""
        changed = False
        for cmd in cmds:
            if cmd.ts_ns < self.kill_switch.state.ts_ns:  # overtaken by a newer change (e.g. over HTTP)
                log.info("kill-switch command from %s (on=%s) is older than the current state; ignored",
                         cmd.source, cmd.on)
                continue
            changed |= self.kill_switch.set(cmd)
        if changed or self.svc.engine.kill_switch != self.kill_switch.on:
            await self.svc.call(self.kill_switch.apply, self.svc.engine)

    async def request_kill(self, cmd: KillSwitchCommand) -> bool:
        """An operator's command (HTTP): effective at once, and queued so that the next step writes it
        to the state topic (the step loop picks it up even when no record comes in)."""
        changed = self.kill_switch.set(cmd)
        await self.svc.call(self.kill_switch.apply, self.svc.engine)
        self._pending_kill.append(self.kill_switch.state)
        return changed

    def take_pending_kill(self) -> list[KillSwitchCommand]:
        out, self._pending_kill = self._pending_kill, []
        return out

    # ------------------------------------------------------------ health
    def now_ns(self) -> int | None:
        """The service clock: wall clock live, else the newest ``ts_event`` seen (None before any)."""
        if self.svc.clock is not None:
            return self.svc.clock()
        return max(self.svc.intake.last_ts.values(), default=None)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        return health.liveness(running=self.svc.running, loop_idle_s=now - self.loop_beat,
                               engine_idle_s=now - self.engine_beat, timeout_s=self.settings.liveness_timeout_s)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        alive, _ = self.liveness()
        assigned: int | None = None
        assignment = getattr(self.svc.source, "assignment", None)
        if assignment is not None:
            try:
                assigned = len(assignment())
            except Exception:  # a consumer not started (yet) or closed
                assigned = 0
        ready, body = health.readiness(health.ReadinessInput(
            running=self.svc.running and alive, broker_up=self._broker(), assigned=assigned,
            active_symbols=self.active_symbols, last_ts=self.svc.intake.last_ts, now_ns=self.now_ns(),
            max_age_ns=self.max_age_ns, kill=self.kill_switch.state))
        self.svc.metrics.ready.set(1 if ready else 0)  # the gauge says what /readyz said last
        return ready, body

    def _broker(self) -> bool | None:
        return None if self.broker_up is None else self.broker_up()

    async def parents(self) -> list[dict[str, Any]]:
        """``GET /parents`` (read on the engine thread)."""
        return await self.svc.call(self.lifecycle.rows, self.svc.engine)

    # ------------------------------------------------------------ housekeeping
    async def housekeeping(self) -> None:
        """The background task (see the module docstring)."""
        interval = self.settings.housekeeping_interval_ms / 1000
        while True:
            await self.tick(interval)
            await asyncio.sleep(interval)

    async def tick(self, wait_s: float = 0.0) -> None:
        """One housekeeping pass; waits up to ``wait_s`` for the engine thread's scan."""
        if self._scan is None:
            self._scan = asyncio.ensure_future(self.svc.call(self.lifecycle.scan, self.svc.engine, self.now_ns()))
        done, _ = await asyncio.wait({self._scan}, timeout=wait_s if wait_s > 0 else None)
        if done:
            fut, self._scan = self._scan, None
            self.engine_beat = time.monotonic()
            scan = fut.result()
            self._report(scan)
            if scan.dropped:  # their tombstones now, not with the next input
                await self.svc.flush(state=True)
        self.svc.intake.dead_letter_log.flush()
        self.readiness()  # sets mpc_agent_ready

    def cancel(self) -> None:
        if self._scan is not None:
            self._scan.cancel()
            self._scan = None

    def _report(self, scan: Scan) -> None:
        m = self.svc.metrics
        self.active_symbols = scan.active_symbols
        for e in scan.ended:
            _log_ended(e)
            if e.unfilled_counts:
                m.parent_unfilled.labels(symbol=e.symbol).inc(e.unfilled)
        for status, n in scan.counts.items():
            m.parents.labels(status=status).set(n)
        for pid in scan.dropped:
            emit(log, logging.INFO, "parent_dropped", "ended parent %s dropped after its retention of %g s", pid,
                 self.settings.ended_parent_retention_s, parent_id=pid)


def _log_ended(e: Ended) -> None:
    level = logging.WARNING if e.unfilled_counts and e.status == "expired" else logging.INFO
    emit(log, level, f"parent_{e.status}",
         "parent %s %s: filled %g of %g %s (%g unfilled) after %d of %d period(s), %d skipped",
         e.parent_id, e.status, e.filled, e.quantity, e.symbol, e.unfilled, e.periods_done, e.periods,
         sum(e.skipped.values()),
         parent_id=e.parent_id, symbol=e.symbol, side=e.side, status=e.status, quantity=e.quantity,
         filled=e.filled, unfilled=e.unfilled, fill_rate=round(e.filled / e.quantity, 6) if e.quantity else None,
         average_price=e.average_price, periods_done=e.periods_done, periods=e.periods, skipped=e.skipped)
