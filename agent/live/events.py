"""Structured log lines: one line per operational event, with its fields.

:func:`emit` logs a record whose ``event`` attribute names the event and
whose ``fields`` attribute holds its data as a dict (numbers, strings, None).
The formatters of :mod:`agent.app.logs` print the fields as ``key=value``
after the message (``log.format = "text"``) or as top-level keys of one JSON
object per line (``log.format = "json"``); either way no JSON is embedded in a
text message.

Events (``event`` value: where it is logged):

==========================  ==============================================================
``parent_accepted``         a parent order reached the engine (:mod:`agent.live.operations`)
``parent_cancel_requested`` a ``parent_cancel.v1`` for a known parent
``parent_completed`` ...    ``parent_completed``, ``parent_cancelled``, ``parent_expired``:
                            the parent ended, with ``filled`` and ``unfilled`` shares
``parent_dropped``          an ended parent left the engine after its retention
``child_sent``              a child order was acknowledged by the broker
``dead_letter``             a message went to a dead-letter topic (rate-limited per reason)
``kill_switch``             the kill switch flipped (:mod:`agent.live.kill_switch`)
``restore``                 a parent restored from the state topic (:mod:`agent.live.ownership`)
``rebalance``               partitions assigned: records read, parents restored and dropped
``kafka_outage``            the Kafka client's connection errors started / stopped
``decode_worker``           the market-data decode worker is ready / failed (:mod:`agent.live.book_decoder`)
``log_suppressed``          how many lines of one key a :class:`RateLimitedLog` held back
==========================  ==============================================================

:class:`RateLimitedLog` turns a storm of the same event into a few lines and
one count: at most ``lines`` records per key (e.g. a dead-letter reason) in each
window of ``interval_s`` seconds; the rest are counted, and when the window
ends one ``log_suppressed`` line says how many were held back.
:meth:`RateLimitedLog.flush` closes windows that have ended even when no further
record of that key comes (the service's housekeeping task calls it), so the
count of the last burst is never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.live.settings import LogSection


def emit(logger: logging.Logger, level: int, event: str, message: str, /, *args: Any, **fields: Any) -> None:
    """Log ``message % args`` with ``event`` and ``fields`` attached (see the module docstring)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, *args, extra={"event": event, "fields": fields})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The event fields of a record (empty for an ordinary log line)."""
    f = getattr(record, "fields", None)
    return f if isinstance(f, dict) else {}


@dataclass(slots=True)
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """At most ``lines`` log records per key and window (see the module docstring).

    Parameters
    ----------
    logger : where the records (and the suppression lines) go.
    lines : records let through per key and window (0 = only the suppression counts).
    interval_s : window length.
    clock : monotonic seconds (injectable for tests).
    """

    def __init__(self, logger: logging.Logger, *, lines: int = 10, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.lines, self.interval_s, self.clock = logger, lines, interval_s, clock
        self._windows: dict[str, _Window] = {}
        self.suppressed_total = 0

    @classmethod
    def from_settings(cls, s: LogSection, logger: str = "agent.live.intake") -> RateLimitedLog:
        """The dead-letter log of ``[log]``: ``dead_letter_lines`` per ``rate_limit_interval_s``."""
        return cls(logging.getLogger(logger), lines=s.dead_letter_lines, interval_s=s.rate_limit_interval_s)

    def emit(self, key: str, level: int, event: str, message: str, /, *args: Any, **fields: Any) -> bool:
        """Log like :func:`agent.live.events.emit` unless ``key`` used up its window; True when logged."""
        now = self.clock()
        w = self._windows.get(key)
        if w is None or now - w.start >= self.interval_s:
            if w is not None:
                self._close(key, w, now)
            w = self._windows[key] = _Window(now)
        if w.passed < self.lines:
            w.passed += 1
            emit(self.logger, level, event, message, *args, **fields)
            return True
        w.suppressed += 1
        self.suppressed_total += 1
        return False

    def flush(self) -> None:
        """Report the suppressed counts of every window that has ended, and forget those windows."""
        now = self.clock()
        for key, w in list(self._windows.items()):
            if now - w.start >= self.interval_s:
                self._close(key, w, now)
                del self._windows[key]

    def _close(self, key: str, w: _Window, now: float) -> None:
        if w.suppressed:
            emit(self.logger, logging.WARNING, "log_suppressed", "%d more %r log lines suppressed in %.0f s",
                 w.suppressed, key, now - w.start, key=key, suppressed=w.suppressed,
                 window_s=round(now - w.start, 3))
