"""What producing a step's records costs the event loop: ``KafkaSink.send_many`` against one ``send`` a record.

A step of the exactly-once service sends, per partition transaction, its
child orders and state records (~0.5 kB each, keyed by parent; ~2 per decision
at 1,000 decisions a second). In CPython that work holds the GIL the engine
thread also needs, so it is measured as CPU time of this process, per record,
next to the wall time:

- ``send_many``: :meth:`feeds.kafka.KafkaSink.send_many` (one aiokafka batch
  per partition, ``create_batch`` / ``send_batch``);
- ``send_each`` (baseline, the same run): one ``producer.send`` a record, then
  all the acks: what ``send_many`` did before.

Both inside a transaction (begin, records, commit) on a 4-partition topic, the
sizes alternating and each way first in turn, ``--repeat`` times each after a warm-up;
``cpu_vs_send_each`` is the ratio of the p50 CPU per record.

Usage: ``.venv/bin/python bench/send_many.py [--bootstrap H:P] [--repeat 15] [--json bench/out/send_many.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, print_table, write_json  # noqa: E402
from bench.live_io import bootstrap, release_lease  # noqa: E402
from bench.txn import RECORD  # noqa: E402


async def send_each(sink: Any, records: list[Any]) -> None:
    """The baseline: one ``producer.send`` a record, then every ack."""
    futures = [await sink.producer.send(r.topic, r.value, key=r.key, headers=list(r.headers) or None)
               for r in records]
    await asyncio.gather(*futures)


async def measure(conn: Any, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    from feeds.kafka import KafkaSink, create_topics
    from feeds.ports import OutRecord

    tag = uuid.uuid4().hex[:6]
    topic = f"bench.send_many.{tag}"
    await create_topics(conn, [topic], partitions=4)
    header = (("mpc.agent_id", b"bench"),)
    ways = {"send_many": lambda sink, recs: sink.send_many(recs), "send_each": send_each}
    samples: dict[tuple[int, str], list[tuple[float, float]]] = {(k, w): [] for k in sizes for w in ways}
    async with KafkaSink(conn, transactional_id=f"bench-send-many-{tag}") as sink:
        for i in range(repeat + 2):  # the first two warm up
            for k in sizes:
                recs = [OutRecord(topic, RECORD, key=f"P-{j:04d}".encode(), headers=header) for j in range(k)]
                for way, fn in (list(ways.items()) if i % 2 else list(ways.items())[::-1]):  # either first, in turn
                    await sink.begin()
                    c0, t0 = time.process_time(), time.perf_counter()
                    await fn(sink, recs)
                    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                    await sink.commit()
                    if i >= 2:
                        samples[(k, way)].append((cpu, wall))
    rows = []
    for (k, way), v in samples.items():
        cpu = np.array([c for c, _ in v]) * 1e6 / k
        wall = np.array([w for _, w in v]) * 1e3
        rows.append({"records": k, "way": way, "cpu_us_per_record_p50": float(np.median(cpu)),
                     "wall_ms_p50": float(np.median(wall)), "wall_ms_p99": float(np.percentile(wall, 99))})
    base = {r["records"]: r["cpu_us_per_record_p50"] for r in rows if r["way"] == "send_each"}
    for r in rows:
        r["cpu_vs_send_each"] = r["cpu_us_per_record_p50"] / base[r["records"]]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "send_many.json"))
    args = ap.parse_args()
    from feeds.kafka import KafkaConnection

    try:
        conn = KafkaConnection(bootstrap_servers=bootstrap(args.bootstrap), client_id="bench-send-many")
        rows = asyncio.run(measure(conn, [1, 4, 8, 20, 200, 2000], args.repeat))
    finally:
        release_lease()
    print_table(rows, ["records", "way", "cpu_us_per_record_p50", "cpu_vs_send_each", "wall_ms_p50", "wall_ms_p99"])
    print(f"wrote {write_json(args.json, {'rows': rows, 'environment': environment()})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
