"""The running agent as the HTTP layer sees it, across service rebuilds (``mpc-agent run``).

With Kafka the crash-only loop of :mod:`agent.app.builder` tears the service
down after a feed failure and builds a new one; the HTTP server and the kill
switch live for the whole process. :class:`Runtime` implements
:class:`agent.live.http.Control` over whatever service is current:

- while a service runs, ``/livez``, ``/readyz`` and ``/parents`` are its own;
- between two services (the rebuild backoff) the process is alive (``/livez``
  200, ``detail: rebuilding``), not ready (condition ``service``), and
  ``/parents`` answers 503;
- ``POST /kill-switch`` always takes effect in the process's switch; the
  running service applies it to its engine at once and writes it to the state
  topic at its next step; with no service, the next one applies it when it
  starts and writes it after restoring (the newer change wins over the record).
"""

from __future__ import annotations

from typing import Any

from agent.core.errors import FeedError
from agent.live.http import Unavailable
from agent.live.kill_switch import KillSwitch

REBUILDING = "the service is starting, or being rebuilt after a failure"


class Runtime:
    """:class:`agent.live.http.Control` over ``current["service"]`` (see the module docstring).

    Parameters
    ----------
    current : the app loop's ``{"service": AgentService}`` (absent while rebuilding).
    kill_switch : the process's switch.
    """

    def __init__(self, current: dict[str, Any], kill_switch: KillSwitch) -> None:
        self.current, self.kill_switch = current, kill_switch

    @property
    def service(self) -> Any | None:
        svc = self.current.get("service")
        return svc if svc is not None and svc.running else None

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        svc = self.service
        if svc is None:
            return True, {"alive": True, "running": False, "detail": REBUILDING}
        ok, body = svc.liveness()
        return ok, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        svc = self.service
        if svc is None:
            k = self.kill_switch.state
            conditions: dict[str, Any] = {"service": {"ok": False, "detail": REBUILDING},
                                          "kill_switch": {"ok": not k.on, "detail": "on" if k.on else "off"}}
            probe = self.current.get("broker_up")
            up = probe() if probe is not None else None
            if up is not None:  # the process-level probe keeps running while the service is rebuilt
                conditions["broker"] = {"ok": bool(up), "detail": "reachable" if up else "unreachable"}
            failing = [name for name, c in conditions.items() if not c["ok"]]
            return False, {"ready": False, "failing": failing, "conditions": conditions}
        ok, body = svc.readiness()
        return ok, body

    async def parents(self) -> list[dict[str, Any]]:
        svc = self.service
        if svc is None:
            raise Unavailable(REBUILDING)
        try:
            rows: list[dict[str, Any]] = await svc.ops.parents()
        except FeedError as exc:  # stopped between the check and the call
            raise Unavailable(str(exc)) from exc
        return rows

    def kill_switch_state(self) -> dict[str, Any]:
        return self.kill_switch.state.as_dict()

    async def set_kill_switch(self, on: bool, reason: str, source: str) -> dict[str, Any]:
        cmd = self.kill_switch.command(on, reason, source)
        before = self.kill_switch.state
        svc = self.service
        applied = False
        if svc is not None:
            try:
                await svc.ops.request_kill(cmd)
                applied = True
            except FeedError:  # the service stopped meanwhile: the next one applies the process's switch
                pass
        if not applied:
            self.kill_switch.set(cmd)
        return {**self.kill_switch.state.as_dict(), "changed": self.kill_switch.on != before.on,
                "applied_to_engine": applied}
