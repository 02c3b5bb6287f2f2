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
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.app.config import AgentConfig, load_config
from agent.app.parents import parent_from_config
from agent.core.errors import ConfigError

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


# ---------------------------------------------------------------------- run
async def run_live(cfg: AgentConfig, *, install_signals: bool = True) -> dict[str, Any]:
    """Build and run the service until the file ends (file feed) or SIGTERM/SIGINT; return a summary."""
    from agent.core.engine import ExecutionEngine
    from agent.live.http import MetricsServer
    from agent.live.metrics import AgentMetrics
    from agent.live.service import AgentService
    from feeds.file_feed import FileFeed
    from feeds.jsonl import JsonlSink
    from feeds.kafka import KafkaSink, KafkaSource, create_topics

    metrics = AgentMetrics.create(CollectorRegistry(auto_describe=True))
    if cfg.service.feed == "kafka" and cfg.kafka.exactly_once:
        return await run_exactly_once(cfg, metrics, install_signals=install_signals)
    engine = ExecutionEngine(cfg.engine_settings(), clock=time.time_ns)
    engine.kill_switch = cfg.risk.kill_switch
    t, ff = cfg.topics, cfg.file_feed
    kw: dict[str, Any] = {}
    first_ts: int | None = None
    default_symbol: str | None = None
    if cfg.service.feed == "file":
        if not ff.data_paths:
            raise ConfigError("--feed file needs data: --data PATH or [file_feed] data_paths")
        from agent.app.fill_responder import SimulatedVenue
        from feeds.files.readers import read_book
        from replay.simulator import SimulatorSettings

        book = read_book(list(ff.data_paths), ff.format, symbol=ff.symbol).batch
        if not len(book):
            raise ConfigError(f"no valid rows in {list(ff.data_paths)}")
        first_ts, default_symbol = int(book.ts_event[0]), str(book.symbol[0])
        feed = FileFeed(book, speed_x=ff.speed_x, batch_rows=ff.batch_rows)
        kw["md_feed"] = feed
        kw["clock"] = feed.clock if ff.speed_x > 0 else None
        kw["venue"] = SimulatedVenue(book, SimulatorSettings(
            latency_ms=ff.latency_ms, recovery_half_life_s=ff.recovery_half_life_s, fee_bps=ff.fee_bps))
        if ff.sink == "jsonl":
            paths = {t.child_orders: ff.jsonl_path,
                     t.fills: ff.fills_jsonl_path or str(Path(ff.jsonl_path).with_name("fills.jsonl"))}
            sink: Any = JsonlSink(paths, default_dir=Path(ff.jsonl_path).parent)
        else:
            sink = KafkaSink(kafka_connection(cfg))
    else:
        conn = kafka_connection(cfg)
        from feeds.kafka_auth import check_credentials

        await check_credentials(conn)  # a refused password is a ConfigError, not an endless retry
        try:
            await create_topics(conn, [t.md, t.parent_orders, t.child_orders, t.fills, t.dlq,
                                       f"{t.parent_orders}.dlq", f"{t.fills}.dlq"])
        except Exception as exc:  # the broker may forbid it: topics then come from the init job
            log.warning("could not create topics: %s", exc)
        kw["source"] = KafkaSource(conn, [t.md, t.parent_orders, t.fills], group_id=cfg.kafka.group_id)
        kw["clock"] = time.time_ns if cfg.service.clock == "wall" else None
        sink = KafkaSink(conn)
    parent = parent_from_config(cfg.parent, first_ts_ns=first_ts, default_symbol=default_symbol)
    service = AgentService(engine, sink=sink, metrics=metrics, topics=t, settings=cfg.service,
                           max_message_bytes=cfg.kafka.max_message_bytes, **kw)
    http = MetricsServer(metrics.registry, service.health, host=cfg.http.host, port=cfg.http.port)
    t0 = time.perf_counter()
    async with service:
        if cfg.http.enabled:
            await http.start()
        try:
            if install_signals:
                service.install_signal_handlers()
            if parent is not None:
                await service.submit(parent)
            await service.run(until_idle=cfg.service.feed == "file")
        finally:
            await http.stop()
    summary = {pid: engine.summary(pid) for pid in engine.parents}
    return {"feed": cfg.service.feed, "wall_s": round(time.perf_counter() - t0, 3),
            "child_orders": service.children_sent, "parents": summary,
            "snapshots": metrics.registry.get_sample_value("mpc_agent_snapshots_total")}


async def run_exactly_once(cfg: AgentConfig, metrics: Any, *, install_signals: bool = True) -> dict[str, Any]:
    """``run --feed kafka`` with one transaction per step (:mod:`agent.live.delivery`) until SIGTERM/SIGINT.

    The engine state lives in the compacted state topic: a feed failure (broker
    gone, transaction failed or timed out) tears the service down and rebuilds
    it from the topic after an exponential backoff (0.5 s doubling to 15 s,
    reset after a minute of healthy running); ``mpc_agent_service_restarts_total``
    counts the rebuilds. Parent orders come from the parent-orders topic only.
    """
    import socket

    from agent.core.engine import ExecutionEngine
    from agent.core.errors import FeedError
    from agent.live.delivery import ExactlyOnce, ReliabilityMetrics
    from agent.live.http import MetricsServer
    from agent.live.service import AgentService
    from feeds.kafka import KafkaSink, KafkaSource, create_topics

    if cfg.parent.json_path or cfg.parent.quantity_shares > 0:
        raise ConfigError("with exactly_once, parent orders come from the parent-orders topic "
                          "(mpc-agent publish --quantity ...), not from flags or config")
    import aiokafka

    k, t = cfg.kafka, cfg.topics
    agent_id = k.agent_id or socket.gethostname()
    conn = kafka_connection(cfg)
    rel = ReliabilityMetrics.create(metrics.registry)
    current: dict[str, Any] = {}

    def health() -> tuple[bool, dict[str, Any]]:
        svc = current.get("service")
        return svc.health() if svc is not None else (False, {"feeds": {}, "restarting": True})

    http = MetricsServer(metrics.registry, health, host=cfg.http.host, port=cfg.http.port)
    if cfg.http.enabled:
        await http.start()
    stop = asyncio.Event()
    if install_signals:
        import signal

        def on_signal() -> None:
            stop.set()
            if current.get("service") is not None:
                current["service"].request_stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
    delay, t0, engine = 0.5, time.perf_counter(), None
    from feeds.kafka_auth import check_credentials

    try:
        await check_credentials(conn)  # a refused password is a ConfigError, not an endless retry
        while not stop.is_set():
            t_start = time.monotonic()
            source: Any = None
            sink: Any = None
            try:
                await create_topics(conn, [t.md, t.parent_orders, t.child_orders, t.fills, t.dlq,
                                           f"{t.parent_orders}.dlq", f"{t.fills}.dlq"])
                await create_topics(conn, [t.agent_state], compacted=True)
                engine = ExecutionEngine(cfg.engine_settings(), clock=time.time_ns)
                engine.kill_switch = cfg.risk.kill_switch
                eo = ExactlyOnce(
                    agent_id=agent_id, group_id=k.group_id, topics=t, metrics=rel, bootstrap=k.bootstrap_servers,
                    txn_timeout_s=k.request_timeout_ms / 1000,
                    state_consumer=lambda isolation: aiokafka.AIOKafkaConsumer(
                        **conn.client_kwargs(), group_id=None, enable_auto_commit=False,
                        isolation_level=isolation, auto_offset_reset="earliest"))
                source = KafkaSource(conn, [], group_id=k.group_id, group_instance_id=agent_id,
                                     session_timeout_ms=k.session_timeout_ms,
                                     heartbeat_interval_ms=max(100, k.session_timeout_ms // 5),
                                     retry_backoff_ms=k.retry_backoff_ms)
                sink = KafkaSink(conn, transactional_id=f"{k.group_id}.{agent_id}",
                                 transaction_timeout_ms=k.transaction_timeout_ms, retry_backoff_ms=k.retry_backoff_ms)
                service = AgentService(engine, sink=sink, metrics=metrics, topics=t, settings=cfg.service,
                                       source=source, max_message_bytes=k.max_message_bytes,
                                       clock=time.time_ns if cfg.service.clock == "wall" else None,
                                       commit_offsets=False, exactly_once=eo)
                current["service"] = service
                async with service:
                    if stop.is_set():
                        break
                    await service.run()
            except Exception as exc:  # crash-only: whatever broke, the state topic has the truth
                rel.service_restarts.labels(cause=type(exc).__name__).inc()
                if time.monotonic() - t_start > 60:
                    delay = 0.5
                log.error("%s: %s; rebuilding from the state topic in %.1f s", type(exc).__name__, exc, delay,
                          exc_info=not isinstance(exc, FeedError))
                current.pop("service", None)
                for part in (source, sink):  # the service's stop() may not have reached them
                    if part is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(part.stop(), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(15.0, delay * 2)
    finally:
        await http.stop()
    summary = {pid: engine.summary(pid) for pid in engine.parents} if engine is not None else {}
    return {"feed": "kafka", "exactly_once": True, "agent_id": agent_id,
            "wall_s": round(time.perf_counter() - t0, 3), "parents": summary}


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
    redact_logs(cfg)
    if g("print_config"):
        print(json.dumps(cfg.masked(), indent=2))
        return 0
    print(json.dumps(asyncio.run(run_live(cfg)), indent=2, default=str))
    return 0


