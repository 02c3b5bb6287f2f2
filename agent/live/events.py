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
==========================  ==============================================================
"""

from __future__ import annotations

import logging
from typing import Any


def emit(logger: logging.Logger, level: int, event: str, message: str, /, *args: Any, **fields: Any) -> None:
    """Log ``message % args`` with ``event`` and ``fields`` attached (see the module docstring)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, *args, extra={"event": event, "fields": fields})


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The event fields of a record (empty for an ordinary log line)."""
    f = getattr(record, "fields", None)
    return f if isinstance(f, dict) else {}
