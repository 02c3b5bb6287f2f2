"""The ``exec.agent-state`` topic: write per-parent crash-recovery records, read them back, restore.

Records are ``agent_state.v1`` messages (:class:`feeds.wire.messages.AgentStateMsg`),
key = ``parent_id``, on a compacted topic, so the newest record of every
parent survives. The ``engine`` field carries
:meth:`agent.core.engine.ExecutionEngine.snapshot`.

- :class:`StateTracker` (engine thread): the records of the parents whose
  engine record changed since they were last written;
- :func:`read_state` (event loop): every parent's newest *committed* record
  (``read_committed``: records of aborted or still-open transactions stay
  invisible), read from the beginning to the end offsets taken at the start;
- :func:`restore` (engine thread): rebuild the parents this agent owns;
- :func:`symbol_partition`: which input partition a symbol maps to (key =
  symbol, Kafka's default murmur2 partitioner), i.e. which agent of the
  consumer group owns the symbol's parents.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.core.engine import ExecutionEngine

log = logging.getLogger("agent.state")


def symbol_partition(symbol: str, n_partitions: int) -> int:
    """Partition of key ``symbol`` under Kafka's default partitioner:
    ``(murmur2(key) & 0x7fffffff) % n_partitions``."""
    from aiokafka.partitioner import murmur2

    return (murmur2(symbol.encode()) & 0x7FFFFFFF) % n_partitions


def state_message(engine: ExecutionEngine, parent_id: str, record: dict[str, Any], agent_id: str) -> bytes:
    """The ``agent_state.v1`` value of one parent (summary fields + the engine record)."""
    from feeds.wire import codec
    from feeds.wire.messages import AgentStateMsg

    st = engine.parents[parent_id]
    msg = codec.build(
        AgentStateMsg, parent_id=parent_id, ts_event=time.time_ns(), status=st.status,
        remaining=max(0.0, float(st.remaining)), filled_quantity=max(0.0, float(st.filled)),
        agent_id=agent_id, engine=record,
    )
    return msg.model_dump_json(by_alias=True).encode()


class StateTracker:
    """Which parents' records must be written (called on the engine thread).

    Parameters
    ----------
    engine : the decision core whose parents are tracked.
    agent_id : written into every record (who wrote it).
    """

    def __init__(self, engine: ExecutionEngine, agent_id: str) -> None:
        self.engine, self.agent_id = engine, agent_id
        self.written: dict[str, dict[str, Any]] = {}  # parent_id -> last record written (committed or pending)

    def collect(self) -> list[tuple[str, bytes]]:
        """``(parent_id, value)`` for every parent whose engine record differs from the last one written.

        The caller produces them in the transaction of the step; on abort the
        process (or service) restarts from the topic, so ``written`` never
        runs ahead of what a successor would read."""
        out: list[tuple[str, bytes]] = []
        for pid in list(self.engine.parents):
            rec = self.engine.snapshot(pid)
            if self.written.get(pid) != rec:
                self.written[pid] = rec
                out.append((pid, state_message(self.engine, pid, rec, self.agent_id)))
        return out

    def forget(self, parent_ids: Iterable[str]) -> None:
        for pid in parent_ids:
            self.written.pop(pid, None)


def restore(engine: ExecutionEngine, tracker: StateTracker | None, records: dict[str, dict[str, Any]],
            owns: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Restore every record whose symbol this agent owns and whose parent the engine lacks.

    Returns one summary per restored parent (``parent_id``, ``symbol``, ``status``,
    ``remaining``, ``next_period``) for the structured restore log line."""
    out: list[dict[str, Any]] = []
    for pid, msg in sorted(records.items()):
        rec = msg.get("engine") or {}
        sym = str(rec.get("parent", {}).get("symbol", ""))
        if pid in engine.parents or not rec or not owns(sym):
            continue
        try:
            engine.restore(rec)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("cannot restore parent %s from the state topic: %s", pid, exc)
            continue
        st = engine.parents[pid]
        if tracker is not None:
            tracker.written[pid] = rec
        out.append({"parent_id": pid, "symbol": sym, "status": st.status, "remaining": float(st.remaining),
                    "next_period": int(st.next_period)})
    return out


def drop_unowned(engine: ExecutionEngine, tracker: StateTracker | None, owns: Callable[[str], bool]) -> list[str]:
    """Forget the parents of symbols this agent no longer owns (another agent restores them)."""
    gone = [pid for pid, st in engine.parents.items() if not owns(st.parent.symbol)]
    for pid in gone:
        engine.drop(pid)
    if tracker is not None:
        tracker.forget(gone)
    return gone


async def read_state(consumer_factory: Callable[[str], Any], topic: str, *,
                     timeout_s: float = 60.0, wait_stable: bool = True) -> dict[str, dict[str, Any]]:
    """Newest committed record per ``parent_id`` of ``topic`` (tombstones delete).

    ``consumer_factory(isolation_level)`` returns an unstarted group-less
    ``AIOKafkaConsumer``. The high watermarks are taken first; then, under
    ``read_committed``, the function waits until the last stable offset of
    every partition reaches them (every transaction open at that moment has
    committed or aborted: a killed agent's open transaction is aborted by the
    broker after ``transaction.timeout.ms``) and reads the topic up to them.
    Without that wait, a record committed by a live agent *after* a dead
    agent's open transaction would be missed. ``wait_stable=False`` reads up
    to the last stable offsets instead (what is committed now, e.g. a single
    writer's state just after it was killed). Undecodable records are skipped.
    """
    import asyncio

    from aiokafka import TopicPartition as TP

    deadline = time.monotonic() + timeout_s
    probe = consumer_factory("read_uncommitted")
    await probe.start()
    try:
        parts = probe.partitions_for_topic(topic)
        while not parts:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no metadata for state topic {topic!r}")
            await probe._client.force_metadata_update()
            parts = probe.partitions_for_topic(topic)
            if not parts:
                await asyncio.sleep(0.1)
        tps = [TP(topic, p) for p in sorted(parts)]
        high = await probe.end_offsets(tps)
    finally:
        await probe.stop()
    consumer = consumer_factory("read_committed")
    await consumer.start()
    out: dict[str, dict[str, Any]] = {}
    try:
        consumer.assign(tps)
        while True:
            stable = await consumer.end_offsets(tps)
            if not wait_stable:
                high = stable
            if all(stable[tp] >= high[tp] for tp in tps):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"state topic {topic!r}: open transactions not resolved within {timeout_s} s")
            await asyncio.sleep(0.2)
        await consumer.seek_to_beginning(*tps)
        newest: dict[str, tuple[Any, int, bytes | None]] = {}  # key -> (tp, offset, value): decode survivors only
        todo = {tp for tp in tps if high[tp] > 0}
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"state topic {topic!r} not read to its end within {timeout_s} s")
            batches = await consumer.getmany(*todo, timeout_ms=200)
            for tp, msgs in batches.items():
                for m in msgs:
                    if m.offset >= high[tp]:
                        continue
                    newest[m.key.decode() if m.key else ""] = (tp, m.offset, m.value)
            for tp in list(todo):
                if await consumer.position(tp) >= high[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    for key, (tp, offset, value) in newest.items():
        if value is None:  # tombstone
            continue
        try:
            out[key] = json.loads(value)
        except ValueError as exc:
            log.error("undecodable state record %s@%d: %s", tp, offset, exc)
    return out
