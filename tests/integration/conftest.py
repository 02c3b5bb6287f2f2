"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import KAFKA_LOCAL, PrivateBroker


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[PrivateBroker, str]]:
    """A broker of the test's own (``scripts/kafka-local`` in ``tmp_path``), for tests that pause or
    stop it without disturbing the session broker: ``(broker, bootstrap address)``; stopped at the end."""
    broker = PrivateBroker(tmp_path / "kafka")
    bootstrap = broker.run("start")
    try:
        yield broker, bootstrap
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=broker.env, capture_output=True, timeout=120, check=False)
