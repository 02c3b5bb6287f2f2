"""Broker reachability: ``mpc_agent_broker_up`` and outage seconds, from a TCP connect.

Runs for the whole life of the process (:func:`agent.app.builder.run_live`
starts it beside the crash-only rebuild loop), so the gauge and the counter
stay true while the service is being rebuilt. Every probe adds the seconds
since the previous one to ``mpc_agent_broker_outage_seconds_total`` while the
broker is down; one line is logged when an outage starts and one (with its
length) when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time

from agent.live.metrics import ReliabilityMetrics

log = logging.getLogger("agent.live.broker")


async def reachable(addrs: list[tuple[str, int]], timeout_s: float = 1.0) -> bool:
    """True when one of ``addrs`` accepts a TCP connection within ``timeout_s``."""
    for host, port in addrs:
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError):
            continue
        w.close()
        return True
    return False


async def probe_broker(bootstrap: str, metrics: ReliabilityMetrics, interval_s: float = 1.0) -> None:
    """``broker_up`` from a TCP connect to the bootstrap addresses every ``interval_s``; outage seconds counted."""
    addrs = [(h, int(p)) for h, p in (a.strip().rsplit(":", 1) for a in bootstrap.split(",") if a.strip())]
    down_since: float | None = None
    last = time.monotonic()
    while True:
        up = await reachable(addrs)
        now = time.monotonic()
        if not up:
            if down_since is None:
                down_since = now
                log.warning("broker %s unreachable", bootstrap)
            else:
                metrics.broker_outage_seconds.inc(now - last)
        elif down_since is not None:
            log.warning("broker %s reachable again after %.1f s", bootstrap, now - down_since)
            down_since = None
        metrics.broker_up.set(1 if up else 0)
        metrics.broker_reachable = up
        last = now
        await asyncio.sleep(interval_s)
