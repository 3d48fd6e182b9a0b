"""HTML pages: the built-in callback page, and the sandbox demo and its landing page."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.openapi import documented
from service.pipeline.pages import page
from service.signin import contract

routes = web.RouteTableDef()


@routes.get("/wechat/callback")
@documented(contract.CALLBACK_PAGE)
async def callback(request: web.Request) -> web.Response:
    """Reads code and state in the browser, calls /wechat/jwt, goes on to the app."""
    return page(request, "callback.html")


@routes.get("/")
@documented(contract.INDEX)
async def index(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    if not settings.sandbox:
        return web.json_response(
            {
                "service": "wechat-oa-auth",
                "endpoints": [
                    "/wechat/authorize",
                    "/wechat/login",
                    "/wechat/jwt",
                    "/wechat/callback",
                    "/wechat/message",
                    "/wechat/subscribed",
                    "/wechat/qrcode",
                    "/wechat/qrcode/login",
                    "/wechat/tokens/status",
                    "/.well-known/jwks.json",
                    "/healthz",
                    "/readyz",
                    "/metrics",
                    "/openapi.json",
                    "/docs",
                ],
            }
        )
    # The landing page under PUBLIC_URL: the host the binding cookie and the callback share.
    landing_url = settings.public_url.rstrip("/") + "/demo/landing"
    return page(request, "demo.html", {"appid": settings.wechat_appid, "landing_url": landing_url})


@routes.get("/demo/qr-login")
@documented(contract.QR_LOGIN_DEMO)
async def qr_login_demo(request: web.Request) -> web.Response:
    """The desktop sign-in: a QR code to scan with the sandbox phone, and long polling."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "qr_login.html")


@routes.get("/demo/landing")
@documented(contract.DEMO_LANDING)
async def landing(request: web.Request) -> web.Response:
    """Where the demo's sign-in ends: shows the JWT it receives in the URL fragment."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "landing.html")
