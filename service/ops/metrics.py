"""/metrics in Prometheus's text format; token gauges read from the store at scrape time."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import keys
from service.openapi import documented
from service.ops import contract

routes = web.RouteTableDef()


@routes.get("/metrics")
@documented(contract.METRICS)
async def metrics_endpoint(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[keys.METRICS]
    status = await app[keys.BASE_TOKENS].status()
    metrics.base_token_remaining.set(status["remainingSeconds"])
    metrics.lease_held.set(1 if status["leaseHolder"] == app[keys.INSTANCE_ID] else 0)
    counts = await app[keys.STORE].count_web_tokens_by_status()
    for state in ("active", "reauth_required", *counts):
        metrics.web_tokens.labels(state).set(counts.get(state, 0))
    budget = app[keys.QR_CODES].budget.status()
    metrics.qrcode_budget_remaining.set(budget["budget"] - budget["used"])
    return web.Response(
        body=generate_latest(metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
