"""The garbage collector of an agent process (``mpc-agent run``): the startup heap frozen.

A started agent holds ~100,000 container objects that live as long as the
process (modules, osqp, aiokafka, the built service and its restored state).
With CPython's defaults every full collection scans all of them, while the
records flowing through keep promoting young objects into the old generation:
on ``bench/live.py``'s backlog (20 symbols, exactly once) a full collection
ran every ~0.65 s and took 65-120 ms, a pause of the event loop and of the
engine thread alike (the collector holds the GIL), ~1 s of collector time in
a ~5 s run.

:func:`tune_gc` runs ``gc.freeze()`` once, when the first service has
started: what exists then is moved out of the collector's sight (objects
frozen are still freed by reference counting when released; only a reference
cycle among them would stay). Measured:

- the backlog above (two alternating pairs and a third run): full
  collections while the service runs 2-8 ms instead of 60-90 ms, collector
  time ~0.3 s instead of ~0.95 s a run; the ingest rate did not move beyond
  this machine's noise (23-28k /s either way);
- the 1,000-parent scale scenario through the engine alone
  (``bench/live_scale.py``'s ``engine_capacity``; frozen after the imports,
  six runs each way, interleaved): longest collector pause 9-13 ms instead of
  59-90 ms, collector time ~40% less; CPU per decision 625-851 us frozen,
  566-846 us not, while the machine drifted: no difference to claim.

Tried and rejected: a young generation sized for a whole step (threshold
50,000 instead of 700). The collector then almost never ran, but the engine
took 15-20% more CPU per decision in the scale scenario (two runs against
three of the defaults, same sitting).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("agent.app.gc_tuning")

_tuned = False


def tune_gc() -> int | None:
    """Collect, then freeze the current heap (see the module docstring). Once per process: later
    calls (a service rebuilt after an outage) change nothing and return None. Returns the number
    of objects frozen."""
    global _tuned
    if _tuned:
        return None
    _tuned = True
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("garbage collector: %d objects of the started agent frozen", frozen)
    return frozen
