"""Generators of malformed and hostile messages for the three input topics, each with its expected reason.

Every generator takes a ``random.Random`` (seeded in the broker test, drawn by
hypothesis in the property test) and a :class:`Context` (the wall clock and
the newest good snapshot time), and returns ``(value, reason)``: the record
value (``None`` = tombstone) and the rejection reason the agent must give
(the DLQ ``error`` header and the metric label).

Kinds of hostility: wrong types, missing and unknown fields, NaN/inf, huge
numbers, negative sizes and prices, crossed/locked books, unsorted levels,
too many levels, timestamps in the far past/future or going backwards,
oversize payloads, unknown/foreign schema tags, truncated JSON, invalid UTF-8,
deeply nested JSON, non-objects, parent orders with impossible parameters,
fills whose child id names another parent or whose parent is unknown.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000
MD, PARENT, FILL = "md", "parent", "fill"
SCHEMA = {MD: "mbp10.v1", PARENT: "parent_order.v1", FILL: "fill.v1"}
REQUIRED = {MD: ("symbol", "ts_event", "action", "side"),
            PARENT: ("parent_id", "symbol", "side", "quantity", "start", "end", "period_s"),
            FILL: ("fill_id", "child_order_id", "parent_id", "quantity", "price", "ts_event")}
FLOATS = {MD: ("price", "size"), PARENT: ("quantity", "period_s", "limit_price"), FILL: ("quantity", "price")}
STRINGS = {MD: ("symbol",), PARENT: ("parent_id", "symbol"), FILL: ("fill_id", "parent_id")}


@dataclass
class Context:
    """What the generators need to know: the wall clock, the newest good snapshot, size limit, ids."""

    now_ns: int
    last_good_ns: int
    max_bytes: int = 65_536
    symbol: str = "FROG"
    live_parent: str = "GOOD-1"
    done_parent: str = "SMALL"
    serial: int = 0

    def uid(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def odd_ns(self) -> int:
        """A unique odd nanosecond offset: bad snapshots never share a ts_event with a good one
        (good ones are whole milliseconds)."""
        self.serial += 1
        return 2 * (self.serial % 400_000) + 1


def good_book(ctx: Context, ts: int, rng: random.Random) -> dict[str, Any]:
    """A valid ``mbp10.v1`` dict around 10.00 with 1-10 levels a side."""
    mid = 1000 + rng.randint(-20, 20)  # cents
    nb, na = rng.randint(1, 10), rng.randint(1, 10)
    trade = rng.random() < 0.2
    return {"schema": "mbp10.v1", "symbol": ctx.symbol, "ts_event": ts, "action": "T" if trade else "A",
            "side": "A" if trade else "B", "price": (mid + 1) / 100, "size": float(rng.randint(1, 500)),
            "bid_px": [(mid - i) / 100 for i in range(nb)], "bid_sz": [float(rng.randint(1, 900)) for _ in range(nb)],
            "ask_px": [(mid + 1 + i) / 100 for i in range(na)], "ask_sz": [float(rng.randint(1, 900)) for _ in range(na)]}


def good_parent(ctx: Context, pid: str, start: int, *, quantity: float = 100_000.0) -> dict[str, Any]:
    return {"schema": "parent_order.v1", "parent_id": pid, "symbol": ctx.symbol, "side": "buy",
            "quantity": quantity, "start": start, "end": start + 1800 * NS, "period_s": 60.0,
            "max_participation": 0.5}


def good_fill(ctx: Context, parent: str, fid: str, qty: float = 10.0) -> dict[str, Any]:
    return {"schema": "fill.v1", "fill_id": fid, "child_order_id": f"{parent}:0", "parent_id": parent,
            "quantity": qty, "price": 10.01, "ts_event": ctx.last_good_ns}


def dumps(d: Any) -> bytes:
    return json.dumps(d, separators=(",", ":")).encode()


def _base(topic: str, ctx: Context, rng: random.Random) -> dict[str, Any]:
    if topic == MD:
        return good_book(ctx, ctx.last_good_ns + ctx.odd_ns(), rng)
    if topic == PARENT:
        return good_parent(ctx, ctx.uid("BAD"), ctx.now_ns)
    return good_fill(ctx, ctx.live_parent, ctx.uid("badfill"))


# ------------------------------------------------------------------ generic hostility
def _utf8(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    raw = bytearray(dumps(_base(t, c, r)))
    raw.insert(r.randint(1, len(raw) - 1), r.choice([0xFF, 0xFE, 0xC3, 0x80]))
    return bytes(raw), "invalid_utf8"


def _truncated(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    raw = dumps(_base(t, c, r))
    return raw[: r.randint(0, len(raw) - 1)], "invalid_json"


def _nested(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    depth = r.randint(2_000, 5_000)  # below the 64 KiB size limit
    return b'{"schema":' * depth + b"1" + b"}" * depth, "invalid_json"


def _not_object(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    return r.choice([b"[]", b"42", b'"mbp10.v1"', b"null", b"true", dumps([_base(t, c, r)])]), "not_an_object"


def _tombstone(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    return None, "null_value"


def _unknown_schema(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    d["schema"] = r.choice([SCHEMA[t].replace("v1", "v2"), "", "x" * 300, 7, None, ["mbp10.v1"]])
    if d["schema"] is None:
        return dumps(d), "missing_field"
    return dumps(d), "unknown_schema"


def _foreign_schema(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    d["schema"] = r.choice([s for k, s in SCHEMA.items() if k != t] + ["child_order.v1", "agent_state.v1"])
    return dumps(d), "unexpected_schema"


def _missing(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    del d[r.choice(("schema", *REQUIRED[t]))]
    return dumps(d), "missing_field"


def _extra(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    d[r.choice(["evil", "__proto__", "constructor", "x" * 64, "bid"])] = r.choice([1, "x", None, [1], {}])
    return dumps(d), "unexpected_field"


def _wrong_type(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    if r.random() < 0.5:
        d[r.choice(FLOATS[t])] = r.choice([True, "1.0", [1.0], {"v": 1}, 10**400])
    else:
        d[r.choice(STRINGS[t])] = r.choice([5, 1.5, True, ["FROG"], {"s": 1}])
    return dumps(d), "invalid_type"


def _non_finite(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    key = r.choice(FLOATS[t])
    d[key] = 12345.678
    lit = r.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
    return dumps(d).replace(b"12345.678", lit.encode()), "non_finite"


def _oversize(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    d["pad"] = "A" * (c.max_bytes + r.randint(1, 4096))
    return dumps(d), "oversize"


def _bad_ts(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    key = {MD: "ts_event", PARENT: "start", FILL: "ts_event"}[t]
    d[key] = r.choice([-1, -(2**63), 2**63, 2**64 + 5])
    return dumps(d), "invalid_timestamp"


def _bad_id(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = _base(t, c, r)
    d[r.choice(STRINGS[t])] = r.choice(["", " FROG", "FROG\n", "x" * 257])
    return dumps(d), "invalid_value"


GENERIC: list[Callable[[str, Context, random.Random], tuple[bytes | None, str]]] = [
    _utf8, _truncated, _nested, _not_object, _tombstone, _unknown_schema, _foreign_schema, _missing, _extra,
    _wrong_type, _non_finite, _oversize, _bad_ts, _bad_id,
]


# ------------------------------------------------------------------ market data
def _md_specific(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = good_book(c, c.last_good_ns + c.odd_ns(), r)
    kind = r.randrange(11)
    if kind == 0:
        d["bid_px"][0] = d["ask_px"][0] + r.choice([0.01, 0.5, 100.0])
        return dumps(d), "crossed_book"
    if kind == 1:
        d["bid_px"][0] = d["ask_px"][0]
        return dumps(d), "locked_book"
    if kind == 2:
        d["bid_px"], d["bid_sz"] = [9.0, 9.5], [1.0, 1.0]
        return dumps(d), "levels_out_of_order"
    if kind == 3:
        side = r.choice(["bid_sz", "ask_sz"])
        d[side][r.randrange(len(d[side]))] = -r.choice([1.0, 1e9])
        return dumps(d), "negative_size"
    if kind == 4:
        side = r.choice(["bid_px", "ask_px"])
        d[side] = [-x for x in d[side]] if side == "bid_px" else [0.0, *d[side][1:]]
        return dumps(d), "non_positive_price"
    if kind == 5:
        d["bid_sz"] = d["bid_sz"] + [1.0]
        return dumps(d), "levels_mismatch"
    if kind == 6:
        d["ask_px"] = [10.5 + i / 100 for i in range(11)]
        d["ask_sz"] = [1.0] * 11
        return dumps(d), "too_many_levels"
    if kind == 7:  # valid book, time going backwards or far in the past
        d["ts_event"] = r.choice([c.last_good_ns - r.randint(1, 10**12) * 2 - 1, 1, 10**15 + 1])
        return dumps(d), "ts_backwards"
    if kind == 8:  # valid book, far ahead of the wall clock
        d["ts_event"] = c.now_ns + r.randint(60, 10**8) * NS + 1
        return dumps(d), "ts_future"
    if kind == 9:
        d["action"] = r.choice(["X", "a", "TRADE", ""])
        return dumps(d), "invalid_value"
    d["size"] = -r.choice([1.0, 0.5, 1e12])
    return dumps(d), "negative_size"


# ------------------------------------------------------------------ parent orders
def _parent_specific(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    d = good_parent(c, c.uid("BAD"), c.now_ns)
    kind = r.randrange(9)
    if kind == 0:
        d["end"] = d["start"] - r.randint(0, 3600) * NS
        return dumps(d), "end_before_start"
    if kind == 1:
        d["max_participation"] = r.choice([0.0, -0.1, 1.5, 100.0])
        return dumps(d), "invalid_participation"
    if kind == 2:
        d["quantity"] = r.choice([0.0, -1.0, -1e12])
        return dumps(d), "non_positive_quantity"
    if kind == 3:
        d["period_s"], d["end"] = r.choice([0.01, 0.002]), c.now_ns + 7200 * NS
        return dumps(d), "too_many_periods"
    if kind == 4:
        d["period_s"] = r.choice([1e-6, 1e-12, 1e30])
        return dumps(d), "invalid_value"
    if kind == 5:
        d["start"], d["end"] = c.now_ns - 7200 * NS, c.now_ns - r.randint(1, 3600) * NS
        return dumps(d), "parent_expired"
    if kind == 6:
        d["start"] = c.now_ns + r.randint(8, 3000) * 86_400 * NS
        d["end"] = d["start"] + 3600 * NS
        return dumps(d), "ts_future"
    if kind == 7:
        d["start"] = r.choice(["yesterday", "2025-04-03T13:30:00", "13:30", "2025-13-45T99:00:00Z"])
        return dumps(d), "invalid_timestamp"
    d[r.choice(["side", "risk_aversion", "limit_price"])] = "hold"
    if isinstance(d.get("side"), str) and d["side"] == "hold":
        return dumps(d), "invalid_value"
    return dumps(d), "invalid_type"


# ------------------------------------------------------------------ fills
def _fill_specific(t: str, c: Context, r: random.Random) -> tuple[bytes | None, str]:
    kind = r.randrange(5)
    if kind == 0:
        pid = c.uid("GHOST")
        return dumps(good_fill(c, pid, c.uid("ghostfill"))), "unknown_parent"
    if kind == 1:
        return dumps(good_fill(c, c.done_parent, c.uid("latefill"))), "parent_done"
    d = good_fill(c, c.live_parent, c.uid("badfill"))
    if kind == 2:
        d["child_order_id"] = r.choice(["OTHER:3", f"{c.live_parent}X:0", "0"])
        return dumps(d), "invalid_child_order_id"
    if kind == 3:
        d["quantity"] = r.choice([0.0, -10.0])
        return dumps(d), "non_positive_quantity"
    d["price"] = r.choice([0.0, -10.01])
    return dumps(d), "non_positive_price"


SPECIFIC = {MD: _md_specific, PARENT: _parent_specific, FILL: _fill_specific}


def hostile(topic: str, ctx: Context, rng: random.Random) -> tuple[bytes | None, str]:
    """One hostile message for ``topic`` (``md``, ``parent`` or ``fill``) and its expected reason:
    half topic-specific, half generic."""
    if rng.random() < 0.5:
        return SPECIFIC[topic](topic, ctx, rng)
    gen = rng.choice(GENERIC)
    if gen is _oversize and rng.random() < 0.9:  # keep the volume of oversize payloads small
        gen = _truncated
    return gen(topic, ctx, rng)
