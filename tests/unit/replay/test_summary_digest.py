"""Pinned results: a change that moves what the replay decides or fills must update this on purpose.

The digest covers every strategy's child orders (period, quantity, limit price) and fills
(quantity, price) on a seeded generated book, rounded to 1e-6 so that only real changes count
(solve times and float noise below a micro-dollar do not). When a change is *meant* to move
results (a model, the simulator, rounding), update ``PINNED`` in the same commit and say by how
much the TCA moved in the commit message.
"""

from __future__ import annotations

import hashlib
import json

from replay.runner import replay
from tests.unit.replay.test_runner import T0, _book, _spec

MIN = 60 * 10**9
PINNED = "92b07e62fb8b0e70"


def _digest() -> str:
    result = replay(_book(), _spec(), starts=3, session=(T0, T0 + 90 * MIN))
    rows = []
    for w in result.windows:
        for name, run in sorted(w.runs.items()):
            rows.append([name, w.start_ns,
                         [[c.period_index, round(c.quantity, 6), round(c.limit_price, 6)] for c in run.children],
                         [[round(f.quantity, 6), round(f.price, 6)] for f in run.fills]])
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def test_replay_results_are_pinned() -> None:
    got = _digest()
    assert got == PINNED, (f"replay results moved (digest {got}, pinned {PINNED}); if that is intended, "
                           "update PINNED and report the TCA change")
