"""The README's first command (the main job) runs as written and reports what it promises.

The command is read from the README (the line after ``<!-- main-command -->``
and its code fence), so the README stays true; ``scripts/mpc-agent`` is the
installed ``mpc-agent`` entry point (``python -m agent``) of this interpreter.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def main_command() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    i = lines.index("<!-- main-command -->")
    assert lines[i + 1].startswith("```"), "the main command is in a code fence right after the marker"
    return shlex.split(lines[i + 2])


def test_readme_main_command_replays_the_embedded_sample_and_compares_with_twap(tmp_path: Path) -> None:
    cmd = main_command()
    assert cmd[0] == "scripts/mpc-agent" and cmd[1] == "replay" and "--data" not in cmd  # no services, no data
    out = tmp_path / "replay"
    proc = subprocess.run([sys.executable, "-m", "agent", *cmd[1:], "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "report.html").exists()
    assert list(summary["strategies"]) == ["mpc", "twap", "vwap", "pov", "ac", "open-loop"]
    assert summary["windows"] == 5 and summary["symbol"] == "SYNA"
    assert {"mean_bps", "ci95_bps", "controllable_bps"} <= set(summary["comparisons"]["mpc-twap"])
    assert "MPC - benchmark" in proc.stdout and "wrote" in proc.stdout
