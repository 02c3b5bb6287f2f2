"""``mpc-agent publish``: put a data file (paced), a parent order, a cancel or a kill switch on Kafka.

- ``publish PATH [--speed X]``: market data, with a progress bar on stderr (rows, rate, the event
  time reached) and a final line; the JSON summary goes to stdout;
- ``--parent-order FILE.json`` or ``--quantity/--side/--start/--end``: one ``parent_order.v1``
  (key = symbol, so it reaches the agent that owns the symbol);
- ``--cancel PARENT_ID --symbol S``: one ``parent_cancel.v1`` keyed by the parent's symbol (an agent
  that does not know the parent dead-letters the cancel with ``unknown_parent``);
- ``--kill-switch on|off --reason TEXT``: one ``kill_switch.v1`` on *every* partition of the
  parent-orders topic, so every agent of the consumer group gets it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from agent.app.builder import kafka_connection, redact_logs
from agent.app.config import AgentConfig, load_config
from agent.app.parents import parent_from_config
from agent.core.errors import ConfigError

log = logging.getLogger("agent.app.publish")


async def publish(cfg: AgentConfig, *, path: str | None, topic: str, speed_x: float, fmt: str = "auto",
                  symbol: str | None = None, cancel: str | None = None, kill_switch: bool | None = None,
                  reason: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Publish what the arguments ask for (see the module docstring); return counts."""
    from feeds.files.readers import read_book
    from feeds.kafka import KafkaSink
    from feeds.wire import codec

    out: dict[str, Any] = {"topic": topic}
    book = read_book([path], fmt, symbol=symbol).batch if path else None
    first = int(book.ts_event[0]) if book is not None and len(book) else None
    sym = str(book.symbol[0]) if book is not None and len(book) else None
    parent = parent_from_config(cfg.parent, first_ts_ns=first, default_symbol=symbol or sym)
    t = cfg.topics
    async with KafkaSink(kafka_connection(cfg)) as sink:
        if kill_switch is not None:
            msg = codec.build(codec.KillSwitchMsg, on=kill_switch, reason=reason or "", ts_event=time.time_ns(),
                              source="mpc-agent publish")
            out["kill_switch"] = {"on": kill_switch, "partitions": await _to_every_partition(
                sink, t.parent_orders, codec.encode(msg))}
        if cancel is not None:
            if not (symbol or sym):
                raise ConfigError("--cancel needs --symbol: the parent's symbol is the key that routes the cancel "
                                  "to the agent that owns the parent")
            msg = codec.build(codec.ParentCancelMsg, parent_id=cancel, ts_event=time.time_ns(), reason=reason)
            await sink.send(t.parent_orders, codec.encode(msg), key=str(symbol or sym).encode())
            out["cancel"] = cancel
        if parent is not None:
            await sink.send(t.parent_orders, codec.encode(codec.parent_from_model(parent)),
                            key=parent.symbol.encode())  # key = symbol: the owning agent
            out["parent_order"] = parent.parent_id
        if book is not None:
            out.update(await _publish_book(book, sink, topic, speed_x, progress))
    return out


async def _to_every_partition(sink: Any, topic: str, value: bytes) -> list[int]:
    parts = sorted(await sink.producer.partitions_for(topic))
    for p in parts:
        await sink.producer.send_and_wait(topic, value, key=b"__kill_switch__", partition=p)
    return parts


async def _publish_book(book: Any, sink: Any, topic: str, speed_x: float, progress: bool) -> dict[str, Any]:
    """The rows of ``book``, paced at ``speed_x`` (0 = as fast as possible), with a tqdm bar on stderr."""
    from tqdm import tqdm

    from feeds.file_feed import FileFeed, encode_rows

    feed = FileFeed(book, speed_x=speed_x)
    bar = tqdm(total=len(book), unit="row", unit_scale=True, desc=f"publish {topic}", file=sys.stderr,
               disable=not progress, mininterval=0.5)
    sent, t0 = 0, time.perf_counter()
    try:
        async for chunk in feed:
            records = encode_rows(chunk, topic, first_sequence=feed.pos - len(chunk))
            if records:
                await sink.send_many(records)
            sent += len(records)
            bar.update(len(chunk))
            bar.set_postfix_str(f"event time {_clock(int(chunk.ts_event[-1]))}", refresh=False)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    return {"rows": sent, "wall_s": round(wall, 3), "rows_per_s": round(sent / wall) if wall > 0 else None,
            "first_ts": _clock(int(book.ts_event[0])), "last_ts": _clock(int(book.ts_event[-1]))}


def _clock(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _final_line(res: dict[str, Any]) -> str:
    parts = []
    if "rows" in res:
        parts.append(f"{res['rows']} rows to {res['topic']} in {res['wall_s']} s ({res['rows_per_s']} rows/s, "
                     f"event time {res['first_ts']} .. {res['last_ts']})")
    if "parent_order" in res:
        parts.append(f"parent order {res['parent_order']}")
    if "cancel" in res:
        parts.append(f"cancel of {res['cancel']}")
    if "kill_switch" in res:
        ks = res["kill_switch"]
        parts.append(f"kill switch {'ON' if ks['on'] else 'off'} to partition(s) {ks['partitions']}")
    return "published " + "; ".join(parts)


def publish_command(args: argparse.Namespace) -> int:
    """``mpc-agent publish [PATH] [--parent-order FILE.json | --quantity Q ...] [--cancel ID --symbol S]
    [--kill-switch on|off --reason TEXT]``."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    overrides = {
        "kafka": {"bootstrap_servers": g("bootstrap_servers")},
        "parent": {"json_path": g("parent_order"), "parent_id": g("parent_id"), "side": g("side"),
                   "quantity_shares": g("quantity"), "start": g("start"), "end": g("end"),
                   "period_s": g("period_s"), "symbol": g("symbol")},
    }
    cfg = load_config(g("config"), overrides)
    redact_logs(cfg)
    kill = {"on": True, "off": False}.get(g("kill_switch") or "")
    has_parent = bool(cfg.parent.json_path or cfg.parent.quantity_shares > 0)
    if not (args.path or has_parent or g("cancel") or kill is not None):
        raise ConfigError("publish needs a data file PATH, a parent order (--parent-order FILE.json or "
                          "--quantity/--side/--start/--end), --cancel PARENT_ID or --kill-switch on|off")
    if kill is not None and not (g("reason") or "").strip():
        raise ConfigError("--kill-switch needs --reason TEXT (it is logged by every agent and kept in the state topic)")
    res = asyncio.run(publish(cfg, path=args.path, topic=args.topic or cfg.topics.md, speed_x=args.speed or 0.0,
                              fmt=g("format") or "auto", symbol=g("symbol"), cancel=g("cancel"), kill_switch=kill,
                              reason=(g("reason") or "").strip() or None, progress=not g("no_progress")))
    print(json.dumps(res))
    print(_final_line(res), file=sys.stderr)
    return 0
