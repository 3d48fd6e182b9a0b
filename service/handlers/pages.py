"""HTML pages: the built-in callback page, and the sandbox demo and its landing page."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from .. import keys

routes = web.RouteTableDef()

# No inline script or style anywhere, so the CSP can forbid both; frame-ancestors stops
# click-jacking of the sign-in pages.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def page(request: web.Request, template: str, context: dict | None = None) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context or {})
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # The callback URL carries WeChat's code; no other site may see it in a Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/wechat/callback")
async def callback(request: web.Request) -> web.Response:
    """Reads code and state in the browser, calls /wechat/jwt, goes on to the app."""
    return page(request, "callback.html")


@routes.get("/")
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
async def qr_login_demo(request: web.Request) -> web.Response:
    """The desktop sign-in: a QR code to scan with the sandbox phone, and long polling."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "qr_login.html")


@routes.get("/demo/landing")
async def landing(request: web.Request) -> web.Response:
    """Where the demo's sign-in ends: shows the JWT it receives in the URL fragment."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "landing.html")
