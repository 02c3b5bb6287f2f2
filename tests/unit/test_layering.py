"""DESIGN.md section 2: the decision core imports only numpy, scipy, osqp and itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = [
    "model", "policy", "impact", "impact_curves", "impact_fit", "profile", "volume", "mpc", "kkt", "blocking",
    "risk", "engine", "engine_state",
]
CORE_ALLOWED = {"numpy", "scipy", "osqp", "agent", "__future__"}
FEEDS_FORBIDDEN_AGENT = {"agent.service", "agent.cli", "agent.engine", "agent.mpc", "agent.metrics"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _stdlib_ok(name: str) -> bool:
    import sys

    return name.split(".")[0] in sys.stdlib_module_names and name.split(".")[0] != "asyncio"


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_only_numeric_libraries(module: str) -> None:
    path = ROOT / "agent" / f"{module}.py"
    if not path.exists():
        pytest.fail(f"agent/{module}.py is part of the core and must exist")
    bad = {n for n in _imports(path) if n.split(".")[0] not in CORE_ALLOWED and not _stdlib_ok(n)}
    assert not bad, f"agent/{module}.py imports {sorted(bad)}; the core may use only numpy/scipy/osqp"


def test_feeds_do_not_import_the_engine_or_service() -> None:
    for path in (ROOT / "feeds").glob("*.py"):
        bad = {n for n in _imports(path) if n in FEEDS_FORBIDDEN_AGENT}
        assert not bad, f"{path.name} imports {sorted(bad)}"
