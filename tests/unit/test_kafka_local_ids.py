"""scripts/kafka-local: the cluster id it formats a broker's storage with.

Kafka's storage tool reads ``-t <id>`` with an argument parser: an id starting
with ``-`` is taken for an option and the format fails ("argument
--cluster-id/-t: expected one argument"), which broke a CI run's private
broker. One random id in 64 starts with ``-``; the script must never pass one
(Kafka's own ``Uuid.randomUuid()`` rules them out the same way).
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka-local"


def _generator() -> str:
    """The Python program the script runs for a cluster id (between the quotes of ``$PY -c '...'``)."""
    m = re.search(r"cluster_id=\"\$\(\"\$PY\" -c '(.*?)'\)\"", SCRIPT.read_text(), re.S)
    assert m, "scripts/kafka-local no longer makes its cluster id with an inline Python program"
    return m.group(1)


def test_cluster_ids_never_start_with_a_dash_and_are_16_byte_uuids() -> None:
    program = "for _ in range(2000):\n" + "".join(f"    {line}\n" for line in _generator().splitlines())
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 2000  # with the old program ~31 of these started with "-"
    assert not [c for c in out if c.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(c + "==")) == 16 for c in out)
    assert len(set(out)) == 2000
