"""``mpc-agent publish``: a data file (paced), a parent order, a cancel or a kill switch onto Kafka.

Progress goes to stderr: a line when a paced publication starts (rows, pace, expected
duration), a tqdm bar (rows, data time) on a terminal, and one summary line at the end;
stdout gets the JSON result only (for scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
import time
from typing import Any

from agent.app.builder import kafka_connection, redact_logs
from agent.app.config import AgentConfig, load_config
from agent.app.parents import parent_from_config
from agent.core.errors import ConfigError

log = logging.getLogger("agent.app.publish")


def _note(text: str) -> None:
    print(f"publish: {text}", file=sys.stderr, flush=True)


def _clock(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).strftime("%H:%M:%S")


async def publish(cfg: AgentConfig, *, path: str | None, topic: str, speed_x: float,
                  fmt: str = "auto", symbol: str | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Publish the parent order of ``cfg.parent`` (JSON file or flags), then a data file paced
    at ``speed_x``, to Kafka; return counts. ``HH:MM`` parent times use the data's day.

    ``progress``: the tqdm bar on stderr (None: only when stderr is a terminal).
    """
    from tqdm import tqdm

    from feeds.file_feed import FileFeed, encode_rows
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
            _note(f"parent order {parent.parent_id} ({parent.side} {parent.quantity:g} {parent.symbol}) "
                  f"on {cfg.topics.parent_orders}")
        if book is not None and len(book):
            span_s = (int(book.ts_event[-1]) - int(book.ts_event[0])) / 1e9
            pace = f"at {speed_x:g}x real time, about {span_s / speed_x / 60:.1f} min" if speed_x > 0 \
                else "as fast as possible"
            _note(f"{len(book):,} rows of {path} ({_clock(int(book.ts_event[0]))}-{_clock(int(book.ts_event[-1]))} "
                  f"UTC) to {topic} {pace}")
            feed = FileFeed(book, speed_x=speed_x)
            bar = tqdm(total=len(book), unit="row", unit_scale=True, file=sys.stderr, delay=1.0,
                       desc="publish", disable=(not sys.stderr.isatty()) if progress is None else not progress)
            sent = 0
            t0 = time.perf_counter()
            try:
                async for chunk in feed:
                    records = encode_rows(chunk, topic, first_sequence=feed.pos - len(chunk))
                    if records:
                        await sink.send_many(records)
                    sent += len(records)
                    bar.update(len(chunk))
                    bar.set_postfix_str(f"data {_clock(int(chunk.ts_event[-1]))}", refresh=False)
            finally:
                bar.close()
            wall = time.perf_counter() - t0
            out.update(rows=sent, skipped=len(book) - sent, wall_s=round(wall, 3),
                       rows_per_s=round(sent / wall) if wall > 0 else None)
    parts = [f"parent order {out['parent_order']}"] if "parent_order" in out else []
    if "rows" in out:
        skipped = f", {out['skipped']:,} skipped (refused by the wire schema)" if out["skipped"] else ""
        parts.append(f"{out['rows']:,} rows to {topic} in {out['wall_s']:.1f} s "
                     f"({out['rows_per_s'] or 0:,} rows/s){skipped}")
    _note("done: " + ("; ".join(parts) or "nothing to publish (empty file)"))
    return out


async def publish_cancel(cfg: AgentConfig, parent_id: str, symbol: str, reason: str | None = None) -> dict[str, Any]:
    """Put a ``parent_cancel.v1`` for ``parent_id`` on the parent-orders topic, keyed by ``symbol``
    (the key of the parent order itself: the cancel reaches the agent that owns the parent)."""
    from feeds.kafka import KafkaSink
    from feeds.wire import codec
    from feeds.wire.messages import ParentCancelMsg

    msg = codec.build(ParentCancelMsg, parent_id=parent_id, ts_event=time.time_ns(), reason=reason)
    topic = cfg.topics.parent_orders
    async with KafkaSink(kafka_connection(cfg)) as sink:
        await sink.send(topic, codec.encode(msg), key=symbol.encode())
    _note(f"done: parent_cancel.v1 for {parent_id} (key {symbol}) on {topic}")
    return {"topic": topic, "parent_cancel": parent_id, "symbol": symbol}


async def publish_kill_switch(cfg: AgentConfig, on: bool, reason: str) -> dict[str, Any]:
    """Put a ``kill_switch.v1`` on *every* partition of the parent-orders topic: a record reaches only
    the agent that consumes its partition, so one copy per partition reaches every agent of the group."""
    from feeds.kafka import KafkaSink
    from feeds.wire import codec
    from feeds.wire.messages import KillSwitchMsg

    msg = codec.build(KillSwitchMsg, on=on, reason=reason, ts_event=time.time_ns(), source="mpc-agent publish")
    topic = cfg.topics.parent_orders
    async with KafkaSink(kafka_connection(cfg)) as sink:
        parts = sorted(await sink.producer.partitions_for(topic))
        for p in parts:
            await sink.producer.send_and_wait(topic, codec.encode(msg), key=b"__kill_switch__", partition=p)
    _note(f"done: kill_switch.v1 {'ON' if on else 'off'} ({reason}) on {topic} partition(s) {parts}")
    return {"topic": topic, "kill_switch": on, "reason": reason, "partitions": parts}


def publish_command(args: argparse.Namespace) -> int:
    """``mpc-agent publish [PATH] [--topic T] [--speed X] [--parent-order FILE.json | --quantity Q ...]``
    or ``mpc-agent publish --cancel PARENT_ID --symbol SYM [--reason TEXT]``
    or ``mpc-agent publish --kill-switch on|off --reason TEXT``."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    overrides = {
        "kafka": {"bootstrap_servers": g("bootstrap_servers")},
        "parent": {"json_path": g("parent_order"), "parent_id": g("parent_id"), "side": g("side"),
                   "quantity_shares": g("quantity"), "start": g("start"), "end": g("end"),
                   "period_s": g("period_s"), "symbol": g("symbol")},
    }
    cfg = load_config(g("config"), overrides)
    redact_logs(cfg)
    cancel: str | None = g("cancel")
    symbol: str | None = g("symbol")
    kill: str | None = g("kill_switch")
    if kill:
        reason = (g("reason") or "").strip()
        if not reason:
            raise ConfigError("publish --kill-switch on|off needs --reason TEXT: every agent logs it and keeps it "
                              "in the state topic")
        if cancel or args.path or g("parent_order") or g("quantity"):
            raise ConfigError("publish --kill-switch sends only the kill switch: drop PATH, --cancel, "
                              "--parent-order and --quantity")
        res = asyncio.run(publish_kill_switch(cfg, kill == "on", reason))
        print(json.dumps(res))
        return 0
    if cancel:
        if not symbol:
            raise ConfigError("publish --cancel PARENT_ID needs --symbol SYMBOL: the cancel is keyed by the "
                              "parent's symbol so that it reaches the agent owning that parent")
        if args.path or g("parent_order") or g("quantity"):
            raise ConfigError("publish --cancel sends only the cancel: drop PATH, --parent-order and --quantity")
        res = asyncio.run(publish_cancel(cfg, cancel, symbol, g("reason")))
        print(json.dumps(res))
        return 0
    if not args.path and not (cfg.parent.json_path or cfg.parent.quantity_shares > 0):
        raise ConfigError("publish needs a data file PATH and/or a parent order (--parent-order FILE.json "
                          "or --quantity/--side/--start/--end), or --cancel PARENT_ID --symbol SYMBOL")
    res = asyncio.run(publish(cfg, path=args.path, topic=args.topic or cfg.topics.md, speed_x=args.speed or 0.0,
                              fmt=g("format") or "auto", symbol=g("symbol"), progress=g("progress")))
    print(json.dumps(res))
    return 0
