"""Wiring of ``mpc-agent run``: config -> components -> asyncio.

Part of the service shell (with :mod:`agent.live.service`): the CLI builds the
:class:`agent.app.config.AgentConfig` once and hands it here.

- ``run --feed kafka``: ``KafkaSource`` on md / parent orders / fills,
  idempotent ``KafkaSink`` for child orders, wall clock for snapshot age
  (``service.clock = "event"`` for replayed data published into Kafka).
- ``run --feed file``: the data file paced by :class:`feeds.file_feed.FileFeed`
  through the same service, child orders to a JSONL file (or Kafka), fills
  from :class:`agent.app.fill_responder.SimulatedVenue` in process; the replay
  clock of the feed is the snapshot-age clock (none at speed 0).
Parent orders from ``[parent]``: :mod:`agent.app.parents`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.app.config import AgentConfig, load_config
from agent.app.parents import parent_from_config
from agent.core.errors import ConfigError, FeedError

log = logging.getLogger("agent.app.builder")


def kafka_connection(cfg: AgentConfig) -> Any:
    from feeds.kafka import KafkaConnection

    k = cfg.kafka
    return KafkaConnection(
        bootstrap_servers=k.bootstrap_servers, security_protocol=k.security_protocol,
        sasl_mechanism=k.sasl_mechanism, sasl_username=k.sasl_username, sasl_password=k.sasl_password,
        ssl_cafile=k.ssl_cafile, ssl_certfile=k.ssl_certfile, ssl_keyfile=k.ssl_keyfile,
        ssl_password=k.ssl_password, ssl_check_hostname=k.ssl_check_hostname,
        client_id=k.client_id, max_message_bytes=k.max_message_bytes,
        request_timeout_ms=k.request_timeout_ms,
    )


def redact_logs(cfg: AgentConfig) -> None:
    """Mask the configured secrets in every log record, whatever logger writes it (agent.app.log_redact)."""
    from agent.app.log_redact import install_redaction

    install_redaction(cfg.secret_values())


def setup_logging(cfg: AgentConfig, verbose: int = 0) -> None:
    """The process's logging from ``[log]`` (once, by the CLI): format, level, secrets masked."""
    from agent.app.logs import configure_logging

    configure_logging(cfg.log, verbose=verbose, secrets=cfg.secret_values())


# ---------------------------------------------------------------------- build
class Built:
    """One service wired from config, with what the caller may want to look at."""

    def __init__(self, service: Any, engine: Any, delivery: Any) -> None:
        self.service, self.engine, self.delivery = service, engine, delivery


def build_engine(cfg: AgentConfig, kill_switch: Any | None = None) -> Any:
    """The decision core from ``[engine]``, ``[risk]`` and ``[solver]`` (wall clock for ``ts_init``); the
    kill switch from the process's switch when given, else ``risk.kill_switch``."""
    from agent.core.engine import ExecutionEngine

    engine = ExecutionEngine(cfg.engine_settings(), clock=time.time_ns, profile=cfg.load_profile())
    engine.kill_switch = kill_switch.on if kill_switch is not None else cfg.risk.kill_switch
    return engine


def input_topics(cfg: AgentConfig) -> list[str]:
    t = cfg.topics
    return [t.md, t.parent_orders, t.fills]


async def ensure_topics(conn: Any, cfg: AgentConfig, *, quiet: bool = False) -> None:
    """Create the topics the service uses (a broker may forbid it: then the init job made them);
    a failure is logged at WARNING, at DEBUG when ``quiet`` (a rebuild during an outage)."""
    from feeds.kafka import create_topics

    t = cfg.topics
    try:
        await create_topics(conn, [*input_topics(cfg), t.child_orders, t.dlq, f"{t.parent_orders}.dlq",
                                   f"{t.fills}.dlq"])
        await create_topics(conn, [t.agent_state], compacted=True)
    except Exception as exc:
        log.log(logging.DEBUG if quiet else logging.WARNING, "could not create topics: %s", exc)


def build_kafka_service(cfg: AgentConfig, conn: Any, metrics: Any, reliability: Any, *,
                        engine: Any | None = None, agent_id: str | None = None,
                        kill_switch: Any | None = None) -> Built:
    """The Kafka service of ``mpc-agent run`` (also used by the benchmark and the tests):
    transactional delivery when ``kafka.exactly_once`` (default), else at-least-once. Readiness
    follows the process-level broker probe (``reliability.broker_reachable``).

    Exactly once: one transactional producer per owned input partition (the service's sink,
    :class:`agent.live.fencing.PartitionProducers`), the range assignor (partition ``p`` of the
    three input topics goes to one agent), static group membership (``agent_id``)."""
    import aiokafka
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    from agent.live.delivery import AtLeastOnce, Transactional
    from agent.live.fencing import PartitionProducers
    from agent.live.service import AgentService
    from feeds.kafka import KafkaSink, KafkaSource

    k, t = cfg.kafka, cfg.topics
    engine = engine if engine is not None else build_engine(cfg, kill_switch)
    clock = time.time_ns if cfg.service.clock == "wall" else None
    if k.exactly_once:
        aid = agent_id or k.agent_id or socket.gethostname()
        producers = PartitionProducers(
            lambda tid: KafkaSink(conn, transactional_id=tid, transaction_timeout_ms=k.transaction_timeout_ms,
                                  retry_backoff_ms=k.retry_backoff_ms,
                                  concurrent_txn_backoff_ms=k.concurrent_txn_backoff_ms),
            group_id=k.group_id, topic=t.parent_orders, start_timeout_s=k.request_timeout_ms / 1000)
        delivery: Any = Transactional(
            agent_id=aid, group_id=k.group_id, topics=t, metrics=reliability, producers=producers,
            txn_timeout_s=k.request_timeout_ms / 1000, idle_offsets_s=k.idle_offsets_commit_ms / 1000,
            state_consumer=lambda isolation: aiokafka.AIOKafkaConsumer(
                **conn.client_kwargs(), group_id=None, enable_auto_commit=False,
                isolation_level=isolation, auto_offset_reset="earliest", retry_backoff_ms=k.retry_backoff_ms,
                max_partition_fetch_bytes=STATE_FETCH_BYTES, fetch_max_bytes=4 * STATE_FETCH_BYTES))
        source = KafkaSource(conn, [], group_id=k.group_id, group_instance_id=aid,
                             session_timeout_ms=k.session_timeout_ms,
                             heartbeat_interval_ms=max(100, k.session_timeout_ms // 10),
                             partition_assignment_strategy=(RangePartitionAssignor,),
                             retry_backoff_ms=k.retry_backoff_ms)
        sink: Any = producers
    else:
        delivery = AtLeastOnce()
        source = KafkaSource(conn, input_topics(cfg), group_id=k.group_id)
        sink = KafkaSink(conn)
    service = AgentService(engine, sink=sink, metrics=metrics, topics=t, settings=cfg.service, source=source,
                           max_message_bytes=k.max_message_bytes, clock=clock, delivery=delivery,
                           kill_switch=kill_switch, log_settings=cfg.log,
                           broker_up=lambda: reliability.broker_reachable, decode_worker_at_start=True)
    return Built(service, engine, delivery)


def build_file_service(cfg: AgentConfig, metrics: Any, kill_switch: Any | None = None) -> tuple[Built, int, str]:
    """``--feed file``: the data file paced through the same service, a simulated venue in process."""
    from agent.app.fill_responder import SimulatedVenue
    from agent.live.service import AgentService
    from feeds.file_feed import FileFeed
    from feeds.files.readers import read_book
    from feeds.jsonl import JsonlSink
    from feeds.kafka import KafkaSink
    from replay.simulator import SimulatorSettings

    t, ff = cfg.topics, cfg.file_feed
    if not ff.data_paths:
        raise ConfigError("--feed file needs data: --data PATH or [file_feed] data_paths")
    book = read_book(list(ff.data_paths), ff.format, symbol=ff.symbol).batch
    if not len(book):
        raise ConfigError(f"no valid rows in {list(ff.data_paths)}")
    feed = FileFeed(book, speed_x=ff.speed_x, batch_rows=ff.batch_rows)
    venue = SimulatedVenue(book, SimulatorSettings(latency_ms=ff.latency_ms,
                                                   recovery_half_life_s=ff.recovery_half_life_s,
                                                   fee_bps=ff.fee_bps))
    if ff.sink == "jsonl":
        paths = {t.child_orders: ff.jsonl_path,
                 t.fills: ff.fills_jsonl_path or str(Path(ff.jsonl_path).with_name("fills.jsonl"))}
        sink: Any = JsonlSink(paths, default_dir=Path(ff.jsonl_path).parent)
    else:
        sink = KafkaSink(kafka_connection(cfg))
    engine = build_engine(cfg, kill_switch)
    service = AgentService(engine, sink=sink, metrics=metrics, topics=t, settings=cfg.service, md_feed=feed,
                           clock=feed.clock if ff.speed_x > 0 else None, venue=venue,
                           max_message_bytes=cfg.kafka.max_message_bytes, kill_switch=kill_switch,
                           log_settings=cfg.log)
    return Built(service, engine, service.delivery), int(book.ts_event[0]), str(book.symbol[0])


def on_stop_signals(callback: Any) -> None:
    """SIGTERM and SIGINT call ``callback`` (graceful stop); the one place signals are handled."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, callback)


# ---------------------------------------------------------------------- run
async def run_live(cfg: AgentConfig, *, install_signals: bool = True) -> dict[str, Any]:
    """Build and run the service until the file ends (file feed) or SIGTERM/SIGINT; return a summary.

    With Kafka the engine state lives in the compacted state topic (transactional delivery): a feed
    failure (broker gone, transaction failed or timed out) tears the service down and rebuilds it
    from the topic after an exponential backoff (0.5 s doubling to 15 s, reset after a minute of
    healthy running); ``mpc_agent_service_restarts_total`` counts the rebuilds.
    """
    from agent.app.runtime import Runtime
    from agent.live.http import HttpServer
    from agent.live.kill_switch import KillSwitch
    from agent.live.metrics import AgentMetrics, ReliabilityMetrics

    metrics = AgentMetrics.create(CollectorRegistry(auto_describe=True))
    reliability = ReliabilityMetrics.create(metrics.registry)
    kill = KillSwitch(cfg.risk.kill_switch, gauge=metrics.kill_switch)
    current: dict[str, Any] = {"kill_switch": kill, "broker_up": lambda: reliability.broker_reachable}
    stop = asyncio.Event()

    def request_stop() -> None:
        stop.set()
        if current.get("service") is not None:
            current["service"].request_stop()

    token = cfg.http.admin_token.get_secret_value() if cfg.http.admin_token is not None else None
    http = HttpServer(metrics.registry, Runtime(current, kill), host=cfg.http.host, port=cfg.http.port,
                      admin_token=token)
    if cfg.http.enabled:
        await http.start()
    if install_signals:
        on_stop_signals(request_stop)
    t0 = time.perf_counter()
    try:
        if cfg.service.feed == "file":
            built, first_ts, symbol = build_file_service(cfg, metrics, kill)
            current["service"] = built.service
            await _run_once(built, parent_from_config(cfg.parent, first_ts_ns=first_ts, default_symbol=symbol))
            engines = [built.engine]
        else:
            engines = await _run_kafka(cfg, metrics, reliability, current, stop)
    finally:
        await http.stop()
    engine = engines[-1] if engines else None
    svc = current.get("service")
    summary = {pid: engine.summary(pid) for pid in engine.parents} if engine is not None else {}
    return {"feed": cfg.service.feed, "exactly_once": cfg.service.feed == "kafka" and cfg.kafka.exactly_once,
            "wall_s": round(time.perf_counter() - t0, 3), "parents": summary,
            "child_orders": svc.children_sent if svc is not None else 0,
            "snapshots": metrics.registry.get_sample_value("mpc_agent_snapshots_total")}


async def _run_once(built: Built, parent: Any) -> None:
    from agent.app.gc_tuning import tune_gc

    async with built.service as service:
        if parent is not None:
            await service.submit(parent)
        tune_gc()  # the process is the agent's: its startup heap frozen, once, after the first start
        await service.run(until_idle=service.md_feed is not None)


async def _run_kafka(cfg: AgentConfig, metrics: Any, reliability: Any, current: dict[str, Any],
                     stop: asyncio.Event) -> list[Any]:
    """Crash-only loop: build, run until stopped; on a feed failure rebuild after a jittered backoff.

    One ``ERROR`` line when a failure streak (e.g. an outage) starts, ``DEBUG`` for the rebuilds
    that follow, one ``WARNING`` line when a rebuilt service is ready again; the broker probe
    (``mpc_agent_broker_up``, outage seconds) runs for the whole process, across rebuilds."""
    from agent.live.backoff import Backoff, QuietRepeats, install_quiet_repeats
    from agent.live.broker_probe import probe_broker
    from feeds.kafka_auth import check_credentials

    if cfg.kafka.exactly_once and (cfg.parent.json_path or cfg.parent.quantity_shares > 0):
        raise ConfigError("with exactly_once, parent orders come from the parent-orders topic "
                          "(mpc-agent publish --quantity ...), not from flags or config")
    conn = kafka_connection(cfg)
    await check_credentials(conn)  # a refused password is a ConfigError, not an endless retry
    install_quiet_repeats(QuietRepeats(("aiokafka",), window_s=60.0))
    probe = asyncio.create_task(probe_broker(cfg.kafka.bootstrap_servers, reliability), name="mpc-agent-broker-probe")
    parent = parent_from_config(cfg.parent, first_ts_ns=None, default_symbol=None)
    backoff, engines = Backoff(RESTART_BASE_S, RESTART_CAP_S), []
    streak: dict[str, float] = {}  # failure streak: "since" (monotonic), "rebuilds"
    try:
        while not stop.is_set():
            t_start = time.monotonic()
            built: Built | None = None
            watch: asyncio.Task[None] | None = None
            try:
                await ensure_topics(conn, cfg, quiet=bool(streak))
                built = build_kafka_service(cfg, conn, metrics, reliability,
                                            kill_switch=current.get("kill_switch"))
                engines.append(built.engine)
                current["service"] = built.service
                if stop.is_set():
                    break
                if streak:
                    watch = asyncio.create_task(_announce_recovery(built.service, streak))
                await _run_once(built, parent)
                parent = None  # submitted once; a rebuild finds it in the engine state or the topic
                if built.service.stopping:
                    break
            except ConfigError:
                raise
            except Exception as exc:  # crash-only: whatever broke, the state topic has the truth
                reliability.service_restarts.labels(cause=type(exc).__name__).inc()
                if time.monotonic() - t_start > HEALTHY_RESET_S:  # it ran fine for a while: a new streak
                    backoff.reset()
                    streak.clear()
                delay = backoff.next()
                if not streak:
                    streak.update(since=time.monotonic(), rebuilds=0.0)
                    log.error("%s: %s [service rebuilt from the state topic in %.1f s; backoff doubling to %.0f s, "
                              "jittered; further attempts of this failure streak are logged at DEBUG]",
                              type(exc).__name__, exc, delay, RESTART_CAP_S, exc_info=not isinstance(exc, FeedError))
                else:
                    log.debug("rebuild attempt failed: %s: %s; next in %.1f s", type(exc).__name__, exc, delay)
                streak["rebuilds"] += 1
                current.pop("service", None)
                if built is not None:  # the service's stop() may not have reached them
                    for part in (built.service.source, built.service.sink):
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(part.stop(), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            finally:
                if watch is not None:
                    watch.cancel()
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
    return engines


STATE_FETCH_BYTES = 16 << 20  # the state topic is read whole at every assignment: large fetches
RESTART_BASE_S = 0.5
RESTART_CAP_S = 15.0
HEALTHY_RESET_S = 60.0


async def _announce_recovery(service: Any, streak: dict[str, float]) -> None:
    """One line when the rebuilt ``service`` is ready (started, partitions assigned); ends the streak."""
    while not service.health()[0]:
        await asyncio.sleep(0.2)
    log.warning("service ready again %.1f s after the failure streak began (%d rebuild(s))",
                time.monotonic() - streak["since"], int(streak["rebuilds"]))
    streak.clear()


def run_command(args: argparse.Namespace) -> int:
    """``mpc-agent run``: flags override env ``MPC_AGENT_*`` which overrides ``--config``."""
    g = lambda name: getattr(args, name, None)  # noqa: E731
    overrides = {
        "service": {"feed": g("feed")},
        "file_feed": {"data_paths": tuple(args.data) if g("data") else None, "speed_x": g("speed"),
                      "sink": g("sink"), "jsonl_path": g("out"), "symbol": g("symbol")},
        "parent": {"json_path": g("parent_order"), "side": g("side"), "quantity_shares": g("quantity"),
                   "start": g("start"), "end": g("end"), "period_s": g("period_s"), "symbol": g("symbol")},
        "kafka": {"bootstrap_servers": g("bootstrap_servers")},
        "http": {"port": g("metrics_port")},
    }
    cfg = load_config(g("config"), overrides)
    setup_logging(cfg, int(g("verbose") or 0))
    if g("print_config"):
        print(json.dumps(cfg.masked(), indent=2))
        return 0
    print(json.dumps(asyncio.run(run_live(cfg)), indent=2, default=str))
    return 0


