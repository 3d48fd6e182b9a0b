"""/wechat/jssdk/config, and sandbox mode's /demo/jssdk page."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.jssdk import contract
from service.openapi import documented
from service.pipeline.pages import page

routes = web.RouteTableDef()


@routes.get("/wechat/jssdk/config")
@documented(contract.JSSDK_CONFIG)
async def jssdk_config(request: web.Request) -> web.Response:
    url = contract.URL.value(request)
    services = request.app[keys.ACCOUNTS].official(
        contract.ACCOUNT.read(request), "JS-SDK signatures"
    )
    answer = await services.jssdk.config(url)
    return web.json_response(answer, headers={"Cache-Control": "no-store"})


@routes.get("/demo/jssdk")
@documented(contract.JSSDK_DEMO)
async def jssdk_demo(request: web.Request) -> web.Response:
    """Fetches /wechat/jssdk/config for itself and runs wx.config on the emulator's JS-SDK."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "jssdk_demo.html")
