"""Reconnect backoff (jittered, capped, reset) and the filter that keeps one line per complaint and outage."""

from __future__ import annotations

import logging
import random

import pytest

from agent.live.backoff import Backoff, QuietRepeats, install_quiet_repeats


def test_backoff_doubles_to_the_cap_with_equal_jitter() -> None:
    b = Backoff(0.5, 15.0, rng=random.Random(1))
    waits = [b.next() for _ in range(10)]
    steps = [min(15.0, 0.5 * 2**i) for i in range(10)]
    for w, s in zip(waits, steps, strict=True):
        assert s / 2 <= w <= s
    assert max(waits) <= 15.0
    assert waits[-1] >= 7.5  # capped, never below half the cap


def test_backoff_jitter_spreads_agents_restarted_by_one_outage() -> None:
    fleet = [Backoff(0.5, 15.0, rng=random.Random(seed)) for seed in range(20)]
    for b in fleet:
        for _ in range(4):
            b.next()
    fifth = [b.next() for b in fleet]  # step 8 s: waits in [4, 8]
    assert len({round(w, 3) for w in fifth}) == 20
    assert max(fifth) - min(fifth) > 1.0


def test_backoff_reset_starts_over() -> None:
    b = Backoff(0.5, 15.0, rng=random.Random(2))
    for _ in range(6):
        b.next()
    b.reset()
    assert b.next() <= 0.5


def test_backoff_refuses_a_cap_below_the_base() -> None:
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_quiet_repeats_passes_each_complaint_once_per_window_then_counts() -> None:
    clock = Clock()
    f = QuietRepeats(("aiokafka",), window_s=60.0, clock=clock)
    passed = []
    for i in range(120):  # one failed connect every 0.5 s for a minute
        clock.t = i * 0.5
        r = record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
        if f.filter(r):
            passed.append(r.getMessage())
    assert passed == ["Unable connect to node with id 1: refused"]
    assert f.dropped == 119
    clock.t = 61.0
    r = record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
    assert f.filter(r)
    assert "119 similar message(s)" in r.getMessage()


def test_quiet_repeats_leaves_other_loggers_other_templates_and_info_alone() -> None:
    f = QuietRepeats(("aiokafka",), clock=Clock())
    assert all(f.filter(record("agent.live.delivery", "abort failed")) for _ in range(5))
    assert all(f.filter(record("aiokafka.client", "x", level=logging.INFO)) for _ in range(5))
    assert f.filter(record("aiokafka.client", "one complaint"))
    assert f.filter(record("aiokafka.client", "another complaint"))
    assert f.filter(record("aiokafka.conn", "one complaint"))  # per logger
    assert not f.filter(record("aiokafka.client", "one complaint"))


def test_install_quiet_repeats_attaches_once_per_handler() -> None:
    logger = logging.getLogger("test.backoff.quiet")
    h = logging.Handler()
    logger.addHandler(h)
    try:
        f = QuietRepeats()
        install_quiet_repeats(f, logger)
        install_quiet_repeats(f, logger)
        assert h.filters == [f]
    finally:
        logger.removeHandler(h)
