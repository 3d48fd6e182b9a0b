"""/healthz (the process answers) and /readyz (it can serve: MongoDB answers)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .. import keys
from ..errors import NotReady

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(2):
            await request.config_dict[keys.STORE].ping()
    except Exception as exc:
        log.warning("not ready: MongoDB did not answer a ping: %s", type(exc).__name__)
        raise NotReady("MongoDB does not answer", field="mongodb", value="unreachable") from None
    return web.json_response({"status": "ready", "mongodb": "ok"})
