"""HTML pages: the built-in callback page, and the sandbox demo and its landing page; the
APP_LOGO_FILE image they show."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.openapi import documented
from service.pipeline.branding import LOGO_CSP, LOGO_PATH, Branding, branding
from service.pipeline.origins import public_url
from service.pipeline.pages import page
from service.signin import contract

routes = web.RouteTableDef()


def _branding(request: web.Request) -> Branding:
    settings = request.app[keys.SETTINGS]
    return branding(settings.app_name, settings.app_logo_file)


@routes.get("/wechat/callback")
@documented(contract.CALLBACK_PAGE)
async def callback(request: web.Request) -> web.Response:
    """Reads code and state in the browser, calls /wechat/jwt, goes on to the app."""
    return page(request, "callback.html", branding=_branding(request))


# An asset under /static/ (registered before the static directory, so it answers first), not
# an API operation: no operation documents it.
@routes.get(LOGO_PATH)
async def logo(request: web.Request) -> web.Response:
    """APP_LOGO_FILE, read at start; 404 without one. Pages ask for it with ?v=<its hash>."""
    found = _branding(request).logo
    if found is None:
        raise web.HTTPNotFound()
    headers = {
        "Cache-Control": "public, max-age=86400",
        "ETag": found.etag,
        "Content-Security-Policy": LOGO_CSP,
    }
    if found.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.content, content_type=found.content_type, headers=headers)


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
    # The landing page under PUBLIC_URL (without it, this request's origin): the host the
    # binding cookie and the callback share.
    landing_url = public_url(settings).rstrip("/") + "/demo/landing"
    return page(
        request,
        "demo.html",
        {
            "appid": settings.wechat_appid,
            "landing_url": landing_url,
            # Sandbox mode's second Official Account and website app, each a sign-in of its own.
            "other_accounts": settings.all_accounts[1:],
        },
        branding=_branding(request),
    )


@routes.get("/demo/qr-login")
@documented(contract.QR_LOGIN_DEMO)
async def qr_login_demo(request: web.Request) -> web.Response:
    """The desktop sign-in: a QR code to scan with the sandbox phone, and long polling."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "qr_login.html", branding=_branding(request))


@routes.get("/demo/landing")
@documented(contract.DEMO_LANDING)
async def landing(request: web.Request) -> web.Response:
    """Where the demo's sign-in ends: shows the JWT it receives in the URL fragment."""
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()
    return page(request, "landing.html", branding=_branding(request))
