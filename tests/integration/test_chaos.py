"""The chaos soak at reduced size (issue 13 item 5; the full run is ``python -m bench.chaos``).

Three real agent processes on a private broker, 90 s of paced books, 4
SIGKILLs, a SIGSTOP/SIGCONT past the session timeout, a 10 s broker pause and
2,000 hostile messages; every invariant of :mod:`bench.chaos_check`, checked
from the topics with confluent-kafka, must hold (0 violations).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, print_report, run

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.xdist_group("kafka_processes")]


def test_chaos_soak_reduced_nothing_lost_nothing_doubled(tmp_path: Path) -> None:
    cfg = ChaosConfig(minutes=1.5, agents=3, partitions=3, symbols=3, parents=6, kills=4, stops=1, stop_s=10.0,
                      pauses=[10.0], hostile=2000, warmup_s=20.0, seed=7, out=str(tmp_path / "chaos.json"),
                      workdir=str(tmp_path / "work"))
    rep = asyncio.run(run(cfg))
    print()
    print_report(rep)
    did = rep["did"]
    assert did["kills"] == 4 and did["stops"] == 1 and did["broker_down_s"] and did["broker_down_s"][0] >= 10
    assert did["hostile_sent"] == 2000 and did["publish_failures"] == 0
    assert rep["figures"]["child_orders"] > 0 and rep["figures"]["fills"] == rep["figures"]["child_orders"]
    assert rep["violations"] == {k: 0 for k in rep["violations"]}, rep["violations"]
    assert rep["held"]
