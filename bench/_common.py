"""Small helpers shared by the benchmarks: a plain-text table and a JSON dump.

Benchmarks print a table for humans and write JSON for machines (CI keeps it
as an artifact). Timings are never asserted in tests; ratios against a
baseline measured in the same run are what the JSON records.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["best_of", "environment", "format_value", "print_table", "write_json"]


def format_value(value: Any) -> str:
    """Render a cell: floats with 4 significant digits (thousands separated when large)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str], *, file: Any = None) -> str:
    """Print ``rows`` as an aligned text table with the given ``columns``; return the text.

    Missing cells are left blank. Numbers are right-aligned, text left-aligned.
    """
    cells = [[format_value(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(r.get(c), (int, float)) for r in rows if c in r) for c in columns
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    text = "\n".join(out)
    print(text, file=file or sys.stdout)
    return text


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` (parent directories created); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    return p


def environment() -> dict[str, Any]:
    """Where the numbers were measured (to keep next to them in the JSON)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Run ``fn`` ``repeat`` times; return (best wall time in seconds, last result)."""
    best = math.inf
    result: Any = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result
