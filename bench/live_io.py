"""Outside clients for the live benchmarks: a paced publisher and a ``read_committed`` child-order consumer.

Both run in processes of their own (as in a deployment: the agent shares no
interpreter, and so no GIL, with them):

- ``python bench/live_io.py consume --topic T --out F.json ...``: a
  confluent-kafka consumer (librdkafka: another client than the agent's
  aiokafka) with ``isolation.level=read_committed``: a child order counts as
  sent when this consumer sees it, i.e. after the agent's transaction commits.
  It prints ``ready`` once assigned and writes, per child order, its id, symbol,
  ``ts_event``, ``ts_init`` (when the agent decided) and the wall time (ns) it arrived.
- :func:`produce`: send records all at once or paced in event time,
  stamping the wall time (ns) each record was handed to the producer.

:class:`ChildWatcher` runs the consumer from a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NS = 1_000_000_000


def bootstrap(arg: str | None) -> str:
    """``--bootstrap``, else ``KAFKA_BOOTSTRAP_SERVERS``, else a ``scripts/kafka-local`` broker (with a lease)."""
    if arg:
        return arg
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        return env
    lease = Path(os.environ.get("KAFKA_LOCAL_DIR", ROOT / ".kafka-local")) / "leases" / str(os.getpid())
    lease.parent.mkdir(parents=True, exist_ok=True)
    lease.touch()
    out = subprocess.run([str(ROOT / "scripts" / "kafka-local"), "start"], capture_output=True, text=True,
                         check=True, timeout=900)
    return out.stdout.strip().splitlines()[-1]


def release_lease() -> None:
    lease = Path(os.environ.get("KAFKA_LOCAL_DIR", ROOT / ".kafka-local")) / "leases" / str(os.getpid())
    lease.unlink(missing_ok=True)


async def produce(conn: Any, topic: str, msgs: list[tuple[bytes, bytes]], ts: np.ndarray | None = None,
                  speed_x: float = 0.0, stamps: np.ndarray | None = None) -> float:
    """Send ``msgs`` (key, value): all at once, or paced in event time ``ts`` at ``speed_x`` times real
    time; ``stamps[i]`` gets the wall time (ns) message ``i`` was handed to the producer. Returns wall s."""
    from feeds.kafka import KafkaSink
    from feeds.ports import OutRecord

    t0 = time.perf_counter()
    async with KafkaSink(conn, linger_ms=0 if speed_x > 0 else 5) as sink:
        i, n = 0, len(msgs)
        while i < n:
            if speed_x > 0 and ts is not None:
                due = ts[0] + (time.perf_counter() - t0) * speed_x * NS
                j = int(np.searchsorted(ts, due, side="right"))
                if j <= i:
                    await asyncio.sleep(min(0.005, (ts[i] - due) / NS / speed_x))
                    continue
            else:
                j = min(n, i + 2000)
            if stamps is not None:
                stamps[i:j] = time.time_ns()
            await sink.send_many([OutRecord(topic, v, key=k) for k, v in msgs[i:j]])
            i = j
    return time.perf_counter() - t0


class ChildWatcher:
    """The outside ``read_committed`` consumer of child orders, in its own process (module docstring)."""

    def __init__(self, bootstrap_servers: str, topic: str, out: Path) -> None:
        self.bootstrap, self.topic, self.out = bootstrap_servers, topic, out
        self.stop_file = out.with_suffix(".stop")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "consume", "--bootstrap", self.bootstrap, "--topic", self.topic,
            "--out", str(self.out), "--stop-file", str(self.stop_file), stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"child-order consumer did not start: {line!r}")

    async def finish(self, linger_s: float = 1.0) -> list[dict[str, Any]]:
        """Let the consumer read for ``linger_s`` more, stop it, return what it saw."""
        await asyncio.sleep(linger_s)
        self.stop_file.touch()
        if self.proc is not None:
            await asyncio.wait_for(self.proc.wait(), 60)
        self.stop_file.unlink(missing_ok=True)
        seen: list[dict[str, Any]] = json.loads(self.out.read_text())
        return seen


def consume(bootstrap_servers: str, topic: str, out: str, stop_file: str, max_s: float = 3600.0) -> int:
    """The consumer process: read ``topic`` read_committed until ``stop_file`` exists; write what arrived."""
    from confluent_kafka import Consumer

    ready: list[bool] = []
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5, "fetch.min.bytes": 1})
    consumer.subscribe([topic], on_assign=lambda c, parts: ready.append(True))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + max_s
    announced = False
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        msg = consumer.poll(0.02)
        if ready and not announced:
            print("ready", flush=True)
            announced = True
        if msg is None or msg.error():
            continue
        t = time.time_ns()
        v = json.loads(msg.value() or b"{}")
        seen.append({"child_order_id": v["child_order_id"], "symbol": v["symbol"], "ts_event": int(v["ts_event"]),
                     "ts_init": int(v["ts_init"]), "period_index": int(v["period_index"]), "received_ns": t})
    consumer.close()
    Path(out).write_text(json.dumps(seen))
    return 0


def percentiles(values: Any, prefix: str, unit: float = 1.0) -> dict[str, float]:
    """``{prefix}_p50 / _p99 / _max`` of ``values`` times ``unit`` (NaN when empty)."""
    v = np.asarray(values, dtype=np.float64) * unit
    if not v.size:
        return {f"{prefix}_p50": float("nan"), f"{prefix}_p99": float("nan"), f"{prefix}_max": float("nan")}
    return {f"{prefix}_p50": float(np.percentile(v, 50)), f"{prefix}_p99": float(np.percentile(v, 99)),
            f"{prefix}_max": float(v.max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--stop-file", required=True)
    args = ap.parse_args()
    return consume(args.bootstrap, args.topic, args.out, args.stop_file)


if __name__ == "__main__":
    raise SystemExit(main())
