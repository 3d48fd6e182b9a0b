"""/wechat/tokens/status: for operators, the state of every token; never a token value."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.access import require_admin
from service.openapi import documented
from service.ops import contract
from service.tokens.upkeep import scheduler_status

routes = web.RouteTableDef()


@routes.get("/wechat/tokens/status")
@documented(contract.TOKENS_STATUS)
async def tokens_status(request: web.Request) -> web.Response:
    """Ages, expiries, lease and errors; never a token value."""
    require_admin(request)
    app = request.app
    body = {
        "instance": app[keys.INSTANCE_ID],
        "baseToken": await app[keys.BASE_TOKENS].status(),
        "jsapiTicket": await app[keys.JSAPI_TICKETS].status(),
        "webTokens": await app[keys.STORE].count_web_tokens_by_status(),
        "scheduler": scheduler_status(app.get(keys.SCHEDULER)),
        "qrcodeBudget": app[keys.QR_CODES].budget.status(),
        "sharedToken": app[keys.SHARED_TOKEN].status(),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})
