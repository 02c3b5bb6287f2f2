"""A real ``python -m agent run`` process for integration tests: env config, /metrics scraping, cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiokafka
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from feeds.kafka import KafkaSink, KafkaSource
from feeds.ports import OutRecord, Record
from tests.integration.kafka_helpers import drain

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_env(bootstrap: str, topics: dict[str, str], group: str, port: int, **extra: str) -> dict[str, str]:
    """Environment of an agent process: ``MPC_AGENT_*`` for the broker, topics, group and HTTP port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPC_AGENT_")}
    env.update({
        "MPC_AGENT_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MPC_AGENT_KAFKA__GROUP_ID": group,
        "MPC_AGENT_KAFKA__CLIENT_ID": group,
        "MPC_AGENT_HTTP__HOST": "127.0.0.1",
        "MPC_AGENT_HTTP__PORT": str(port),
        "PYTHONPATH": str(ROOT),
    })
    env.update({f"MPC_AGENT_TOPICS__{k.upper()}": v for k, v in topics.items()})
    env.update(extra)
    return env


class AgentProcess:
    """``python -m agent [-vv] run --feed kafka`` with stdout/stderr captured to files; always killed."""

    def __init__(self, env: dict[str, str], workdir: Path, *, verbose: int = 0, args: tuple[str, ...] = ()) -> None:
        self.env, self.workdir = env, workdir
        self.port = int(env["MPC_AGENT_HTTP__PORT"])
        self.stdout_path, self.stderr_path = workdir / "agent.stdout", workdir / "agent.stderr"
        cmd = [sys.executable, "-m", "agent", *(["-" + "v" * verbose] if verbose else []), "run", "--feed", "kafka",
               *args]
        self._out, self._err = self.stdout_path.open("wb"), self.stderr_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out, stderr=self._err)

    # ----------------------------------------------------------------- http
    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout_s) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited ({self.proc.returncode}) before ready: {self.stderr()[-3000:]}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"agent not ready within {timeout_s} s: {self.stderr()[-3000:]}")

    def metrics_text(self) -> str:
        return self.get("/metrics")[1]

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, parsed by ``prometheus_client.parser``: (name, sorted labels) -> value."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return out

    # ------------------------------------------------------------- lifecycle
    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """SIGTERM, wait; the JSON summary printed on stdout (None when there is none)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"agent did not stop within {timeout_s} s of SIGTERM") from None
        self.close()
        text = self.stdout_path.read_text()
        start = text.find("{")
        return json.loads(text[start:]) if start >= 0 else None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self._out, self._err):
            if not f.closed:
                f.close()


# --------------------------------------------------------------------- broker helpers
async def publish_values(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    async with KafkaSink(bootstrap) as sink:
        for i in range(0, len(values), 2000):
            await sink.send_many([OutRecord(topic, v, key=b"FROG") for v in values[i:i + 2000]])


async def caught_up(bootstrap: str, group: str, topics: list[str], timeout_s: float) -> float:
    """Seconds until the group's committed offsets reach the end offsets of ``topics`` (partition 0)."""
    t0 = time.monotonic()
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
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


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    async with KafkaSource(bootstrap, [topic], group_id=None) as src:
        return await drain(src, quiet_s=2.0)
