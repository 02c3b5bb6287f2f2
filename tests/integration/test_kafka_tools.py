"""``scripts/kafka-local tools`` (issue 14 item 9): the Kafka command-line tools work against the
real broker, and nothing the script prints carries terminal colour codes.

The tools' jars are fetched once into ``$KAFKA_LOCAL_DIR/lib`` (git-ignored) with ``mvn``, like the
broker's; without ``mvn`` or network the test fails (as every broker test does under ``CI=true``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
ESC = "\x1b"


def _run(cmd: list[str], *, stdin: str | None = None, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert res.returncode == 0, f"{cmd}: {res.stderr[-2000:]}"
    assert ESC not in res.stdout + res.stderr, f"colour codes in the output of {cmd}: {res.stderr!r}"
    return res


def test_kafka_local_tools_topics_console_producer_consumer_and_groups(kafka_bootstrap: str) -> None:
    env_dir = os.environ.get("KAFKA_LOCAL_DIR")
    res = _run([str(KAFKA_LOCAL), "tools"], timeout_s=900)
    bin_dir = Path(res.stdout.strip().splitlines()[-1])
    assert bin_dir == Path(env_dir or ROOT / ".kafka-local") / "bin"
    for name in ("kafka-topics", "kafka-console-consumer", "kafka-console-producer", "kafka-consumer-groups",
                 "kafka-get-offsets", "kafka-configs"):
        assert os.access(bin_dir / f"{name}.sh", os.X_OK), name

    topic = f"tools-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    b = ["--bootstrap-server", kafka_bootstrap]
    _run([str(bin_dir / "kafka-topics.sh"), *b, "--create", "--topic", topic, "--partitions", "2"])
    try:
        described = _run([str(bin_dir / "kafka-topics.sh"), *b, "--describe", "--topic", topic]).stdout
        assert "PartitionCount: 2" in described
        _run([str(bin_dir / "kafka-console-producer.sh"), *b, "--topic", topic, "--property", "parse.key=true",
              "--property", "key.separator=:"], stdin="FROG:one\nSYNA:two\nFROG:three\n")
        out = _run([str(bin_dir / "kafka-console-consumer.sh"), *b, "--topic", topic, "--from-beginning",
                    "--group", group, "--max-messages", "3", "--timeout-ms", "30000", "--property",
                    "print.key=true"]).stdout
        assert sorted(out.splitlines()) == ["FROG\tone", "FROG\tthree", "SYNA\ttwo"]
        offsets = _run([str(bin_dir / "kafka-get-offsets.sh"), *b, "--topic", topic]).stdout
        assert sum(int(line.rsplit(":", 1)[1]) for line in offsets.split()) == 3
        groups = _run([str(KAFKA_LOCAL), "tool", "kafka-consumer-groups", *b, "--list"]).stdout
        assert group in groups.split()
    finally:
        subprocess.run([str(bin_dir / "kafka-consumer-groups.sh"), *b, "--delete", "--group", group],
                       capture_output=True, timeout=60, check=False)
        _run([str(bin_dir / "kafka-topics.sh"), *b, "--delete", "--topic", topic])
