"""/wechat/subscribed: does the signed-in user follow the account?"""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.access import signed_in_openid
from service.account import contract
from service.openapi import documented

routes = web.RouteTableDef()


@routes.get("/wechat/subscribed")
@documented(contract.SUBSCRIBED)
async def subscribed(request: web.Request) -> web.Response:
    openid = signed_in_openid(request)
    result = await request.app[keys.FOLLOW].check(openid)
    return web.json_response(result, headers={"Cache-Control": "no-store"})
