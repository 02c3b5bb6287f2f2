"""The agent's HTTP endpoint (aiohttp's web server, on the service's event loop).

=======================  ======================================================================
``GET /metrics``         Prometheus text exposition (``prometheus_client.generate_latest``)
``GET /livez``           200 while the process is not wedged, else 503 (:mod:`agent.live.health`)
``GET /readyz``          200 when ready, else 503; the JSON body names the failing conditions
``GET /healthz``         alias of ``/readyz``
``GET /parents``         ``{"parents": [...]}``: every parent the engine holds, ended ones until
                         ``service.ended_parent_retention_s`` has passed
``GET /kill-switch``     the switch: ``{"on", "reason", "source", "since_ns"}``
``POST /kill-switch``    body ``{"on": true|false, "reason": "..."}``; needs ``Authorization:
                         Bearer <http.admin_token>`` (401 without or with a wrong token); when no
                         token is configured the admin endpoint is disabled: 403 (it exists, but
                         nobody may use it), so an operator learns at once what to configure
=======================  ======================================================================

What the endpoints read comes from a :class:`Control` (the app's runtime,
which follows the service across rebuilds). Errors are JSON
``{"error": ...}``; an unknown path is 404, a wrong method 405. No access log
(Prometheus scrapes every few seconds); every admin request is logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from types import TracebackType
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agent.core.errors import DataError
from feeds.wire import codec
from feeds.wire.messages import KillSwitchMsg

log = logging.getLogger("agent.live.http")

MAX_BODY_BYTES = 16 * 1024
PARENTS_TIMEOUT_S = 10.0


class Unavailable(Exception):
    """The service is not there to answer (the app is rebuilding it)."""


class Control(Protocol):
    """What the HTTP layer asks of the running agent."""

    def liveness(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    async def parents(self) -> list[dict[str, Any]]: ...

    def kill_switch_state(self) -> dict[str, Any]: ...

    async def set_kill_switch(self, on: bool, reason: str, source: str) -> dict[str, Any]: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, default=str, allow_nan=False) + "\n", status=status,
                        content_type="application/json")


class HttpServer:
    """Serve the endpoints of the module docstring on ``host:port`` (port 0 = a free one).

    Parameters
    ----------
    registry : the registry ``/metrics`` exposes.
    control : the agent behind the other endpoints.
    admin_token : bearer token of ``POST /kill-switch`` (None: 403).
    """

    def __init__(self, registry: CollectorRegistry, control: Control, *, host: str = "0.0.0.0", port: int = 9108,
                 admin_token: str | None = None) -> None:
        self.registry, self.control = registry, control
        self.host, self.port = host, port
        self._token = admin_token.encode() if admin_token else None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle
    def app(self) -> web.Application:
        """The aiohttp application (routes of the module docstring)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/healthz", self._readyz)
        app.router.add_get("/parents", self._parents)
        app.router.add_get("/kill-switch", self._kill_get)
        app.router.add_post("/kill-switch", self._kill_post)
        return app

    async def start(self) -> None:
        """Bind and serve (idempotent); ``port`` becomes the bound port."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info("HTTP on %s (/metrics /livez /readyz /parents /kill-switch; admin %s)", self.url,
                 "enabled" if self._token else "disabled: no http.admin_token")

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------ handlers
    async def _metrics(self, request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            resp.enable_compression()
        return resp

    async def _livez(self, request: web.Request) -> web.Response:
        ok, body = self.control.liveness()
        return _json(body, 200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, body = self.control.readiness()
        return _json(body, 200 if ok else 503)

    async def _parents(self, request: web.Request) -> web.Response:
        try:
            rows = await asyncio.wait_for(self.control.parents(), PARENTS_TIMEOUT_S)
        except (Unavailable, TimeoutError) as exc:
            return _json({"error": f"parents unavailable: {exc or 'the engine did not answer in time'}"}, 503)
        return _json({"parents": rows})

    async def _kill_get(self, request: web.Request) -> web.Response:
        return _json(self.control.kill_switch_state())

    async def _kill_post(self, request: web.Request) -> web.Response:
        peer = request.remote or "?"
        if self._token is None:
            log.warning("POST /kill-switch from %s refused: admin endpoints are disabled", peer)
            return _json({"error": "admin endpoints are disabled: set http.admin_token "
                          "(MPC_AGENT_HTTP__ADMIN_TOKEN) to enable POST /kill-switch"}, 403)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            log.warning("POST /kill-switch from %s refused: missing or wrong bearer token", peer)
            return web.Response(status=401, text=json.dumps({"error": "a valid bearer token is required"}) + "\n",
                                content_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="mpc-agent"'})
        try:
            raw = await request.read()
            obj = json.loads(raw) if raw else None
            if not isinstance(obj, dict):
                raise ValueError("the body must be a JSON object {\"on\": true|false, \"reason\": \"...\"}")
            msg = codec.build(KillSwitchMsg, **{k: v for k, v in obj.items() if k != "schema"})
        except (ValueError, DataError) as exc:
            return _json({"error": f"bad request: {exc}"}, 400)
        source = f"http {peer}" + (f" ({msg.source})" if msg.source else "")
        try:
            state = await self.control.set_kill_switch(msg.on, msg.reason, source)
        except Unavailable as exc:
            return _json({"error": f"kill switch not applied: {exc}"}, 503)
        log.warning("POST /kill-switch from %s: on=%s reason=%r -> %s", peer, msg.on, msg.reason,
                    "changed" if state.get("changed") else "unchanged")
        return _json(state)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """JSON bodies for 404/405/413 and a 500 (logged) for any handler failure."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json({"error": exc.reason}, exc.status)
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return _json({"error": "internal error"}, 500)
