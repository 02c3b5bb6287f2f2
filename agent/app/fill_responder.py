"""Simulated venue: answers child orders with fills from the replay simulator.

Two uses of the same :class:`SimulatedVenue` (one ``FillSimulator`` per symbol
over the recorded book, each child executed at its decision time
``child.ts_event`` plus the simulator latency):

- in process, as the ``venue`` of ``agent.live.service.AgentService`` for
  ``mpc-agent run --feed file`` (fills reach the engine before its next
  decision, like ``replay.runner``);
- over Kafka, as :class:`FillResponder` / ``python -m agent.app.fill_responder``:
  consume ``child_order.v1`` from ``exec.child-orders``, publish ``fill.v1`` on
  ``exec.fills`` (key = parent_id). A child seen twice (redelivery) is not
  executed again. This is a demo/test venue: it knows the recorded book of
  the whole file, which the agent only sees as it is published.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence

from agent.core.errors import DataError
from agent.core.model import ChildOrder, Fill
from feeds.book import BookBatch
from feeds.kafka import KafkaConnection, KafkaSink, KafkaSource
from feeds.ports import OutRecord, Record, Sink, Source
from feeds.wire import codec
from replay.simulator import FillSimulator, SimulatorSettings

log = logging.getLogger("agent.app.fill_responder")


class SimulatedVenue:
    """``venue(child) -> fills``: one ``FillSimulator`` per symbol of ``book``."""

    def __init__(self, book: BookBatch, settings: SimulatorSettings | None = None) -> None:
        self.sims = {s: FillSimulator(book.for_symbol(s), settings) for s in book.symbols()}
        self.children: list[ChildOrder] = []
        self.fills: list[Fill] = []
        self._done: set[str] = set()

    def __call__(self, child: ChildOrder) -> list[Fill]:
        sim = self.sims.get(child.symbol)
        if sim is None or child.child_order_id in self._done:
            return []
        self._done.add(child.child_order_id)
        fills = sim.execute(child, child.ts_event)
        self.children.append(child)
        self.fills.extend(fills)
        return fills


class FillResponder:
    """Kafka loop: child orders in, simulated fills out (see the module docstring)."""

    def __init__(self, venue: SimulatedVenue, source: Source, sink: Sink, *,
                 fills_topic: str = "exec.fills") -> None:
        self.venue, self.source, self.sink, self.fills_topic = venue, source, sink, fills_topic
        self._stop = asyncio.Event()
        self.rejected = 0

    def request_stop(self) -> None:
        """Make :meth:`run` return after the current batch (SIGTERM/SIGINT)."""
        self._stop.set()

    async def start(self) -> None:
        await self.sink.start()
        await self.source.start()

    async def stop(self) -> None:
        """Stop the consumer and flush/close the producer (idempotent)."""
        self._stop.set()
        await self.source.stop()
        await self.sink.stop()

    async def __aenter__(self) -> FillResponder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Answer child orders until :meth:`request_stop` (starts and stops the feeds itself)."""
        async with self:
            while not self._stop.is_set():
                got = await self.source.getmany(timeout_ms=100, max_records=1000)
                out: list[OutRecord] = []
                for recs in got.values():
                    for rec in recs:
                        out.extend(self._answer(rec))
                if out:
                    await self.sink.send_many(out)

    def _answer(self, rec: Record) -> list[OutRecord]:
        try:
            msg = codec.decode(rec.value or b"", expected={"child_order.v1"})
        except DataError as exc:
            self.rejected += 1
            log.warning("ignoring bad child order at offset %d: %s", rec.offset, exc)
            return []
        if not isinstance(msg, codec.ChildOrderMsg):
            return []
        # key = symbol: with several agents in one group the fill reaches the agent owning the symbol
        return [OutRecord(self.fills_topic, codec.encode(codec.fill_from_model(f)), key=msg.symbol.encode())
                for f in self.venue(codec.child_to_model(msg))]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.app.fill_responder --data PATH [--bootstrap-servers H:P]``."""
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m agent.app.fill_responder", description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", required=True, metavar="PATH")
    p.add_argument("--format", default="auto")
    p.add_argument("--bootstrap-servers", default=env("MPC_AGENT_KAFKA__BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--child-topic", default=env("MPC_AGENT_TOPICS__CHILD_ORDERS", "exec.child-orders"))
    p.add_argument("--fills-topic", default=env("MPC_AGENT_TOPICS__FILLS", "exec.fills"))
    p.add_argument("--group-id", default="mpc-fill-responder")
    p.add_argument("--latency-ms", type=float, default=5.0)
    p.add_argument("--recovery-half-life-s", type=float, default=30.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from feeds.files.readers import read_book

    book = read_book(args.data, args.format).batch
    venue = SimulatedVenue(book, SimulatorSettings(latency_ms=args.latency_ms,
                                                   recovery_half_life_s=args.recovery_half_life_s))
    conn = KafkaConnection(bootstrap_servers=args.bootstrap_servers, client_id="mpc-fill-responder")
    responder = FillResponder(venue, KafkaSource(conn, [args.child_topic], group_id=args.group_id),
                              KafkaSink(conn), fills_topic=args.fills_topic)

    async def _run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, responder.request_stop)
        await responder.run()

    asyncio.run(_run())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
