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
    accounts = request.app[keys.ACCOUNTS]
    own = accounts.by_appid(claims.get("appid"))
    named = contract.ACCOUNT.read(request)
    if named is None and isinstance(own, OfficialServices):
        # The token's own account: its openid (sub) is that account's.
        result = await own.follow.check(claims["sub"])
    else:
        # Another account (a website app's sign-in asking about the Official Account): the
        # person's record there is found by the unionid that links them.
        officials = accounts.officials()
        if named is None and not officials:
            raise Unauthorized("this service has no Official Account to ask", field="Authorization")
        target = accounts.official(named, "followers") if named else officials[0]
        if target is own:
            result = await target.follow.check(claims["sub"])
        else:
            result = await target.follow.check_linked(claims.get("unionid"), target.account.name)
    return web.json_response(result, headers={"Cache-Control": "no-store"})
