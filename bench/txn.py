"""What a Kafka transaction costs on this broker, by records per transaction: how to batch.

The exactly-once service makes one transaction per step: the step's child
orders, its state records (a parent's ~0.5 kB record per parent that changed,
a symbol's ~70 kB market record at most every 10 s) and the consumed offsets.
This measures, for ``k`` child-order-sized records (~450 bytes) per
transaction, the parts of one transaction (``begin``, ``send`` = the records
and their acks, ``offsets`` = ``send_offsets_to_transaction``, ``commit``)
next to the same ``k`` records sent by the plain idempotent producer, all in
one run on the same broker, and the same transactions through librdkafka
(``confluent_kafka``, client ``librdkafka``; its ``send`` only queues: its
``commit`` waits for the records). The fixed part (offsets + commit) is what
batching several parents' children into one transaction saves ``k - 1`` times.

Each size runs twice, transactions back to back as the service makes them:
with aiokafka's own 20 ms wait before retrying a transaction the broker refuses
while the previous one's markers are still written (``backoff_ms`` 20,
KAFKA-5477), and with the service's ``kafka.concurrent_txn_backoff_ms``
(default 2 ms, :func:`feeds.kafka.set_concurrent_txn_backoff`);
``vs_aiokafka_backoff`` is the ratio of their p50 totals.

Usage: ``.venv/bin/python bench/txn.py [--bootstrap H:P] [--transactions 60] [--json bench/out/txn.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

AIOKAFKA_BACKOFF_MS = 20.0  # aiokafka.producer.sender.BACKOFF_OVERRIDE as shipped

RECORD = b'{"schema":"child_order.v1","child_order_id":"P-0001:17","parent_id":"P-0001","symbol":"S00",' + \
    b'"side":"buy","quantity":100.0,"limit_price":10.03,"period_index":17,' + b'"x":"' + b"0" * 250 + b'"}'


async def measure(conn: Any, k: int, n: int, backoff_ms: float) -> dict[str, Any]:
    """``n`` transactions of ``k`` records (and offsets), then ``n`` plain sends of ``k`` records."""
    from feeds.kafka import KafkaSink, create_topics
    from feeds.ports import OutRecord, TopicPartition

    tag = uuid.uuid4().hex[:6]
    topic, consumed = f"bench.txn.{tag}", f"bench.txn.in.{tag}"
    await create_topics(conn, [topic, consumed])
    recs = [OutRecord(topic, RECORD, key=f"P-{i:04d}".encode()) for i in range(k)]
    parts: dict[str, list[float]] = {"begin": [], "send": [], "offsets": [], "commit": [], "total": []}
    async with KafkaSink(conn, transactional_id=f"bench-txn-{tag}", concurrent_txn_backoff_ms=backoff_ms) as sink:
        for i in range(n + 3):  # the first few warm up (coordinator lookup, first partition adds)
            t0 = time.perf_counter()
            await sink.begin()
            t1 = time.perf_counter()
            await sink.send_many(recs)
            t2 = time.perf_counter()
            await sink.send_offsets({TopicPartition(consumed, 0): i + 1}, f"bench-txn-group-{tag}")
            t3 = time.perf_counter()
            await sink.commit()
            t4 = time.perf_counter()
            if i >= 3:
                for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                    parts[name].append(dt * 1e3)
    plain: list[float] = []
    async with KafkaSink(conn) as sink:
        for i in range(n + 3):
            t0 = time.perf_counter()
            await sink.send_many(recs)
            if i >= 3:
                plain.append((time.perf_counter() - t0) * 1e3)
    row: dict[str, Any] = {"records": k, "client": "aiokafka", "backoff_ms": backoff_ms}
    for name, v in parts.items():
        row[f"{name}_ms_p50"] = float(np.percentile(v, 50))
        row[f"{name}_ms_p99"] = float(np.percentile(v, 99))
    row["plain_ms_p50"], row["plain_ms_p99"] = float(np.percentile(plain, 50)), float(np.percentile(plain, 99))
    row["txn_ms_per_record"] = row["total_ms_p50"] / k
    row["txn_vs_plain"] = row["total_ms_p50"] / row["plain_ms_p50"]
    return row


def measure_librdkafka(bootstrap_servers: str, k: int, n: int) -> dict[str, Any]:
    """The same transactions (``k`` records and the offsets) through librdkafka (``confluent_kafka``),
    blocking calls, from a thread as an asyncio service would make them: what the C client would
    give the service's hot path (it does not use it; see the README's live-path section)."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    tag = uuid.uuid4().hex[:6]
    topic, consumed, group = f"bench.txn.rd.{tag}", f"bench.txn.rd.in.{tag}", f"bench-txn-rd-group-{tag}"
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in (topic, consumed)]).values():
        fut.result()
    prod = Producer({"bootstrap.servers": bootstrap_servers, "transactional.id": f"bench-txn-rd-{tag}",
                     "linger.ms": 0, "enable.idempotence": True, "retry.backoff.ms": 2})
    cons = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    meta = cons.consumer_group_metadata()
    prod.init_transactions(30)
    parts: dict[str, list[float]] = {"begin": [], "send": [], "offsets": [], "commit": [], "total": []}
    try:
        for i in range(n + 3):
            t0 = time.perf_counter()
            prod.begin_transaction()
            t1 = time.perf_counter()
            for j in range(k):
                prod.produce(topic, RECORD, key=f"P-{j:04d}".encode())
            prod.poll(0)  # queued, not awaited: commit_transaction flushes them (as a service would leave it)
            t2 = time.perf_counter()
            prod.send_offsets_to_transaction([TopicPartition(consumed, 0, i + 1)], meta, 10)
            t3 = time.perf_counter()
            prod.commit_transaction(10)
            t4 = time.perf_counter()
            if i >= 3:
                for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                    parts[name].append(dt * 1e3)
    finally:
        cons.close()
    row: dict[str, Any] = {"records": k, "client": "librdkafka"}
    for name, v in parts.items():
        row[f"{name}_ms_p50"] = float(np.percentile(v, 50))
        row[f"{name}_ms_p99"] = float(np.percentile(v, 99))
    row["txn_ms_per_record"] = row["total_ms_p50"] / k
    return row


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from feeds.kafka import CONCURRENT_TXN_BACKOFF_MS, KafkaConnection

    conn = KafkaConnection(bootstrap_servers=bootstrap(args.bootstrap), client_id="bench-txn")
    rows = []
    for k in (1, 5, 20, 100):
        base = await measure(conn, k, args.transactions, AIOKAFKA_BACKOFF_MS)
        ours = await measure(conn, k, args.transactions, CONCURRENT_TXN_BACKOFF_MS)
        ours["vs_aiokafka_backoff"] = ours["total_ms_p50"] / base["total_ms_p50"]
        rd = await asyncio.to_thread(measure_librdkafka, conn.bootstrap_servers, k, args.transactions)
        rd["vs_ours"] = rd["total_ms_p50"] / ours["total_ms_p50"]
        rows += [base, ours, rd]
    return {"rows": rows, "load_average": os.getloadavg(), "transactions": args.transactions}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--transactions", type=int, default=60)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "txn.json"))
    args = ap.parse_args()
    try:
        res = asyncio.run(main_async(args))
    finally:
        release_lease()
    print_table(res["rows"], ["records", "client", "backoff_ms", "begin_ms_p50", "send_ms_p50", "offsets_ms_p50", "commit_ms_p50",
                              "total_ms_p50", "total_ms_p99", "plain_ms_p50", "plain_ms_p99", "txn_ms_per_record",
                              "txn_vs_plain", "vs_aiokafka_backoff", "vs_ours"])
    la = res["load_average"]
    print(f"load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}")
    res["environment"] = environment()
    print(f"wrote {write_json(args.json, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
