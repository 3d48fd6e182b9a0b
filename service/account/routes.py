"""/wechat/subscribed: does the signed-in user follow the account?"""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.access import signed_in_openid
from service.account.follow import check_follow

routes = web.RouteTableDef()


@routes.get("/wechat/subscribed")
async def subscribed(request: web.Request) -> web.Response:
    openid = signed_in_openid(request)
    result = await check_follow(
        request.app[keys.BASE_TOKENS],
        request.app[keys.WECHAT],
        request.app[keys.STORE],
        openid,
    )
    return web.json_response(result, headers={"Cache-Control": "no-store"})
