"""The ``exec.agent-state`` topic: write per-parent crash-recovery records, read them back, restore.

Two kinds of records share the compacted topic, so the newest of each key survives:

- ``agent_state.v1`` (:class:`feeds.wire.messages.AgentStateMsg`), key =
  ``parent_id``: one parent's engine record
  (:meth:`agent.core.engine.ExecutionEngine.snapshot` without the symbol's
  market state, ~0.5 kB), written in the step in which the parent changed
  (submitted, filled, decided, cancelled, expired), and only then; a
  tombstone (value None) when a parent is dropped after its retention;
- ``agent_market.v1`` (:class:`AgentMarketMsg`), key = :func:`market_key`
  (``" market:" + symbol``: a leading blank, which no ``parent_id`` may have):
  one symbol's market state (volume, volatility and cost-curve estimators and
  the book sampler's position), written when it has moved on by at least
  ``market_interval_s`` of event time since the symbol's last record,
  preferably in a step that decided nothing (a step with decisions carries one
  only when it is twice overdue), a few at a time; with ``market_interval_s``
  = 0 (exact, the default under the event clock) in every step that moved it;
- the kill switch, key :data:`agent.live.kill_switch.KILL_SWITCH_KEY`.

So a step costs one small record per parent that changed, not one large record
per parent (the market state changes with every row). With an interval, the
price: after a crash the market estimators resume from the symbol's last
record, up to ``market_interval_s`` of event time older than the committed
offsets; rows in between are not read again (estimators with half-lives of
minutes lose at most that much data). With 0 (and every row fed before its
offset is committed: :mod:`agent.live.delivery`) nothing is lost and a
restart decides exactly as an uninterrupted run. Parent records, child orders
and fills stay exactly once either way.

- :class:`StateTracker` (engine thread): the records of the parents that changed since
  they were last written, tombstones, the kill switch and the market records that are due;
- :func:`read_state` (event loop): every parent's newest *committed* record
  (``read_committed``: records of aborted or still-open transactions stay
  invisible), read from the beginning to the end offsets taken at the start;
- :func:`restore` (engine thread): the market states of the symbols this agent owns,
  then the parents it owns;
- :func:`symbol_partition`: which input partition a symbol maps to (key =
  symbol, Kafka's default murmur2 partitioner), i.e. which agent of the
  consumer group owns the symbol's parents.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from agent.core.engine import ExecutionEngine
from agent.core.errors import DataError
from agent.core.model import NS_PER_S
from agent.live.kill_switch import KILL_SWITCH_KEY, KillSwitch, KillSwitchCommand, parse_record
from feeds.wire.messages import Text, TimestampNs, WireMessage

log = logging.getLogger("agent.state")

MARKET_PREFIX = " market:"
MARKET_INTERVAL_S = 10.0
"""Default event time between two market records of a symbol (seconds)."""
MARKET_RECORDS_PER_STEP = 8
"""At most this many market records in one step's transaction."""


class AgentMarketMsg(WireMessage):
    """``agent_market.v1``: one symbol's market state (key :func:`market_key`, compacted state topic).

    ``market`` is :meth:`agent.core.engine.ExecutionEngine.market_snapshot`, restored with
    :meth:`~agent.core.engine.ExecutionEngine.restore_market`; ``last_ts`` its newest event time.
    """

    SCHEMA: ClassVar[str] = "agent_market.v1"
    schema_: Literal["agent_market.v1"] = Field("agent_market.v1", alias="schema")
    symbol: Text
    ts_event: TimestampNs
    last_ts: int
    agent_id: str = ""
    market: dict[str, Any] = Field(default_factory=dict)


def parent_records(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The parents' records of :func:`read_state`'s result (market and kill-switch records left out)."""
    return {k: v for k, v in records.items() if not k.startswith(MARKET_PREFIX) and k != KILL_SWITCH_KEY}


def market_key(symbol: str) -> str:
    """State-topic key of a symbol's market record (never a valid ``parent_id``: leading blank)."""
    return MARKET_PREFIX + symbol


@functools.lru_cache(maxsize=65536)
def symbol_partition(symbol: str, n_partitions: int) -> int:
    """Partition of key ``symbol`` under Kafka's default partitioner:
    ``(murmur2(key) & 0x7fffffff) % n_partitions`` (cached: aiokafka's murmur2 is pure Python and
    every output record of a step is routed by it)."""
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


def market_message(engine: ExecutionEngine, symbol: str, agent_id: str) -> bytes:
    """The ``agent_market.v1`` value of one symbol."""
    from feeds.wire import codec

    mkt = engine.market(symbol)
    msg = codec.build(AgentMarketMsg, symbol=symbol, ts_event=time.time_ns(), last_ts=int(mkt.last_ts),
                      agent_id=agent_id, market=pack_arrays(engine.market_snapshot(symbol)))
    return msg.model_dump_json(by_alias=True).encode()


PACKED = "f64le_b64"
"""A list of floats packed as base64 of little-endian float64 bytes (exact, ~3x smaller than JSON)."""
_PACK_MIN = 64


def pack_arrays(state: Any) -> Any:
    """``state`` with every list of at least 64 floats replaced by ``{"f64le_b64": ...}``: a symbol's
    cost curves hold six 705-point lattices, ~70 kB as JSON numbers, ~45 kB packed (under a 64 KiB
    ``max_message_bytes``)."""
    if isinstance(state, dict):
        return {k: pack_arrays(v) for k, v in state.items()}
    if isinstance(state, list):
        if len(state) >= _PACK_MIN and all(isinstance(x, float) for x in state):
            return {PACKED: base64.b64encode(np.asarray(state, dtype="<f8").tobytes()).decode()}
        return [pack_arrays(v) for v in state]
    return state


def unpack_arrays(state: Any) -> Any:
    """The inverse of :func:`pack_arrays`."""
    if isinstance(state, dict):
        if set(state) == {PACKED}:
            return np.frombuffer(base64.b64decode(state[PACKED]), dtype="<f8").tolist()
        return {k: unpack_arrays(v) for k, v in state.items()}
    if isinstance(state, list):
        return [unpack_arrays(v) for v in state]
    return state


class StateTracker:
    """Which records must be written (called on the engine thread; see the module docstring).

    - a parent's record when the engine reports it changed and its record differs from the
      last one written (an ended parent once, and again only if a late fill changes it);
    - a tombstone (value None) for a parent written before that the engine no longer holds
      (dropped after ``service.ended_parent_retention_s``); parents handed to another agent
      are :meth:`forget`-ten first and get none;
    - the kill switch under :data:`agent.live.kill_switch.KILL_SWITCH_KEY` when it changed
      since it was last written or read;
    - the market records that are due (:meth:`collect`).

    Parameters
    ----------
    engine : the decision core whose parents are tracked.
    agent_id : written into every record (who wrote it).
    kill_switch : the process's switch (None: not persisted).
    market_interval_s : event time between two market records of a symbol; 0 = exact: a record of
        every active symbol whose market state moved, in every step (no per-step cap, decisions or not).
    """

    def __init__(self, engine: ExecutionEngine, agent_id: str, kill_switch: KillSwitch | None = None, *,
                 market_interval_s: float = MARKET_INTERVAL_S) -> None:
        self.engine, self.agent_id, self.kill_switch = engine, agent_id, kill_switch
        self.market_interval_ns = round(market_interval_s * NS_PER_S)
        self.written: dict[str, dict[str, Any]] = {}  # parent_id -> last record written (committed or pending)
        self.market_written: dict[str, int] = {}  # symbol -> last_ts of its last market record
        self.market_seen: dict[str, int] = {}  # symbol -> SymbolMarket.updates at its last market record
        self.kill_written: KillSwitchCommand | None = None  # last kill-switch state written or read
        self._dropped: dict[str, str] = {}  # parent_id -> symbol of the last collect()'s tombstones

    def collect(self) -> list[tuple[str, bytes | None]]:
        """``(key, value)`` of every record to write in this step (value None = tombstone): every
        parent whose engine record differs from the last one written (only parents the engine
        reports as changed are looked at), tombstones, the kill switch, then the symbols with an
        active parent whose market state is due: at most :data:`MARKET_RECORDS_PER_STEP` a step, and
        in a step that wrote parent records (a decision or a fill: latency first) only when overdue
        (twice the interval).

        The caller produces them in the transaction of the step; on abort the
        process (or service) restarts from the topic, so ``written`` never
        runs ahead of what a successor would read."""
        out: list[tuple[str, bytes | None]] = []
        eng = self.engine
        parents = eng.parents
        for pid in eng.pop_changed():
            if pid not in parents:
                continue
            rec = eng.snapshot(pid, market=False)
            if self.written.get(pid) != rec:
                self.written[pid] = rec
                out.append((pid, state_message(eng, pid, rec, self.agent_id)))
        self._dropped.clear()
        if len(self.written) > len(parents) or not self.written.keys() <= parents.keys():
            for pid in self.written.keys() - parents.keys():  # dropped after their retention
                self._dropped[pid] = str(self.written.pop(pid)["parent"]["symbol"])
                out.append((pid, None))
        ks = self.kill_switch
        if ks is not None and ks.state.ts_ns and ks.state != self.kill_written:
            self.kill_written = ks.state
            out.append((KILL_SWITCH_KEY, ks.record()))
        busy, room, interval = bool(out), MARKET_RECORDS_PER_STEP, self.market_interval_ns
        for sym in list(eng.next_decisions()):  # symbols with an active parent
            mkt = eng.market(sym)
            last_ts = mkt.last_ts
            if last_ts <= -(2**62):
                continue
            if interval == 0:  # exact: every symbol whose state moved, in this step's transaction
                if self.market_seen.get(sym) != mkt.updates:
                    self.market_seen[sym] = mkt.updates
                    self.market_written[sym] = last_ts
                    out.append((market_key(sym), market_message(eng, sym, self.agent_id)))
                continue
            if not room:
                continue
            age = last_ts - self.market_written.setdefault(sym, last_ts - interval)  # first seen: due
            if age >= interval and (not busy or age >= 2 * interval):
                self.market_written[sym] = last_ts
                room -= 1
                out.append((market_key(sym), market_message(eng, sym, self.agent_id)))
        return out

    def symbol_of(self, key: str) -> str | None:
        """The symbol of a record :meth:`collect` returned (its partition's transaction carries it);
        None for the kill switch (every partition's)."""
        if key.startswith(MARKET_PREFIX):
            return key[len(MARKET_PREFIX):]
        rec = self.written.get(key)
        return str(rec["parent"]["symbol"]) if rec is not None else self._dropped.get(key)

    def forget(self, parent_ids: Iterable[str]) -> None:
        """Stop tracking parents another agent owns now (no tombstone for them)."""
        for pid in parent_ids:
            self.written.pop(pid, None)


def restore(engine: ExecutionEngine, tracker: StateTracker | None, records: dict[str, dict[str, Any]],
            owns: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Restore the market states of the symbols this agent owns (when newer than the engine's), then
    every parent record whose symbol it owns and whose parent the engine lacks.

    The kill-switch record (key :data:`KILL_SWITCH_KEY`) is merged into the tracker's
    switch (the newer change wins) and applied to the engine. Returns one summary per
    restored parent (``parent_id``, ``symbol``, ``status``, ``remaining``, ``next_period``)
    for the structured restore log line. Ended parents come back ended (late fills still
    count, ``GET /parents`` lists them until their retention passes), never active."""
    for key, msg in sorted(records.items()):
        if not key.startswith(MARKET_PREFIX) or msg.get("schema") != AgentMarketMsg.SCHEMA:
            continue
        sym = str(msg.get("symbol", ""))
        if not owns(sym):
            continue
        try:
            engine.restore_market(unpack_arrays(msg.get("market") or {}))
        except (DataError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot restore the market state of %s from the state topic: %s", sym, exc)
            continue
        if tracker is not None:
            tracker.market_written[sym] = int(engine.market(sym).last_ts)
            tracker.market_seen[sym] = engine.market(sym).updates
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
        if pid == KILL_SWITCH_KEY or pid.startswith(MARKET_PREFIX):
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
            tracker.written[pid] = engine.snapshot(pid, market=False)
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
