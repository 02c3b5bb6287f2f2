"""Logging of the ``mpc-agent`` process: one handler on stderr, text or JSON lines, quiet Kafka outages.

:func:`configure_logging` is called once by the CLI with the ``[log]`` section
(``log.format``, ``log.level``; ``-v``/``-vv`` lower the level to INFO/DEBUG):

- ``text``: ``2025-04-03T13:30:00.123Z INFO agent.live.operations: parent P1 accepted: ...``
  followed by the event fields as ``key=value`` (values with blanks quoted);
- ``json``: one object per line, ``{"ts", "level", "logger", "message", "event", <fields>...}``
  (and ``exc`` with the traceback), so a log shipper needs no parsing rules.

Filters on the handler: :class:`agent.app.log_redact.RedactSecrets` (secrets
never reach the output) and :class:`KafkaOutageFilter`: aiokafka logs an
error for every reconnect attempt while a broker is unreachable (454 lines in
a 29 s outage); the filter lets the first through, counts the others, and
once none has come for ``log.kafka_quiet_s`` writes one line with the
outage's duration and the number suppressed (event ``kafka_outage``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any

from agent.app.log_redact import RedactSecrets
from agent.live.events import emit, fields_of
from agent.live.settings import LogSection

_BASE_KEYS = ("ts", "level", "logger", "message", "event", "exc")


def _ts(record: logging.LogRecord) -> str:
    t = datetime.fromtimestamp(record.created, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _plain(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return json.dumps(text) if (not text or any(c in text for c in ' ="\n')) else text


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message> key=value ...`` (event fields after the message)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_ts(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = fields_of(record)
        if fields:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items() if v is not None)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring); field names never shadow the base keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _ts(record), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        event = getattr(record, "event", None)
        if event:
            out["event"] = event
        for k, v in fields_of(record).items():
            out[f"field_{k}" if k in _BASE_KEYS else k] = v
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


_NOISE = ("connect", "connection", "metadata", "coordinator", "node", "broker", "timeout", "timed out",
          "heartbeat", "fetch", "not available", "unable", "disconnect", "refused", "reset")


class KafkaOutageFilter(logging.Filter):
    """One line at the start and one at the end of a Kafka client outage (see the module docstring).

    Parameters
    ----------
    quiet_s : the outage ends after this long without a connection error.
    clock : monotonic seconds.
    """

    def __init__(self, quiet_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.quiet_s, self.clock = quiet_s, clock
        self.log = logging.getLogger("agent.app.kafka")
        self.since: float | None = None
        self.last = 0.0
        self.suppressed = 0
        self.outages = 0
        self._timer: asyncio.TimerHandle | None = None

    @staticmethod
    def is_noise(record: logging.LogRecord) -> bool:
        """An aiokafka warning or error about reaching the cluster."""
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return False
        try:
            text = record.getMessage().lower()
        except Exception:
            return False
        return any(w in text for w in _NOISE)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_noise(record):
            return True
        now = self.clock()
        if self.since is not None and now - self.last >= self.quiet_s:
            self.close(now)  # no loop timer closed it (no running loop): close it now
        self.last = now
        self._schedule()
        if self.since is None:
            self.since, self.suppressed = now, 0
            self.outages += 1
            record.msg, record.args = (f"{record.getMessage()} [Kafka client connection errors: the next ones are "
                                       f"counted until none comes for {self.quiet_s:g} s]"), None
            record.event = "kafka_outage"
            record.fields = {"phase": "start"}
            return True
        self.suppressed += 1
        return False

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(self.quiet_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        if self.since is not None and now - self.last >= self.quiet_s * 0.99:
            self.close(now)
        elif self.since is not None:
            self._schedule()

    def close(self, now: float | None = None) -> None:
        """End the current outage with its summary line (no-op when there is none)."""
        if self.since is None:
            return
        duration = self.last - self.since
        emit(self.log, logging.WARNING, "kafka_outage",
             "Kafka client connection errors stopped: outage of %.1f s, %d further error line(s) suppressed",
             duration, self.suppressed, phase="end", duration_s=round(duration, 3), suppressed=self.suppressed)
        self.since = None


def configure_logging(section: LogSection, *, verbose: int = 0, secrets: Iterable[str] = (),
                      stream: IO[str] | None = None) -> logging.Handler:
    """Install the process's log handler on stderr (replacing a previous plain one); returns it."""
    level = getattr(logging, section.level)
    if verbose:
        level = min(level, logging.DEBUG if verbose >= 2 else logging.INFO)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if section.format == "json" else TextFormatter())
    handler.addFilter(KafkaOutageFilter(section.kafka_quiet_s))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for h in list(root.handlers):  # plain stderr handlers (ours, basicConfig's), not a test runner's capture
        if type(h) is logging.StreamHandler:
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
