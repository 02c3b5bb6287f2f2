"""Security basics (issue 7 item 6): SASL/TLS settings reach aiokafka, secrets stay secret, size limits hold.

- a real agent process authenticates on the broker's SASL_PLAINTEXT (PLAIN)
  listener with credentials from ``MPC_AGENT_KAFKA__*`` and works (a good
  snapshot counted, a bad one dead-lettered), logging at DEBUG: the password
  is in no log line (aiokafka logs the SASL PLAIN request bytes at DEBUG;
  ``agent.app.log_redact`` masks them), not in /metrics, not in /healthz;
- a wrong password stops the agent at once with a clear error (no retry loop);
- ``mpc-agent run --print-config`` masks every secret;
- TLS settings (CA, client certificate, key password, hostname check) reach
  the ``ssl.SSLContext`` aiokafka is given (no TLS listener on the local
  broker: checked up to the client construction);
- the producer refuses a record above ``kafka.max_message_bytes``.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiokafka
import pytest

from agent.app.builder import kafka_connection
from agent.app.config import load_config
from agent.core.errors import FeedError
from feeds.kafka import KafkaConnection, KafkaSink, create_topics
from feeds.ports import DLQ_ERROR_HEADER
from tests.integration.agent_process import ROOT, AgentProcess, agent_env
from tests.integration.hostile import NS, Context, dumps, good_book
from tests.integration.kafka_helpers import free_port, read_topic

SSL_KEY_PASSWORD = "tls-key-pass-5b1d"


def _sasl_env(bootstrap: str, user: str, password: str) -> dict[str, str]:
    return {"MPC_AGENT_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "MPC_AGENT_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "MPC_AGENT_KAFKA__SASL_MECHANISM": "PLAIN", "MPC_AGENT_KAFKA__SASL_USERNAME": user,
            "MPC_AGENT_KAFKA__SASL_PASSWORD": password}


@pytest.mark.kafka
@pytest.mark.slow
def test_security_agent_over_sasl_plain_works_and_never_shows_the_password(
    kafka_bootstrap: str, kafka_sasl_bootstrap: tuple[str, str, str], unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    sasl, user, password = kafka_sasl_bootstrap
    topics = {k: unique_topic(k) for k in ("md", "parent_orders", "fills", "child_orders", "dlq", "agent_state")}
    asyncio.run(create_topics(kafka_bootstrap, list(topics.values())))
    env = agent_env(sasl, topics, group_id=unique_topic("g"), metrics_port=free_port(),
                    **_sasl_env(sasl, user, password))
    agent = AgentProcess.spawn(env, tmp_path / "agent.log", verbose=2)
    try:
        agent.wait_ready()
        now = time.time_ns()
        good = dumps(good_book(Context(now_ns=now, last_good_ns=now), now - NS, random.Random(1)))

        async def feed() -> None:
            async with KafkaSink(kafka_bootstrap) as sink:
                await sink.send(topics["md"], good, key=b"FROG")
                await sink.send(topics["md"], b'{"schema":"mbp10.v1","symbol":"FROG"', key=b"FROG")

        asyncio.run(feed())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = agent.samples()
            if s.get(("mpc_agent_snapshots_total", ()), 0) >= 1 and s.get(
                    ("mpc_agent_snapshots_rejected_total", (("reason", "invalid_json"),)), 0) >= 1:
                break
            time.sleep(0.2)
        # the rejection is counted when the batch is decoded; its DLQ copy is committed with the step's
        # transaction, after a batch fetched during the first rebalance has been read again
        dlq: list = []
        while time.monotonic() < deadline + 30 and not dlq:
            dlq = asyncio.run(read_topic(kafka_bootstrap, topics["dlq"]))
            time.sleep(0.2)
        metrics_text = agent.metrics_text()
        health = agent.get("/healthz")[1]
        summary = agent.stop(30.0, must_stop=True)
    finally:
        agent.close()
    stderr = agent.log_text()
    assert summary is not None
    assert s[("mpc_agent_snapshots_total", ())] == 1
    assert [dict(r.headers)[DLQ_ERROR_HEADER] for r in dlq] == [b"invalid_json"]
    assert "SaslAuthenticateRequest" in stderr  # the debug line that used to carry the password
    assert "DEBUG" in stderr and password not in stderr
    assert password not in metrics_text and password not in health


@pytest.mark.kafka
def test_security_wrong_password_stops_the_agent_at_once_with_a_clear_error(
    kafka_sasl_bootstrap: tuple[str, str, str], unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    sasl, user, password = kafka_sasl_bootstrap
    wrong = password + "-wrong-7f3a"
    topics = {k: unique_topic(k) for k in ("md", "parent_orders", "fills", "child_orders", "dlq", "agent_state")}
    env = agent_env(sasl, topics, group_id=unique_topic("g"), metrics_port=free_port(),
                    **_sasl_env(sasl, user, wrong))
    agent = AgentProcess.spawn(env, tmp_path / "agent.log", verbose=2)
    try:
        t0 = time.monotonic()
        rc = agent.proc.wait(60)
        took = time.monotonic() - t0
    finally:
        agent.close()
    stderr = agent.log_text()
    assert rc == 2 and took < 30
    assert f"Kafka authentication failed at {sasl} for user '{user}'" in stderr
    assert wrong not in stderr


def test_security_print_config_masks_every_secret(tmp_path: Path) -> None:
    env = agent_env("127.0.0.1:1", {}, group_id="g", MPC_AGENT_KAFKA__SASL_PASSWORD="sasl-pass-91c2",
                    MPC_AGENT_KAFKA__SSL_PASSWORD=SSL_KEY_PASSWORD)
    out = subprocess.run([sys.executable, "-m", "agent", "-vv", "run", "--print-config"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    assert "sasl-pass-91c2" not in out.stdout + out.stderr and SSL_KEY_PASSWORD not in out.stdout + out.stderr
    kafka = json.loads(out.stdout)["kafka"]
    assert kafka["sasl_password"] == kafka["ssl_password"] == "**********"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=mpc-agent-test", "-passout", f"pass:{SSL_KEY_PASSWORD}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_security_tls_settings_from_env_reach_the_aiokafka_client(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    for k, v in {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u",
                 "SASL_PASSWORD": "scram-pass-0e4", "SSL_CAFILE": str(cert), "SSL_CERTFILE": str(cert),
                 "SSL_KEYFILE": str(key), "SSL_PASSWORD": SSL_KEY_PASSWORD, "SSL_CHECK_HOSTNAME": "false",
                 "BOOTSTRAP_SERVERS": "broker.example:9093"}.items():
        monkeypatch.setenv(f"MPC_AGENT_KAFKA__{k}", v)
    conn = kafka_connection(load_config())
    kw = conn.client_kwargs()
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname is False and ctx.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "mpc-agent-test"),),)]
    assert (kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "u", "scram-pass-0e4")
    assert "scram-pass-0e4" not in repr(conn) and SSL_KEY_PASSWORD not in repr(conn)

    async def build() -> None:  # aiokafka accepts exactly these arguments (no connection is made)
        consumer = aiokafka.AIOKafkaConsumer(**kw)
        try:
            assert consumer._client._ssl_context is ctx and consumer._client._security_protocol == "SASL_SSL"
        finally:
            await consumer.stop()

    asyncio.run(build())
    monkeypatch.setenv("MPC_AGENT_KAFKA__SSL_PASSWORD", "not-the-key-password")
    with pytest.raises(ssl.SSLError):  # the key password really is used to open the key
        kafka_connection(load_config()).client_kwargs()


@pytest.mark.kafka
def test_security_producer_refuses_a_record_above_max_message_bytes(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("big")

    async def go() -> None:
        await create_topics(kafka_bootstrap, [topic])
        conn = KafkaConnection(bootstrap_servers=kafka_bootstrap, max_message_bytes=10_000)
        async with KafkaSink(conn) as sink:
            await sink.send(topic, b"x" * 5_000)
            with pytest.raises(FeedError, match=r"(?i)too large|size"):
                await sink.send(topic, b"x" * 20_000)

    asyncio.run(go())
