"""The runtime kill switch: one process-wide state, applied to every engine the process builds.

While the switch is on the engine sends no child order: every period that
comes due is skipped with the reason ``kill_switch`` (``agent.core.decision``),
the parent keeps its remaining quantity and is *held*; it expires only when its
end passes. When the switch goes off, the next decision re-plans the remaining
quantity over the periods that are left.

Where a change comes from (every change is one log line, event ``kill_switch``,
and moves the ``mpc_agent_kill_switch`` gauge):

- a ``kill_switch.v1`` message on the parent-orders topic (decoded by
  :mod:`agent.live.intake`, applied before the step of its batch);
- ``POST /kill-switch`` (:mod:`agent.live.http`, only with ``http.admin_token``);
- ``risk.kill_switch = true`` in the configuration (at start-up);
- the state topic (:mod:`agent.live.state_topic`): the switch is written under
  the key :data:`KILL_SWITCH_KEY` of ``exec.agent-state`` in the step
  transaction after it changed, and read back on every partition assignment.
  The newest change (by ``ts_event``) wins, so a restarted agent, or one that
  takes over the partitions of another, comes back with the switch as it was.

The state lives here, not in the service, so that a service rebuilt after a
broker failure keeps a switch turned on while the broker was unreachable.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.errors import DataError
from agent.live.events import emit
from feeds.wire import codec
from feeds.wire.messages import KillSwitchMsg

log = logging.getLogger("agent.live.kill_switch")

KILL_SWITCH_KEY = "__kill_switch__"
"""Key of the kill-switch record in the state topic (never a parent id: ids are user text, but this
one is reserved; a parent order with this id is refused by the intake)."""


class Engine(Protocol):
    kill_switch: bool


class GaugeLike(Protocol):
    def set(self, value: float) -> None: ...


@dataclass(frozen=True, slots=True)
class KillSwitchCommand:
    """One request to set the switch: ``on``, why, from where, and when (wall-clock ns)."""

    on: bool
    reason: str
    source: str
    ts_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {"on": self.on, "reason": self.reason, "source": self.source, "since_ns": self.ts_ns}


def command_from_message(msg: KillSwitchMsg, source: str, now_ns: int) -> KillSwitchCommand:
    """The command of a decoded ``kill_switch.v1``, stamped ``now_ns`` (when this agent applies it; the
    sender's ``ts_event`` is not trusted for ordering: clocks differ)."""
    where = f"{msg.source} via {source}" if msg.source else source
    return KillSwitchCommand(msg.on, msg.reason, where, now_ns)


class KillSwitch:
    """The process-wide switch (see the module docstring); thread-safe.

    Parameters
    ----------
    initial : the start-up state (``risk.kill_switch``); an initial ``on`` counts as a change
        made now (source ``config``), so it wins over an older record in the state topic.
    gauge : ``mpc_agent_kill_switch`` (set on every change).
    clock : wall clock in ns.
    """

    def __init__(self, initial: bool = False, *, gauge: GaugeLike | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._gauge = gauge
        self._state = KillSwitchCommand(initial, "risk.kill_switch in the configuration" if initial else "",
                                        "config" if initial else "default", clock() if initial else 0)
        self._set_gauge()

    @property
    def on(self) -> bool:
        return self._state.on

    @property
    def state(self) -> KillSwitchCommand:
        """The current state: ``ts_ns`` is when it last changed (0: never, the default off)."""
        return self._state

    def bind_gauge(self, gauge: GaugeLike) -> None:
        self._gauge = gauge
        self._set_gauge()

    def set(self, cmd: KillSwitchCommand, *, via: str | None = None) -> bool:
        """Apply a command; True (and one log line) when it flips the switch, else nothing changes.
        ``via`` is added to the logged source (e.g. ``restored from the state topic``)."""
        with self._lock:
            old = self._state
            if cmd == old:  # the same command again (e.g. queued for the state topic): nothing to say
                return False
            if cmd.on == old.on:
                emit(log, logging.INFO, "kill_switch_unchanged", "kill switch already %s; request from %s ignored",
                     _word(old.on), cmd.source, on=cmd.on, reason=cmd.reason, source=cmd.source)
                return False
            self._state = cmd
        held_s = (cmd.ts_ns - old.ts_ns) / 1e9 if old.ts_ns else None
        emit(log, logging.WARNING, "kill_switch", "kill switch %s: %s", _word(cmd.on).upper(), cmd.reason,
             on=cmd.on, reason=cmd.reason, source=cmd.source, via=via, previous_reason=old.reason or None,
             previous_for_s=None if held_s is None else round(held_s, 3))
        self._set_gauge()
        return True

    def merge(self, cmd: KillSwitchCommand) -> bool:
        """Adopt ``cmd`` (a record of the state topic) when it is newer than the current state."""
        if cmd.ts_ns <= self._state.ts_ns:
            return False
        if cmd.on == self._state.on:
            with self._lock:
                self._state = cmd  # same position, newer record: keep its reason and time
            return False
        return self.set(cmd, via="restored from the state topic")

    def apply(self, engine: Engine) -> bool:
        """Put the switch into ``engine`` (call it on the engine thread); returns the value set."""
        engine.kill_switch = self._state.on
        return engine.kill_switch

    def command(self, on: bool, reason: str, source: str) -> KillSwitchCommand:
        """A command stamped with this switch's clock."""
        return KillSwitchCommand(bool(on), reason, source, self._clock())

    def record(self) -> bytes:
        """The ``kill_switch.v1`` value kept under :data:`KILL_SWITCH_KEY` in the state topic."""
        s = self._state
        msg = codec.build(KillSwitchMsg, on=s.on, reason=s.reason or ("on" if s.on else "off"),
                          ts_event=s.ts_ns, source=s.source.strip()[:256] or None)
        return codec.encode(msg)

    def _set_gauge(self) -> None:
        if self._gauge is not None:
            self._gauge.set(1 if self._state.on else 0)


def parse_record(value: dict[str, Any] | bytes) -> KillSwitchCommand | None:
    """The command of a state-topic kill-switch record (None, logged, when it is not a valid one)."""
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    try:
        msg = codec.decode_as(raw, KillSwitchMsg)
    except DataError as exc:
        log.error("ignoring the kill-switch record of the state topic: %s", exc)
        return None
    return KillSwitchCommand(msg.on, msg.reason, msg.source or "state topic", msg.ts_event or 0)


def _word(on: bool) -> str:
    return "on" if on else "off"
