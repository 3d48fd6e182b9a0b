"""/metrics in Prometheus's text format; token gauges read from the store at scrape time.

On PORT by default. With METRICS_PORT set, /metrics is not a route of the service at all (PORT
answers 404 for it, and /openapi.json leaves it out): a second, minimal listener serves it on
METRICS_PORT alone, for the monitoring network.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import keys
from service.account_services import OfficialServices
from service.errors import error_layer
from service.logs import AccessLogger
from service.openapi import documented
from service.ops import contract
from service.pipeline import routing

routes = web.RouteTableDef()


@routes.get("/metrics")
@documented(contract.METRICS)
async def metrics_endpoint(request: web.Request) -> web.Response:
    return await exposition(request.app)


async def exposition(app: web.Application) -> web.Response:
    """The service's (`app`'s) registry, its token gauges set from the store first."""
    metrics = app[keys.METRICS]
    for services in app[keys.ACCOUNTS]:
        name = services.account.name
        counts = await services.store.count_web_tokens_by_status()
        for state in ("active", "reauth_required", *counts):
            metrics.web_tokens.labels(name, state).set(counts.get(state, 0))
        if not isinstance(services, OfficialServices):
            continue
        status = await services.base_tokens.status()
        metrics.base_token_remaining.labels(name).set(status["remainingSeconds"])
        ticket = await services.tickets.status()
        metrics.jsapi_ticket_remaining.labels(name).set(ticket["remainingSeconds"])
        held = status["leaseHolder"] == app[keys.INSTANCE_ID]
        metrics.lease_held.labels(name).set(1 if held else 0)
        budget = services.qr_codes.budget.status()
        metrics.qrcode_budget_remaining.labels(name).set(budget["budget"] - budget["used"])
    return web.Response(
        body=generate_latest(metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def metrics_app(service: web.Application) -> web.Application:
    """METRICS_PORT's application: GET /metrics of `service`, every other path 404 (in the
    error shape)."""

    async def scrape(request: web.Request) -> web.Response:
        return await exposition(service)

    app = web.Application()
    routing.add_routes(app, [web.get("/metrics", scrape)], error_layer)
    routing.add_unmatched(app, error_layer)
    return app


Context = Callable[[web.Application], AsyncIterator[None]]


def metrics_listener(host: str, port: int, sock: socket.socket | None = None) -> Context:
    """A cleanup context of the service: serves metrics_app on host:port (or on `sock`, bound
    already) while the service runs."""

    async def listen(service: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(metrics_app(service), access_log_class=AccessLogger)
        await runner.setup()
        site: web.BaseSite = (
            web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        )
        try:
            await site.start()
            yield
        finally:
            await runner.cleanup()

    return listen
