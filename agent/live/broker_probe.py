"""Broker reachability: ``mpc_agent_broker_up`` and outage seconds, from a TCP connect."""

from __future__ import annotations

import asyncio
import logging
import time

from agent.live.metrics import ReliabilityMetrics

log = logging.getLogger("agent.live.broker")


async def probe_broker(bootstrap: str, metrics: ReliabilityMetrics, interval_s: float = 1.0) -> None:
    """``broker_up`` from a TCP connect to the bootstrap addresses; outage seconds counted."""
    addrs = [a.strip().rsplit(":", 1) for a in bootstrap.split(",") if a.strip()]
    down_since: float | None = None
    while True:
        up = False
        for host, port in addrs:
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
                w.close()
                up = True
                break
            except (OSError, TimeoutError):
                continue
        now = time.monotonic()
        if not up and down_since is None:
            down_since = now
            log.warning("broker %s unreachable", bootstrap)
        elif up and down_since is not None:
            log.warning("broker %s reachable again after %.1f s", bootstrap, now - down_since)
            down_since = None
        metrics.broker_up.set(1 if up else 0)
        metrics.broker_reachable = up
        if not up:
            metrics.broker_outage_seconds.inc(interval_s)
        await asyncio.sleep(interval_s)
