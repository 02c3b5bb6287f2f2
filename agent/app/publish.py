"""``mpc-agent publish``: a data file (paced) and/or a parent order onto Kafka."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from agent.app.builder import kafka_connection, redact_logs
from agent.app.config import AgentConfig, load_config
from agent.app.parents import parent_from_config
from agent.core.errors import ConfigError

log = logging.getLogger("agent.app.publish")


async def publish(cfg: AgentConfig, *, path: str | None, topic: str, speed_x: float,
                  fmt: str = "auto", symbol: str | None = None) -> dict[str, Any]:
    """Publish the parent order of ``cfg.parent`` (JSON file or flags), then a data file paced
    at ``speed_x``, to Kafka; return counts. ``HH:MM`` parent times use the data's day."""
    from feeds.file_feed import FileFeed, publish_feed
    from feeds.files.readers import read_book
    from feeds.kafka import KafkaSink
    from feeds.wire import codec

    out: dict[str, Any] = {"topic": topic}
    book = read_book([path], fmt, symbol=symbol).batch if path else None
    first = int(book.ts_event[0]) if book is not None and len(book) else None
    sym = str(book.symbol[0]) if book is not None and len(book) else None
    parent = parent_from_config(cfg.parent, first_ts_ns=first, default_symbol=symbol or sym)
    async with KafkaSink(kafka_connection(cfg)) as sink:
        if parent is not None:
            await sink.send(cfg.topics.parent_orders, codec.encode(codec.parent_from_model(parent)),
                            key=parent.symbol.encode())  # key = symbol: the owning agent
            out["parent_order"] = parent.parent_id
        if book is not None:
            t0 = time.perf_counter()
            n = await publish_feed(FileFeed(book, speed_x=speed_x), sink, topic)
            wall = time.perf_counter() - t0
            out.update(rows=n, wall_s=round(wall, 3), rows_per_s=round(n / wall) if wall > 0 else None)
    return out


def publish_command(args: argparse.Namespace) -> int:
    """``mpc-agent publish [PATH] [--topic T] [--speed X] [--parent-order FILE.json | --quantity Q ...]``."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    overrides = {
        "kafka": {"bootstrap_servers": g("bootstrap_servers")},
        "parent": {"json_path": g("parent_order"), "parent_id": g("parent_id"), "side": g("side"),
                   "quantity_shares": g("quantity"), "start": g("start"), "end": g("end"),
                   "period_s": g("period_s"), "symbol": g("symbol")},
    }
    cfg = load_config(g("config"), overrides)
    redact_logs(cfg)
    if not args.path and not (cfg.parent.json_path or cfg.parent.quantity_shares > 0):
        raise ConfigError("publish needs a data file PATH and/or a parent order (--parent-order FILE.json "
                          "or --quantity/--side/--start/--end)")
    res = asyncio.run(publish(cfg, path=args.path, topic=args.topic or cfg.topics.md, speed_x=args.speed or 0.0,
                              fmt=g("format") or "auto", symbol=g("symbol")))
    print(json.dumps(res))
    return 0
