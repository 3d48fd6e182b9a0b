"""/openapi.json (the OpenAPI 3.1 document) and /docs (Swagger UI, served from static/docs/)."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.openapi import documented
from service.ops import contract
from service.pipeline.pages import page

routes = web.RouteTableDef()


@routes.get("/openapi.json", name="openapi")
@documented(contract.OPENAPI)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=request.app[keys.API_DOCUMENT].text, content_type="application/json")


@routes.get("/docs", name="docs")
@documented(contract.DOCS)
async def docs(request: web.Request) -> web.Response:
    """Swagger UI with its assets served locally: no CDN, no inline script (the CSP forbids it)."""
    return page(request, "docs.html", {"spec_url": request.app.router["openapi"].url_for()})
