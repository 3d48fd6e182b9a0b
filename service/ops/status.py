"""/wechat/tokens/status: for operators, the state of every token; never a token value."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service import keys
from service.access import require_admin
from service.account_services import AppServices, OfficialServices
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
    accounts = {
        services.account.name: await _account_status(services) for services in app[keys.ACCOUNTS]
    }
    # The first Official Account's fields at the top, as before there were several.
    officials = app[keys.ACCOUNTS].officials()
    first = officials[0] if officials else app[keys.ACCOUNTS].default
    default = accounts[first.account.name]
    body = {
        "instance": app[keys.INSTANCE_ID],
        **{key: value for key, value in default.items() if key not in ("kind", "appid")},
        "scheduler": scheduler_status(app.get(keys.SCHEDULER)),
        "accounts": accounts,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _account_status(services: AppServices) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": services.account.kind,
        "appid": services.account.appid,
        "webTokens": await services.store.count_web_tokens_by_status(),
    }
    if isinstance(services, OfficialServices):
        status |= {
            "baseToken": await services.base_tokens.status(),
            "jsapiTicket": await services.tickets.status(),
            "qrcodeBudget": services.qr_codes.budget.status(),
            "sharedToken": services.shared_token.status(),
        }
    return status
