"""Real agent processes and a live synthetic market for the integration tests.

- :class:`AgentProcess`: ``python -m agent run --feed kafka`` as a subprocess
  (configured through ``MPC_AGENT_*`` variables from :func:`agent_env`), stderr
  to a log file appended across restarts, stdout (the run summary) beside it;
  started, SIGKILLed, SIGTERMed; its HTTP endpoints and its restore log lines read.
- :class:`Market`: publishes a synthetic MBP-10 book with trades for some
  symbols, stamped with the wall clock (key = symbol), ``rate_hz`` rows per
  symbol per second; it keeps trying through a broker outage.
- :class:`Venue`: answers every committed child order with one full fill at its
  limit price (``fill_id = child_order_id + "/f"``, key = symbol so the fill
  reaches the agent owning the symbol).

Reading topics, publishing raw values and waiting for a group: ``tests.integration.kafka_helpers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiokafka
from prometheus_client.parser import text_string_to_metric_families

from agent.live.settings import TopicsSection
from feeds.kafka import KafkaConnection, KafkaSink
from feeds.ports import OutRecord
from feeds.wire import codec
from feeds.wire.messages import Mbp10

ROOT = Path(__file__).resolve().parents[2]
TOPIC_NAMES = ("md", "parent_orders", "child_orders", "fills", "agent_state", "dlq")


def agent_env(bootstrap: str, topics: TopicsSection | Mapping[str, str], *, group_id: str,
              agent_id: str | None = None, metrics_port: int | None = None,
              extra: Mapping[str, str] | None = None, **more: str) -> dict[str, str]:
    """Environment of an agent process: ``MPC_AGENT_*`` for the broker, topics, group, agent id and
    HTTP port (HTTP off when ``metrics_port`` is None), short session and transaction timeouts;
    ``extra`` / keyword arguments add or override variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPC_AGENT_")}
    env.update({
        "MPC_AGENT_SERVICE__FEED": "kafka",
        "MPC_AGENT_SERVICE__POLL_TIMEOUT_MS": "20",
        "MPC_AGENT_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MPC_AGENT_KAFKA__GROUP_ID": group_id,
        "MPC_AGENT_KAFKA__CLIENT_ID": group_id,
        "MPC_AGENT_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "MPC_AGENT_KAFKA__TRANSACTION_TIMEOUT_MS": "10000",
        "MPC_AGENT_KAFKA__REQUEST_TIMEOUT_MS": "10000",
        "MPC_AGENT_HTTP__ENABLED": "false" if metrics_port is None else "true",
        "MPC_AGENT_HTTP__HOST": "127.0.0.1",
        "MPC_AGENT_HTTP__PORT": str(metrics_port or 0),
        "MPC_AGENT_LOG__FORMAT": "json",  # events as fields (restore, parent_*, kill_switch): parsed below
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    })
    if agent_id is not None:
        env["MPC_AGENT_KAFKA__AGENT_ID"] = agent_id
    names = {n: getattr(topics, n) for n in TOPIC_NAMES} if isinstance(topics, TopicsSection) else dict(topics)
    env.update({f"MPC_AGENT_TOPICS__{k.upper()}": v for k, v in names.items()})
    env.update(extra or {})
    env.update(more)
    return env


class AgentProcess:
    """One ``python -m agent [-v..] run`` subprocess (see the module docstring).

    Parameters
    ----------
    env : from :func:`agent_env`.
    log_path : stderr (the agent's log), appended across restarts; stdout goes to ``*.stdout`` beside it.
    verbose : number of ``-v`` flags (1: INFO, which the restore/assignment parsers need).
    args : extra arguments after ``run``.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, verbose: int = 1, args: tuple[str, ...] = ()) -> None:
        self.env, self.log_path = env, log_path
        self.stdout_path = log_path.with_suffix(".stdout")
        self.port = int(env.get("MPC_AGENT_HTTP__PORT", "0"))
        self.cmd = [sys.executable, "-m", "agent", *(["-" + "v" * verbose] if verbose else []), "run", *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @classmethod
    def spawn(cls, env: dict[str, str], log_path: Path, **kw: Any) -> AgentProcess:
        """Construct and :meth:`start`."""
        agent = cls(env, log_path, **kw)
        agent.start()
        return agent

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.log_path.open("ab") as log, self.stdout_path.open("ab") as out:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=log)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL (no clean-up of any kind in the agent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0, *, must_stop: bool = False) -> dict[str, Any] | None:
        """SIGTERM, then SIGKILL after ``timeout_s`` (an assertion error with ``must_stop``); the JSON
        summary the run printed on stdout (None when there is none)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                if must_stop:
                    raise AssertionError(f"agent did not stop within {timeout_s} s of SIGTERM") from None
        text = self.stdout_path.read_text() if self.stdout_path.exists() else ""
        start = text.rfind("\n{")
        start = start + 1 if start >= 0 else text.find("{")
        try:
            return json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            return None

    def close(self) -> None:
        """Kill if still running (tests call it in ``finally``)."""
        self.kill()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

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

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The structured log lines (``log.format = json``) with an ``event`` (``name`` only), in order."""
        out = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") and (name is None or rec["event"] == name):
                out.append(rec)
        return out

    def restores(self) -> list[dict[str, Any]]:
        """The ``restore`` events (``parent_id``, ``symbol``, ``status``, ``remaining``, ...), in order."""
        return self.events("restore")

    def assigned_count(self) -> int:
        return self.log_text().count(" parent-order partition(s) of ")

    def log_events(self, needle: str) -> list[tuple[float, str]]:
        """``(epoch seconds, line)`` of every log line containing ``needle``: JSON lines by their ``ts``
        (UTC), text lines by their asctime (local time)."""
        out = []
        for line in self.log_text().splitlines():
            if needle not in line:
                continue
            if line.startswith("{"):
                with contextlib.suppress(ValueError, KeyError):
                    ts = json.loads(line)["ts"]
                    out.append((datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp(), line))
            elif len(line) > 23 and line[4] == "-" and line[19] == ",":
                t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
                out.append((t, line))
        return out

    # ------------------------------------------------------------------ http
    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout_s) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"agent exited ({self.returncode}) before ready: {self.log_text()[-3000:]}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"agent not ready within {timeout_s} s: {self.log_text()[-3000:]}")

    def metrics_text(self) -> str:
        return self.get("/metrics")[1]

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, parsed by ``prometheus_client.parser``: (name, sorted labels) -> value."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return out


async def stop_task(task: asyncio.Task[None] | None, timeout_s: float = 10.0) -> None:
    """Cancel a helper's client task and wait for it, a bounded time: a Kafka client's ``stop()``
    inside the cancelled task once hung a run for good (seen in CI). Cancelled again when it
    does not end; the test goes on without it after a second bound."""
    if task is None:
        return
    for _ in range(2):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
            return
    print(f"warning: task {task.get_name()} did not stop within 2 x {timeout_s:g} s", file=sys.stderr)


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
        await stop_task(self._task)


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
        await stop_task(self._task)
