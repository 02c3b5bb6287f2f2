"""The chaos soak's market: paced wall-clock books for every symbol with hostile messages interleaved.

A thread with its own confluent-kafka producer (murmur2 partitioner, key =
symbol, idempotent, buffering through broker outages for up to five
minutes: books delivered late are stale and must not trigger orders):

- every ``1 / md_hz`` seconds one book per symbol, stamped with the wall
  clock (a random walk of the mid, a trade every third row);
- hostile messages from ``tests/integration/hostile.py`` spread evenly over
  ``[hostile_from_s, hostile_to_s)``, half on the market-data topic, a
  quarter each on the parent-order and fill topics, each keyed by a traded
  symbol. Where the expected reason would depend on the agent's state or on
  when it is read, the message is made independent of both: backward
  timestamps are ancient, future ones at least an hour ahead, no
  ``parent_done`` fills (the parent's record may be gone); oversize payloads
  (1 MiB each) are capped at ``max_oversize``, deep nesting mostly replaced.

Every hostile message's (topic, partition, offset) comes from its delivery
report: the checks find its DLQ copy by the ``source.*`` headers.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.integration import hostile as hz
from tests.integration.outside import Producer

NS = 1_000_000_000
ONE_MIB = 1 << 20


@dataclass
class Sent:
    """What the feed published (filled in by delivery reports)."""

    md: int = 0
    hostile: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (topic, partition, offset) -> reason
    hostile_by_topic: dict[str, int] = field(default_factory=dict)
    failed: int = 0


class Feed(threading.Thread):
    """Books and hostile messages until :meth:`stop` (see the module docstring)."""

    def __init__(self, bootstrap: str, topics: Any, symbols: list[str], parents: dict[str, str], *,
                 md_hz: float, hostile: int, hostile_from_s: float, hostile_to_s: float, seed: int,
                 max_oversize: int = 20) -> None:
        super().__init__(name="chaos-feed", daemon=True)
        self.topics, self.symbols, self.parents = topics, symbols, parents  # parents: symbol -> a live parent id
        self.md_hz, self.hostile_total = md_hz, hostile
        self.window = (hostile_from_s, hostile_to_s)
        self.rng = random.Random(seed)
        self.max_oversize, self.oversize = max_oversize, 0
        self.sent = Sent()
        self.producer = Producer(bootstrap, **{"message.max.bytes": 2 * ONE_MIB + 65536, "log_level": 2,
                                               "queue.buffering.max.kbytes": 512 * 1024})
        self._halt = threading.Event()
        self._mid = {s: 10.0 + 0.5 * i for i, s in enumerate(symbols)}
        self._k = 0
        self.t0 = time.monotonic()

    def stop(self) -> None:
        self._halt.set()

    # ------------------------------------------------------------ good rows
    def _book(self, symbol: str, ts: int) -> bytes:
        mid = self._mid[symbol] = max(1.0, self._mid[symbol] + self.rng.choice((-0.01, 0.0, 0.01)))
        bids = [round(mid - 0.01 * (i + 1), 2) for i in range(5)]
        asks = [round(mid + 0.01 * (i + 1), 2) for i in range(5)]
        trade = self._k % 3 == 0
        return hz.dumps({"schema": "mbp10.v1", "symbol": symbol, "ts_event": ts, "ts_recv": ts,
                         "action": "T" if trade else "A", "side": "B" if trade else "A",
                         "price": asks[0] if trade else asks[1], "size": 400.0 if trade else 100.0,
                         "bid_px": bids, "bid_sz": [500.0] * 5, "ask_px": asks, "ask_sz": [500.0] * 5})

    # -------------------------------------------------------------- hostile
    def _hostile(self) -> tuple[str, str, bytes | None, str]:
        """``(topic, key symbol, value, expected reason)`` of one hostile message."""
        r = self.rng.random()
        kind, topic = ((hz.MD, self.topics.md) if r < 0.5 else
                       (hz.PARENT, self.topics.parent_orders) if r < 0.75 else (hz.FILL, self.topics.fills))
        symbol = self.rng.choice(self.symbols)
        now = time.time_ns()
        while True:
            ctx = hz.Context(now_ns=now, last_good_ns=now, max_bytes=ONE_MIB, symbol=symbol,
                             live_parent=self.parents[symbol], done_parent="NONE", serial=self.rng.randrange(10**9))
            value, reason = hz.hostile(kind, ctx, self.rng)
            if reason == "parent_done":
                continue
            if reason == "oversize":
                if self.oversize >= self.max_oversize:
                    continue
                self.oversize += 1
            if reason == "invalid_json" and value is not None and len(value) > 8192 and self.rng.random() < 0.8:
                continue
            if reason in ("ts_backwards", "ts_future") and kind == hz.MD:
                d = json.loads(value or b"{}")
                d["ts_event"] = (self.rng.choice((1, 10**15 + 1)) if reason == "ts_backwards"
                                 else now + 3600 * NS + 2 * self.rng.randrange(10**9) + 1)
                value = hz.dumps(d)
            return topic, symbol, value, reason

    def _report(self, reason: str | None):  # type: ignore[no-untyped-def]
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self.sent.failed += 1
            elif reason is None:
                self.sent.md += 1
            else:
                self.sent.hostile[(msg.topic(), msg.partition(), msg.offset())] = reason
                self.sent.hostile_by_topic[msg.topic()] = self.sent.hostile_by_topic.get(msg.topic(), 0) + 1
        return done

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        p = self.producer
        period = 1.0 / self.md_hz
        n_hostile = 0
        next_t = time.monotonic()
        while not self._halt.is_set():
            ts = time.time_ns()
            for s in self.symbols:
                p.send(self.topics.md, self._book(s, ts), key=s.encode(), on_delivery=self._report(None))
            self._k += 1
            elapsed = time.monotonic() - self.t0
            a, b = self.window
            due = int(self.hostile_total * min(1.0, max(0.0, (elapsed - a) / (b - a))))
            while n_hostile < due and not self._halt.is_set():
                topic, symbol, value, reason = self._hostile()
                p.send(topic, value, key=symbol.encode(), on_delivery=self._report(reason))
                n_hostile += 1
            next_t += period
            self._halt.wait(max(0.0, next_t - time.monotonic()))
        p.flush(120.0)
