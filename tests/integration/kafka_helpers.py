"""Helpers shared by the integration tests against a real broker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiokafka
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from feeds.kafka import KafkaConnection, KafkaSink
from feeds.ports import OutRecord, Record, Source, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"


class PrivateBroker:
    """A broker owned by one test (own cache dir; jars shared with the session broker when present);
    the ``private_broker`` fixture (``tests/integration/conftest.py``) starts and stops one."""

    def __init__(self, base: Path) -> None:
        self.env = dict(os.environ, KAFKA_LOCAL_DIR=str(base))
        shared = ROOT / ".kafka-local" / "lib"
        jars = sorted(shared.glob("kafka_*")) if shared.exists() else []
        if jars and (jars[-1] / ".complete").exists():
            self.env["KAFKA_LOCAL_LIB"] = str(jars[-1])

    def run(self, cmd: str, timeout_s: float = 300) -> str:
        res = subprocess.run([str(KAFKA_LOCAL), cmd], env=self.env, capture_output=True, text=True,
                             timeout=timeout_s, check=False)
        if res.returncode != 0:
            pytest.fail(f"scripts/kafka-local {cmd} failed: {res.stderr[-2000:]}", pytrace=False)
        return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publish_values(bootstrap: str, topic: str, values: list[bytes | None], key: bytes = b"FROG") -> None:
    """Raw values onto ``topic`` (hostile ones included: no codec in the way)."""
    async with KafkaSink(bootstrap) as sink:
        for i in range(0, len(values), 2000):
            await sink.send_many([OutRecord(topic, v, key=key) for v in values[i:i + 2000]])


async def caught_up(bootstrap: str, group: str, topics: list[str], timeout_s: float) -> float:
    """Seconds until the group's committed offsets reach the end offsets of ``topics`` (partition 0)."""
    t0 = time.monotonic()
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    got: Any = {}
    try:
        tps = [aiokafka.TopicPartition(t, 0) for t in topics]
        ends = await consumer.end_offsets(tps)
        while time.monotonic() - t0 < timeout_s:
            got = await admin.list_consumer_group_offsets(group)
            if all(tp in got and got[tp].offset >= ends[tp] for tp in tps):
                return time.monotonic() - t0
            await asyncio.sleep(0.25)
        raise AssertionError(f"agent stalled: committed {got} < end offsets {ends} after {timeout_s} s")
    finally:
        await consumer.stop()
        await admin.close()


async def consume(source: Source, n: int, timeout_s: float = 45.0) -> list[Record]:
    """Read until ``n`` records arrived (or the timeout); returns what was read."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for recs in (await source.getmany(timeout_ms=200)).values():
            out.extend(recs)
    return out


async def drain(source: Source, quiet_s: float = 1.5) -> list[Record]:
    """Read until nothing arrives for ``quiet_s`` seconds."""
    out: list[Record] = []
    while True:
        got = await source.getmany(timeout_ms=int(quiet_s * 1000))
        if not got:
            return out
        for recs in got.values():
            out.extend(recs)
        await asyncio.sleep(0)


async def committed_eventually(
    source: Source, tp: TopicPartition, expected: int | None, timeout_s: float = 10.0
) -> int | None:
    """The group's committed offset of ``tp``, polled until it equals ``expected`` or the timeout.

    A transaction's offsets become visible once the coordinator has written the
    commit markers, which happens just *after* ``commit_transaction`` returns.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        got = await source.committed(tp)
        if got == expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def read_topic(conn: KafkaConnection | str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every committed record of ``topic`` (``read_committed``), up to the end offsets taken at the start:
    the one way the tests read a topic to its end."""
    if isinstance(conn, str):
        conn = KafkaConnection(bootstrap_servers=conn)
    consumer = aiokafka.AIOKafkaConsumer(**conn.client_kwargs(), group_id=None, isolation_level="read_committed",
                                         auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Record] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            if time.monotonic() > deadline:
                raise TimeoutError(topic)
        tps = [aiokafka.TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if end[tp] > 0}
        while todo and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(*todo, timeout_ms=200)).items():
                out.extend(Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()),
                                  m.timestamp) for m in msgs if m.offset < end[tp])
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
        if todo:
            raise TimeoutError(f"{topic} not read to its end")
    finally:
        await consumer.stop()
    return out
