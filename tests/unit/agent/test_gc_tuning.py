"""``agent.app.gc_tuning``: what ``mpc-agent run`` does to the garbage collector (in a child process:
freezing pytest's own heap would change every later test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import gc, json
from agent.app.gc_tuning import tune_gc
before = gc.get_threshold()
first = tune_gc()
frozen = gc.get_freeze_count()
second = tune_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(), "first": first, "frozen": frozen,
                  "second": second, "frozen_after_second": gc.get_freeze_count()}))
"""


def test_tune_gc_freezes_the_heap_once_per_process_and_leaves_the_thresholds() -> None:
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         check=True)
    got = json.loads(res.stdout)
    assert got["first"] == got["frozen"] > 1000  # the imports at least
    assert got["second"] is None and got["frozen_after_second"] == got["frozen"]  # a rebuilt service: nothing
    assert got["after"] == got["before"]
