"""Reconnecting without hammering the broker or the log: jittered exponential backoff, quiet repeats.

- :class:`Backoff`: the wait before the n-th consecutive retry is
  ``min(cap, base * 2**n)``, of which the second half is random ("equal
  jitter"): never below half the step, so a fleet of agents restarted by the
  same outage spreads out instead of reconnecting in lock-step.
- :class:`QuietRepeats`: a ``logging.Filter`` for third-party loggers (aiokafka
  logs every failed connection attempt at ERROR): the first record of each
  message template per logger passes, repeats within ``window_s`` are dropped
  and counted; after the window the next one passes with the count appended.
  One outage thus leaves one line per distinct complaint, not one per retry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable


class Backoff:
    """Equal-jitter exponential backoff (see the module docstring).

    Parameters
    ----------
    base_s : the first step.
    cap_s : the largest step.
    rng : random source (seeded in tests).
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 15.0, rng: random.Random | None = None) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {base_s}, {cap_s}")
        self.base_s, self.cap_s = base_s, cap_s
        self.rng = rng or random.Random()
        self.attempt = 0

    def step(self) -> float:
        """The un-jittered step of the next wait: ``min(cap, base * 2**attempt)``."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 60))

    def next(self) -> float:
        """The next wait in seconds (in ``[step/2, step]``); advances the attempt count."""
        d = self.step()
        self.attempt += 1
        return d / 2 + self.rng.uniform(0.0, d / 2)

    def reset(self) -> None:
        self.attempt = 0


class QuietRepeats(logging.Filter):
    """Drop repeats of a message template from loggers under ``prefixes`` (see the module docstring).

    Parameters
    ----------
    prefixes : logger name prefixes this applies to (others pass untouched).
    window_s : repeats within this many seconds of the last passed record are dropped.
    clock : monotonic seconds (injected in tests).
    """

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes, self.window_s, self.clock = prefixes, window_s, clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # (logger, template) -> (passed at, dropped)
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes) or record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._last[key] = (last[0], last[1] + 1)
            self.dropped += 1
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} [{last[1]} similar message(s) in the last {now - last[0]:.0f} s not shown]"
        self._last[key] = (now, 0)
        return True


def install_quiet_repeats(flt: QuietRepeats, logger: logging.Logger | None = None) -> QuietRepeats:
    """Attach ``flt`` to every handler of ``logger`` (root by default; child loggers' records are
    filtered where they are written) unless it is already there; returns it."""
    target = logger or logging.getLogger()
    for h in target.handlers:
        if flt not in h.filters:
            h.addFilter(flt)
    return flt
