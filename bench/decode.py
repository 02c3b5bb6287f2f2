"""Benchmark decoding ``mbp10.v1`` record values into a ``BookBatch`` (issue 12, deliverable 1).

Measures messages/s and microseconds a message, in the same run, round-robin
(so load drift on a shared machine hits every case alike, best time kept), on
realistic 10-level messages (the embedded sample day encoded by
``feeds.file_feed.encode_rows``, as a publisher puts them on the topic):

- ``json.loads`` / ``orjson.loads`` / ``msgspec`` untyped: parsing alone, no
  validation, no columns (the floor a Python decoder stands on);
- ``codec.decode`` + ``books_to_batch``: the strict codec, message by message;
- ``intake before issue 12``: the decoder ``agent.live.intake`` used until now
  (pydantic fields-only model per message, vectorised book checks), kept here
  verbatim as the baseline;
- ``decode_books``: ``feeds.wire.fast_mbp10``, what the intake uses now;

each on clean batches and on batches with 1% hostile values (a crossed book,
a size as a string, a tombstone), which take the strict codec for their
reason. Target: <= 5 us a message on clean batches (wall time; CPU time of the
process is shown too: on a shared machine the wall clock also counts other
people's work, and the load average is recorded). Prints a table and writes
JSON (default ``bench/out/decode.json``)::

    python -m bench.decode [--messages 20000] [--batch 5000] [--repeat 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import best_of, environment, print_table, write_json  # noqa: E402

SAMPLE = ROOT / "data" / "sample" / "sample-2025-04-03.mbp10.csv.zst"
TARGET_US = 5.0
HOSTILE_EVERY = 100


def messages(path: Path, n: int) -> list[bytes]:
    """``n`` consecutive rows of the sample day with 10 levels a side, as record values."""
    from feeds.file_feed import encode_rows
    from feeds.files.readers import read_book

    book = read_book(path).batch
    full = (book.bid_sz > 0).all(axis=1) & (book.ask_sz > 0).all(axis=1)
    rows = book.take(np.flatnonzero(full)[:n])
    out = [r.value for r in encode_rows(rows, "md", first_sequence=0)]
    return [v for v in out if v is not None]


def hostile(values: list[bytes]) -> list[bytes | None]:
    """Every ``HOSTILE_EVERY``-th value spoiled: crossed book, size as a string, tombstone in turn."""
    out: list[bytes | None] = list(values)
    for k, i in enumerate(range(HOSTILE_EVERY // 2, len(out), HOSTILE_EVERY)):
        d = json.loads(values[i])
        if k % 3 == 0:
            d["bid_px"][0] = d["ask_px"][0] + 1.0
        elif k % 3 == 1:
            d["size"] = str(d["size"])
        out[i] = None if k % 3 == 2 else json.dumps(d, separators=(",", ":")).encode()
    return out


# ------------------------------------------------------------------ the baseline, as it was
def _legacy_model() -> Any:
    """``Mbp10`` without its ``_book`` validator (``agent.live.intake`` before issue 12)."""
    import pydantic

    from feeds.wire.messages import Mbp10, WireMessage

    fields: dict[str, Any] = {}
    for name, f in Mbp10.model_fields.items():
        ann: Any = f.annotation
        if f.metadata:
            ann = Annotated[(ann, *f.metadata)]
        fields[name] = (Literal["mbp10.v1"], pydantic.Field(alias="schema")) if name == "schema_" else (ann, f)
    return pydantic.create_model("Mbp10FieldsOnly", __base__=WireMessage, **fields)


def legacy_books(values: Sequence[bytes | None], model: Any, max_bytes: int = 1 << 20) -> int:
    """The old ``Intake._books`` on values (DLQ copies replaced by a count); returns rows kept."""
    import pydantic

    from agent.core.errors import DataError
    from feeds.wire import codec

    def exact(v: bytes | None) -> Any:
        try:
            return codec.decode(v, expected={"mbp10.v1"}, max_bytes=max_bytes)
        except DataError:
            return None

    msgs: list[Any] = []
    kept: list[bytes | None] = []
    for v in values:
        msg: Any = None
        if v is not None and len(v) <= max_bytes:
            try:
                msg = model.model_validate_json(v)
            except pydantic.ValidationError:
                msg = None
        if msg is None:
            msg = exact(v)
        if msg is not None:
            msgs.append(msg)
            kept.append(v)
    if not msgs:
        return 0
    lengths = np.array([(len(m.bid_px), len(m.bid_sz), len(m.ask_px), len(m.ask_sz)) for m in msgs],
                       dtype=np.int64).reshape(-1, 4)
    shape_ok = (lengths[:, 0] == lengths[:, 1]) & (lengths[:, 2] == lengths[:, 3]) & (lengths <= 10).all(1)
    if not shape_ok.all():
        keep = shape_ok.copy()
        for i in np.flatnonzero(~shape_ok).tolist():
            keep[i] = exact(kept[i]) is not None
        idx = np.flatnonzero(keep).tolist()
        msgs, kept, lengths = [msgs[i] for i in idx], [kept[i] for i in idx], lengths[keep]
    b = codec.books_to_batch(msgs)
    n_bid, n_ask = lengths[:, 0], lengths[:, 2]
    cols = np.arange(b.bid_px.shape[1])
    pb, pa = cols[None, :] < n_bid[:, None], cols[None, :] < n_ask[:, None]
    with np.errstate(invalid="ignore"):
        bad = ((b.bid_px <= 0) & pb).any(1) | ((b.ask_px <= 0) & pa).any(1)
        bad |= ((b.bid_sz < 0) & pb).any(1) | ((b.ask_sz < 0) & pa).any(1)
        bad |= ((b.bid_px[:, 1:] >= b.bid_px[:, :-1]) & pb[:, 1:]).any(1)
        bad |= ((b.ask_px[:, 1:] <= b.ask_px[:, :-1]) & pa[:, 1:]).any(1)
        bad |= (n_bid > 0) & (n_ask > 0) & (b.bid_px[:, 0] >= b.ask_px[:, 0])
    bad |= (b.action == "T") & np.isnan(b.price)
    keep = ~bad
    for i in np.flatnonzero(bad).tolist():
        keep[i] = exact(kept[i]) is not None
    return len(b.take(keep))


# ------------------------------------------------------------------ cases
def cases(clean: list[bytes], mixed: list[bytes | None], batch: int) -> dict[str, tuple[Callable[[], int], int]]:
    """name -> (function returning the rows it produced, number of messages it handles)."""
    import msgspec
    import orjson

    from feeds.wire import codec
    from feeds.wire.fast_mbp10 import decode_books

    model = _legacy_model()
    chunks = [clean[i:i + batch] for i in range(0, len(clean), batch)]
    mchunks = [mixed[i:i + batch] for i in range(0, len(mixed), batch)]
    n = len(clean)
    return {
        "json.loads (parse only)": (lambda: len([json.loads(v) for v in clean]), n),
        "orjson.loads (parse only)": (lambda: len([orjson.loads(v) for v in clean]), n),
        "msgspec untyped (parse only)": (lambda: len([msgspec.json.decode(v) for v in clean]), n),
        "codec.decode + books_to_batch": (lambda: sum(len(codec.books_to_batch(
            [codec.decode(v) for v in c])) for c in chunks), n),  # type: ignore[misc]
        "intake before issue 12": (lambda: sum(legacy_books(c, model) for c in chunks), n),
        "decode_books": (lambda: sum(len(decode_books(c).books) for c in chunks), n),
        "intake before issue 12, 1% hostile": (lambda: sum(legacy_books(c, model) for c in mchunks), n),
        "decode_books, 1% hostile": (lambda: sum(len(decode_books(c).books) for c in mchunks), n),
    }


def run(n: int, batch: int, repeat: int) -> dict[str, Any]:
    """Every case ``repeat`` times, round-robin; best wall and best CPU time of each."""
    clean = messages(SAMPLE, n)
    mixed = hostile(clean)
    todo = cases(clean, mixed, batch)
    wall: dict[str, float] = dict.fromkeys(todo, float("inf"))
    cpu: dict[str, float] = dict.fromkeys(todo, float("inf"))
    rows: dict[str, int] = {}
    for _ in range(repeat):  # round-robin: drift hits every case alike
        for name, (fn, _) in todo.items():
            c0 = time.process_time()
            t, rows[name] = best_of(fn, 1)
            cpu[name] = min(cpu[name], time.process_time() - c0)
            wall[name] = min(wall[name], t)
    assert rows["decode_books"] == rows["intake before issue 12"] == len(clean)
    assert rows["decode_books, 1% hostile"] == rows["intake before issue 12, 1% hostile"]
    table = []
    for name, (_, m) in todo.items():
        base = "intake before issue 12" + (", 1% hostile" if "hostile" in name else "")
        table.append({"case": name, "us/msg": wall[name] / m * 1e6, "msgs/s": m / wall[name],
                      "cpu us/msg": cpu[name] / m * 1e6, "vs before": wall[base] / wall[name],
                      "vs before (cpu)": cpu[base] / cpu[name]})
    us, cpu_us = wall["decode_books"] / len(clean) * 1e6, cpu["decode_books"] / len(clean) * 1e6
    return {
        "benchmark": "decode", "environment": environment(),
        "load_average": list(os.getloadavg()),
        "messages": len(clean), "batch": batch, "repeat": repeat,
        "mean_bytes": float(np.mean([len(v) for v in clean])),
        "results": table,
        "target_us_per_msg": TARGET_US, "decode_books_us_per_msg": us, "decode_books_cpu_us_per_msg": cpu_us,
        "target_met": us <= TARGET_US,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=5000, help="values per decode call (the agent's max_batch_records)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "decode.json"))
    args = ap.parse_args(argv)
    res = run(args.messages, args.batch, args.repeat)
    print(f"{res['messages']:,} messages of {res['mean_bytes']:.0f} bytes, batches of {res['batch']:,}, "
          f"best of {res['repeat']}, load average {res['load_average'][0]:.2f} on {os.cpu_count()} cores")
    print_table(res["results"], ["case", "us/msg", "msgs/s", "cpu us/msg", "vs before", "vs before (cpu)"])
    print(f"decode_books: {res['decode_books_us_per_msg']:.2f} us/msg wall, {res['decode_books_cpu_us_per_msg']:.2f} "
          f"CPU (target <= {TARGET_US:g}): {'met' if res['target_met'] else 'MISSED'}")
    print(f"wrote {write_json(args.json, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
