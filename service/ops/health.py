"""/healthz (the process answers) and /readyz (MongoDB answers and a WeChat token is at hand)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from service import keys
from service.errors import NotReady, ServiceError
from service.openapi import documented
from service.ops import contract
from service.wechat.client import WeChatError

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# A stored token answers at once; without one, readiness waits this long for a fetch.
READY_TOKEN_TIMEOUT = 5


@routes.get("/healthz")
@documented(contract.HEALTHZ)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@documented(contract.READYZ)
async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(2):
            await request.app[keys.STORE].ping()
    except Exception as exc:
        log.warning("not ready: MongoDB did not answer a ping: %s", type(exc).__name__)
        raise NotReady("MongoDB does not answer", field="mongodb", value="unreachable") from None
    # Every Official Account's base token: a service that cannot act for one is not ready.
    account = ""
    try:
        async with asyncio.timeout(READY_TOKEN_TIMEOUT):
            for official in request.app[keys.ACCOUNTS].officials():
                account = official.account.name
                await official.base_tokens.get()
    except (ServiceError, WeChatError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, ServiceError) else str(exc) or "timed out"
        log.warning("not ready: no valid base access_token for account %s: %s", account, reason)
        raise NotReady(
            f"no valid WeChat access_token for account {account}: {reason}",
            field="base_token",
            value="unavailable",
        ) from None
    return web.json_response({"status": "ready", "mongodb": "ok", "baseToken": "ok"})
