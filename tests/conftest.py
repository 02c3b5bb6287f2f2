"""Shared fixtures: the Kafka broker for ``kafka``-marked tests and unique topic names.

``kafka_bootstrap`` (session) picks a broker, in order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (an existing cluster);
2. a testcontainers Kafka when a Docker engine answers within ~2 s;
3. ``scripts/kafka-local start`` (Apache Kafka from Maven Central, KRaft, 127.0.0.1),
   stopped at the end by the last pytest session (an xdist worker is one) that used it
   (lease files in ``.kafka-local/leases``), when a pytest session started it: a broker
   started by hand is left running.

When no broker can be had, the test fails under ``CI=true`` and is skipped
(with the reason) elsewhere. Any test using ``kafka_bootstrap`` is marked
``kafka`` automatically, so ``-m "not kafka"`` never starts a broker.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
TESTCONTAINERS_IMAGE = "confluentinc/cp-kafka:7.7.1"
KAFKA_GROUP = "kafka"  # the xdist group of a broker test that names none (see pytest_collection_modifyitems)

# No hypothesis deadline anywhere: beside another xdist worker a slow example measures the machine's load,
# not the code (speed is for bench/, never for a timed assertion in a test).
settings.register_profile("mpc-agent", deadline=None)
settings.load_profile("mpc-agent")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("kafka"):
            item.add_marker(pytest.mark.kafka)
        # Under pytest-xdist (``scripts/test`` runs ``-n 2 --dist loadgroup``) the tests of one group run
        # one after the other on one worker: the broker tests never overlap more than two at a time (this
        # group and the ``kafka_processes`` group of the multi-agent tests), the unit tests fill the gaps.
        if item.get_closest_marker("kafka") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(KAFKA_GROUP))


def _no_broker(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"kafka test needs a broker and none could be started: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason} (set KAFKA_BOOTSTRAP_SERVERS or fix scripts/kafka-local)")


def _docker_answers(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers ``/_ping`` quickly (never raises)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        path = host[len("unix://") :]
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            try:
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(64).split(b" ")[1:2] == [b"200"]
            except OSError:
                return False
    try:  # tcp:// or ssh:// engines: let the docker library ask
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import docker

            client = docker.from_env(timeout=int(timeout_s))
            try:
                return bool(client.ping())
            finally:
                client.close()
    except Exception:
        return False


def _kafka_local_dir() -> Path:
    """``scripts/kafka-local``'s cache dir (``KAFKA_LOCAL_DIR``, else ``.kafka-local``)."""
    return Path(os.environ.get("KAFKA_LOCAL_DIR", ROOT / ".kafka-local"))


def _leases() -> Path:
    path = _kafka_local_dir() / "leases"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _other_live_leases(mine: Path) -> list[Path]:
    live = []
    for lease in mine.parent.glob("*"):
        if lease == mine or not lease.name.isdigit():
            continue
        if Path(f"/proc/{lease.name}").exists():
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def _local_broker_pid() -> str:
    """The pid of ``scripts/kafka-local``'s broker as its run dir records it ("" when none)."""
    pid = _kafka_local_dir() / "run" / "pid"
    try:
        return pid.read_text().strip()
    except OSError:
        return ""


def _kafka_local(cmd: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_LOCAL), cmd], capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Kafka broker that supports transactions (see module docstring)."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        yield env
        return
    if _docker_answers():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from testcontainers.community.kafka import KafkaContainer

            container = KafkaContainer(TESTCONTAINERS_IMAGE).with_kraft()
            for k, v in {
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            }.items():
                container.with_env(k, v)
            container.start()
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
        return
    if not KAFKA_LOCAL.exists():
        _no_broker(f"{KAFKA_LOCAL} is missing")
    lease = _leases() / str(os.getpid())
    lease.touch()
    was_running = _kafka_local("status", 30).returncode == 0
    try:
        started = _kafka_local("start", 900)
    except subprocess.TimeoutExpired:
        lease.unlink(missing_ok=True)
        _no_broker("scripts/kafka-local start timed out")
        raise
    if started.returncode != 0 or not started.stdout.strip():
        lease.unlink(missing_ok=True)
        _no_broker(f"scripts/kafka-local start failed: {started.stderr.strip()[-2000:]}")
    broker_pid = _local_broker_pid()
    marker = lease.parent / "started-by-pytest"
    if not was_running and broker_pid:  # this session (or a parallel one, e.g. an xdist worker) started it
        marker.write_text(broker_pid)
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        lease.unlink(missing_ok=True)
        # the last session out stops a broker that pytest started (never one started by hand)
        if (not _other_live_leases(lease) and broker_pid and marker.exists()
                and marker.read_text() == broker_pid == _local_broker_pid()):
            _kafka_local("stop", 60)
            marker.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def kafka_sasl_bootstrap(kafka_bootstrap: str) -> tuple[str, str, str]:
    """``(host:port, user, password)`` of a SASL_PLAINTEXT/PLAIN listener.

    ``KAFKA_SASL_BOOTSTRAP_SERVERS`` (+ ``KAFKA_SASL_USERNAME``/``KAFKA_SASL_PASSWORD``),
    else the second listener of ``scripts/kafka-local``; skipped when the broker
    in use has none (SASL is a property of that broker, not a missing feature here).
    """
    env = os.environ.get("KAFKA_SASL_BOOTSTRAP_SERVERS", "").strip()
    if env:
        return env, os.environ.get("KAFKA_SASL_USERNAME", ""), os.environ.get("KAFKA_SASL_PASSWORD", "")
    base = _kafka_local_dir()
    local = base / "run" / "bootstrap"
    sasl = base / "run" / "sasl_bootstrap"
    if local.exists() and sasl.exists() and local.read_text().strip() == kafka_bootstrap:
        return sasl.read_text().strip(), "mpc", "mpc-secret"
    _no_broker("the broker in use has no SASL_PLAINTEXT listener; set KAFKA_SASL_BOOTSTRAP_SERVERS")


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of topic names unique to this test: ``unique_topic("md") -> "md.test_x.1a2b3c4d"``."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:120]

    def make(prefix: str = "t") -> str:
        return f"{prefix}.{stem}.{uuid.uuid4().hex[:8]}"

    return make
