"""The ``exec.agent-state`` topic: write per-parent crash-recovery records, read them back, restore.

Records are ``agent_state.v1`` messages (:class:`feeds.wire.messages.AgentStateMsg`),
key = ``parent_id``, on a compacted topic, so the newest record of every
parent survives. The ``engine`` field carries
:meth:`agent.core.engine.ExecutionEngine.snapshot`.

- :class:`StateTracker` (engine thread): the records of the parents whose
  engine record changed since they were last written (an ended parent once),
  tombstones of parents dropped after their retention, the kill switch;
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
from agent.core.parent_state import COMPLETED
from agent.live.kill_switch import KILL_SWITCH_KEY, KillSwitch, KillSwitchCommand, parse_record

log = logging.getLogger("agent.state")

LATE_FILL_WINDOW_S = 60.0
"""A cancelled or expired parent is checked for late fills every step for this long after it ended."""
FROZEN_RECHECK_S = 5.0
"""Then every this many seconds (one pass over the ended parents kept for their retention)."""


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
    """Which state records must be written (called on the engine thread).

    - a parent's record when its engine record changed since it was last written;
      for a parent that has *ended* the symbol's market state inside the record is
      left out of the comparison (it moves with every market-data step, and an
      ended parent never decides again), so an ended parent is written once, and
      again only if a late fill changes it. A completed parent cannot change any
      more; a cancelled or expired one is checked every step for
      :data:`LATE_FILL_WINDOW_S` after it ended (fills of child orders sent before
      the end), then every :data:`FROZEN_RECHECK_S`: a step does not pay for the
      ended parents kept for their retention;
    - a tombstone (value None) for a parent written before that the engine no
      longer holds (dropped after ``service.ended_parent_retention_s``); parents
      handed to another agent are :meth:`forget`-ten first and get none;
    - the kill switch under :data:`agent.live.kill_switch.KILL_SWITCH_KEY` when it
      changed since it was last written or read.

    Parameters
    ----------
    engine : the decision core whose parents are tracked.
    agent_id : written into every record (who wrote it).
    kill_switch : the process's switch (None: not persisted).
    clock : monotonic seconds (the late-fill window).
    """

    def __init__(self, engine: ExecutionEngine, agent_id: str, kill_switch: KillSwitch | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.agent_id, self.kill_switch, self.clock = engine, agent_id, kill_switch, clock
        self.written: dict[str, dict[str, Any]] = {}  # parent_id -> last record written (committed or pending)
        self.kill_written: KillSwitchCommand | None = None  # last kill-switch state written or read
        self._ended: dict[str, tuple[Any, ...]] = {}  # parent_id -> fingerprint of its final record
        self._ended_at: dict[str, float] = {}
        self._frozen: set[str] = set()  # ended, written, out of the late-fill window
        self._recheck_at = 0.0

    def collect(self) -> list[tuple[str, bytes | None]]:
        """``(key, value)`` of every record to write in this step (value None = tombstone).

        The caller produces them in the transaction of the step; on abort the
        process (or service) restarts from the topic, so ``written`` never
        runs ahead of what a successor would read."""
        out: list[tuple[str, bytes | None]] = []
        parents = self.engine.parents
        now = self.clock()
        if self._frozen and now >= self._recheck_at:
            self._frozen.clear()  # every FROZEN_RECHECK_S: one pass over all of them
            self._recheck_at = now + FROZEN_RECHECK_S
        frozen = self._frozen
        for pid in [p for p in parents if p not in frozen] if frozen else list(parents):
            st = parents[pid]
            if st.done:
                fp = _fingerprint(st)
                if self._ended.get(pid) == fp:
                    if st.status == COMPLETED or now - self._ended_at.get(pid, now) >= LATE_FILL_WINDOW_S:
                        self._frozen.add(pid)
                    continue
                rec = self.engine.snapshot(pid)
                prev = self.written.get(pid)
                self._ended[pid] = fp
                self._ended_at.setdefault(pid, now)
                if prev is not None and _without_market(prev) == _without_market(rec):
                    continue
            else:
                rec = self.engine.snapshot(pid)
                if self.written.get(pid) == rec:
                    continue
            self.written[pid] = rec
            out.append((pid, state_message(self.engine, pid, rec, self.agent_id)))
        for pid in self.written.keys() - parents.keys():
            del self.written[pid]
            out.append((pid, None))
            self._untrack(pid)
        ks = self.kill_switch
        if ks is not None and ks.state.ts_ns and ks.state != self.kill_written:
            self.kill_written = ks.state
            out.append((KILL_SWITCH_KEY, ks.record()))
        return out

    def forget(self, parent_ids: Iterable[str]) -> None:
        """Stop tracking parents another agent owns now (no tombstone for them)."""
        for pid in parent_ids:
            self.written.pop(pid, None)
            self._untrack(pid)

    def _untrack(self, pid: str) -> None:
        self._ended.pop(pid, None)
        self._ended_at.pop(pid, None)
        self._frozen.discard(pid)


def _fingerprint(st: Any) -> tuple[Any, ...]:
    return (st.status, st.filled, st.notional, len(st.fill_ids), st.next_period)


def _without_market(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "symbol"}


def restore(engine: ExecutionEngine, tracker: StateTracker | None, records: dict[str, dict[str, Any]],
            owns: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Restore every record whose symbol this agent owns and whose parent the engine lacks.

    The kill-switch record (key :data:`KILL_SWITCH_KEY`) is merged into the tracker's
    switch (the newer change wins) and applied to the engine. Returns one summary per
    restored parent (``parent_id``, ``symbol``, ``status``, ``remaining``, ``next_period``)
    for the structured restore log line. Ended parents come back ended (late fills still
    count, ``GET /parents`` lists them until their retention passes), never active."""
    out: list[dict[str, Any]] = []
    kill = records.get(KILL_SWITCH_KEY)
    if kill is not None and tracker is not None and tracker.kill_switch is not None:
        cmd = parse_record(kill)
        if cmd is not None:
            tracker.kill_switch.merge(cmd)
            if tracker.kill_switch.state == cmd:
                tracker.kill_written = cmd
            tracker.kill_switch.apply(engine)
    for pid, msg in sorted(records.items()):
        if pid == KILL_SWITCH_KEY:
            continue
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
