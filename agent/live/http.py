"""A minimal asyncio HTTP server for ``/metrics`` and ``/healthz``.

It runs on the service's event loop (no extra thread): ``GET /metrics``
returns ``prometheus_client.generate_latest(registry)`` in the text
exposition format; ``GET /healthz`` returns 200 ``{"ready": true, ...}`` only
when the injected health callback says every feed is connected, else 503 with
the same JSON body (so orchestrators can use it as a readiness probe).
Anything else is 404. One request per connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("agent.live.http")

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0


class MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (port 0 = pick a free one).

    Parameters
    ----------
    registry : the registry the metrics live on.
    health : returns ``(ready, details)``; ready False -> 503.
    """

    def __init__(self, registry: CollectorRegistry, health: HealthCheck, *, host: str = "0.0.0.0",
                 port: int = 9108) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    # ----------------------------------------------------------- requests
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, ctype, body = self._respond(head[:MAX_REQUEST_BYTES])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        except Exception:  # never let a scrape kill the server
            log.exception("metrics request failed")
            status, ctype, body = "500 Internal Server Error", "text/plain", b"internal error\n"
        header = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n").encode()
        try:
            writer.write(header + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, str, bytes]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) < 2 or line[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        path = line[1].split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path in ("/healthz", "/readyz"):
            ready, details = self.health()
            body = json.dumps({"ready": ready, **details}, default=str).encode() + b"\n"
            return ("200 OK" if ready else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain", b"not found\n"
