"""/wechat/subscribed: does the signed-in user follow the account?"""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.access import signed_in_claims
from service.account import contract
from service.account_services import OfficialServices
from service.errors import Unauthorized
from service.openapi import documented

routes = web.RouteTableDef()


@routes.get("/wechat/subscribed")
@documented(contract.SUBSCRIBED)
async def subscribed(request: web.Request) -> web.Response:
    claims = signed_in_claims(request)
    # The openid is the account's that signed the person in: that account is asked.
    services = request.app[keys.ACCOUNTS].by_appid(claims.get("appid"))
    if not isinstance(services, OfficialServices):
        raise Unauthorized(
            "this token's account is not an Official Account of this service: sign in "
            "through one to ask whether its user follows it",
            field="Authorization",
            value="Bearer …",
        )
    result = await services.follow.check(claims["sub"])
    return web.json_response(result, headers={"Cache-Control": "no-store"})
