"""Real agent processes and a live synthetic market for the reliability tests (issue 7 items 3-5).

- :class:`AgentProcess`: ``python -m agent run --feed kafka`` as a subprocess
  (exactly-once mode, configured through ``MPC_AGENT_*`` variables), killed
  with SIGKILL or stopped with SIGTERM; its restore log lines are parsed.
- :class:`Market`: publishes a synthetic MBP-10 book with trades for some
  symbols, stamped with the wall clock (key = symbol), ``rate_hz`` rows per
  symbol per second; it keeps trying through a broker outage.
- :class:`Venue`: answers every committed child order with one full fill at its
  limit price (``fill_id = child_order_id + "/f"``, key = symbol so the fill
  reaches the agent owning the symbol).
- :func:`read_topic`: everything committed on a topic (``read_committed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiokafka

from agent.live.settings import TopicsSection
from feeds.kafka import KafkaConnection, KafkaSink
from feeds.ports import OutRecord
from feeds.wire import codec
from feeds.wire.messages import Mbp10

ROOT = Path(__file__).resolve().parents[2]


def agent_env(bootstrap: str, topics: TopicsSection, *, agent_id: str, group_id: str,
              metrics_port: int | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPC_AGENT_")}
    env.update({
        "MPC_AGENT_SERVICE__FEED": "kafka",
        "MPC_AGENT_SERVICE__POLL_TIMEOUT_MS": "20",
        "MPC_AGENT_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MPC_AGENT_KAFKA__GROUP_ID": group_id,
        "MPC_AGENT_KAFKA__AGENT_ID": agent_id,
        "MPC_AGENT_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "MPC_AGENT_KAFKA__TRANSACTION_TIMEOUT_MS": "10000",
        "MPC_AGENT_KAFKA__REQUEST_TIMEOUT_MS": "10000",
        "MPC_AGENT_HTTP__ENABLED": "false" if metrics_port is None else "true",
        "MPC_AGENT_HTTP__HOST": "127.0.0.1",
        "MPC_AGENT_HTTP__PORT": str(metrics_port or 0),
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    })
    for name in ("md", "parent_orders", "child_orders", "fills", "agent_state", "dlq"):
        env[f"MPC_AGENT_TOPICS__{name.upper()}"] = getattr(topics, name)
    env.update(extra or {})
    return env


class AgentProcess:
    """One ``python -m agent run`` subprocess (stderr to ``log_path``, appended across restarts)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "-v", "run"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL (no clean-up of any kind in the agent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def pause(self) -> None:
        """SIGSTOP: the process stalls (a "zombie" once the group's session times out)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def restores(self) -> list[dict[str, Any]]:
        """The ``{"event": "restore", ...}`` log lines, in order."""
        out = []
        for line in self.log_text().splitlines():
            i = line.find('{"agent_id"')
            if i >= 0 and '"event": "restore"' in line:
                out.append(json.loads(line[i:]))
        return out

    def assigned_count(self) -> int:
        return self.log_text().count(" parent-order partition(s) of ")

    def log_events(self, needle: str) -> list[tuple[float, str]]:
        """``(epoch seconds, line)`` of every log line containing ``needle`` (asctime is local time)."""
        out = []
        for line in self.log_text().splitlines():
            if needle in line and len(line) > 23 and line[4] == "-" and line[19] == ",":
                t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
                out.append((t, line))
        return out


def book_row(symbol: str, ts: int, k: int, mid: float) -> Mbp10:
    """One synthetic MBP-10 row: every 3rd row a 400-share trade, else a quote update."""
    bids = [round(mid - 0.01 * (i + 1), 2) for i in range(5)]
    asks = [round(mid + 0.01 * (i + 1), 2) for i in range(5)]
    trade = k % 3 == 0
    return codec.build(Mbp10, symbol=symbol, ts_event=ts, ts_recv=ts, action="T" if trade else "A",
                       side="B" if trade else "A", price=asks[0] if trade else asks[1],
                       size=400.0 if trade else 100.0, bid_px=bids, bid_sz=[500.0] * 5, ask_px=asks,
                       ask_sz=[500.0] * 5)


class Market:
    """Publishes wall-clock-stamped synthetic books for ``symbols`` until stopped."""

    def __init__(self, conn: KafkaConnection, topic: str, symbols: list[str], rate_hz: float = 10.0) -> None:
        self.conn, self.topic, self.symbols, self.rate_hz = conn, topic, symbols, rate_hz
        self.sent = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        k = 0
        while True:
            try:
                async with KafkaSink(self.conn) as sink:
                    while True:
                        now = time.time_ns()
                        out = [OutRecord(self.topic, codec.encode(book_row(s, now, k, 10.0 + 0.5 * j)),
                                         key=s.encode()) for j, s in enumerate(self.symbols)]
                        await asyncio.wait_for(sink.send_many(out), 5.0)
                        self.sent += len(out)
                        k += 1
                        await asyncio.sleep(1.0 / self.rate_hz)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker outage: keep trying with fresh timestamps
                self.failures += 1
                self.last_error = exc
                await asyncio.sleep(0.5)

    async def __aenter__(self) -> Market:
        self._task = asyncio.create_task(self._run(), name="market")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Venue:
    """Fills every committed child order once, in full, at its limit price (key = symbol)."""

    def __init__(self, conn: KafkaConnection, topics: TopicsSection) -> None:
        self.conn, self.topics = conn, topics
        self.filled: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                consumer = aiokafka.AIOKafkaConsumer(
                    self.topics.child_orders, **self.conn.client_kwargs(), group_id=None,
                    isolation_level="read_committed", auto_offset_reset="earliest")
                try:  # stopped however start() or the loop ends (a cancelled start() leaks connections)
                    await consumer.start()
                    async with KafkaSink(self.conn) as sink:
                        while True:
                            batches = await consumer.getmany(timeout_ms=50)
                            out, done = [], {}
                            for msgs in batches.values():
                                for m in msgs:
                                    c = json.loads(m.value)
                                    cid = c["child_order_id"]
                                    if cid in self.filled:
                                        continue
                                    done[cid] = c["quantity"]
                                    fill = {"schema": "fill.v1", "fill_id": cid + "/f", "child_order_id": cid,
                                            "parent_id": c["parent_id"], "quantity": c["quantity"],
                                            "price": c["limit_price"], "ts_event": time.time_ns()}
                                    out.append(OutRecord(self.topics.fills, json.dumps(fill).encode(),
                                                         key=c["symbol"].encode()))
                            if out:  # a child counts as filled once its fill is acknowledged (a resend
                                # after a timeout repeats the fill_id: the agent ignores the duplicate)
                                await asyncio.wait_for(sink.send_many(out), 5.0)
                                self.filled.update(done)
                finally:
                    await consumer.stop()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker outage: reconnect (already filled children stay in self.filled)
                await asyncio.sleep(0.5)

    async def __aenter__(self) -> Venue:
        self._task = asyncio.create_task(self._run(), name="venue")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def read_topic(conn: KafkaConnection, topic: str, timeout_s: float = 30.0) -> list[aiokafka.ConsumerRecord[Any, Any]]:
    """Every committed record of ``topic`` (up to the end offsets taken at the start)."""
    consumer = aiokafka.AIOKafkaConsumer(**conn.client_kwargs(), group_id=None, isolation_level="read_committed",
                                         auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
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
                out.extend(m for m in msgs if m.offset < end[tp])
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
        if todo:
            raise TimeoutError(f"{topic} not read to its end")
    finally:
        await consumer.stop()
    return out
