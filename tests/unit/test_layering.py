"""DESIGN.md section 2: the dependency rule, enforced over package prefixes.

- ``agent.core`` imports only the standard library (not asyncio), numpy, scipy, osqp and itself;
- ``feeds`` imports from ``agent`` only the domain types and errors (``agent.core.model``,
  ``agent.core.errors``);
- ``replay`` imports ``agent.core`` and ``feeds``, never ``agent.live``/``agent.app``, asyncio,
  aiokafka or prometheus_client;
- ``agent.live`` never imports ``agent.app`` (only the app wires everything);
- no import circle between modules anywhere, and no private name imported across modules.

Imports inside ``if TYPE_CHECKING:`` blocks count too: a circle that only type checking sees is
still a circle for a reader.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "feeds", "replay")
NUMERIC = {"numpy", "scipy", "osqp"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


@cache
def _imports(module: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(imported module, names imported from it)`` for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = tuple(a.name for a in node.names)
            # "from pkg import submodule" imports the submodule
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            out.extend((s, ()) for s in subs)
            rest = tuple(n for n in names if f"{base}.{n}" not in MODULES)
            if rest or not subs:
                out.append((base, rest))
    return tuple(out)


def _internal(name: str) -> str | None:
    """The project module ``name`` refers to (a module or the package that defines it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _top(name: str) -> str:
    return name.split(".")[0]


def _stdlib(name: str) -> bool:
    return _top(name) in sys.stdlib_module_names


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "agent.core")))
def test_core_imports_only_numeric_libraries_and_itself(module: str) -> None:
    bad = set()
    for name, _ in _imports(module):
        if _in(name, "agent.core") or _top(name) in NUMERIC or name == "__future__":
            continue
        if _stdlib(name) and _top(name) != "asyncio":
            continue
        bad.add(name)
    assert not bad, f"{module} imports {sorted(bad)}; agent.core may use only numpy/scipy/osqp"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "feeds")))
def test_feeds_import_only_domain_types_and_errors_of_agent(module: str) -> None:
    allowed = {"agent.core.model", "agent.core.errors"}
    bad = {n for n, _ in _imports(module) if _in(n, "agent") and n not in allowed}
    assert not bad, f"{module} imports {sorted(bad)}; feeds may import only {sorted(allowed)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "replay")))
def test_replay_uses_only_the_core_and_feeds(module: str) -> None:
    forbidden = ("agent.live", "agent.app", "asyncio", "aiokafka", "prometheus_client")
    bad = {n for n, _ in _imports(module) if any(_in(n, f) for f in forbidden)}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "agent.live")))
def test_live_does_not_import_the_app(module: str) -> None:
    bad = {n for n, _ in _imports(module) if _in(n, "agent.app")}
    assert not bad, f"{module} imports {sorted(bad)}; only agent.app wires the service"


def test_no_private_name_is_imported_across_modules() -> None:
    bad = []
    for module in MODULES:
        for name, names in _imports(module):
            target = _internal(name)
            if target is None:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if _top(target) in PACKAGES and (private or any(p.startswith("_") for p in name.split(".")
                                                              if not p.startswith("__"))):
                bad.append(f"{module} imports {name}:{private}")
    assert not bad, "\n".join(bad)


def test_no_import_circle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        deps = set()
        for name, _ in _imports(module):
            target = _internal(name)
            if target is not None and target != module and not module.startswith(target + "."):
                # a package's __init__ that a submodule imports through is not a cycle edge
                deps.add(target)
        graph[module] = deps
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)
