"""CORS: the endpoints an app's own pages call with fetch or XMLHttpRequest from their origin.

Only for the origins in ALLOWED_REDIRECT_ORIGINS (the apps this service signs in for; in
sandbox mode the service's own origin too, see origins.py), and only on the routes in
CORS_ROUTES, named by their patterns as registered. Never `*`, never credentials: the app sends
its JWT in Authorization, and the binding cookie of /wechat/login is for the service's own
callback page, which calls it same-origin.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, by the
service's layer, before the router's 405 (no route has an OPTIONS handler, so none is registered and
none is documented: preflights belong to the protocol, not the API): 204 with the CORS headers
for an allowed origin; 403 FORBIDDEN in the error shape, without CORS headers, for any other
origin. Actual answers (errors included) to an allowed origin carry Access-Control-Allow-Origin
and expose the headers an app reads; other origins get no CORS headers. Every answer of a listed
route carries `Vary: Origin`, so no cache hands one origin's answer to another.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from multidict import CIMultiDict

from service.config import Settings
from service.errors import Forbidden
from service.logs import ANSWERED_ROUTE_KEY
from service.pipeline.origins import redirect_origins

# Route patterns (as registered) that answer CORS. The OpenID Connect endpoints are listed
# before they exist: a pattern with no route matches nothing.
CORS_ROUTES = frozenset(
    {
        "/wechat/authorize",
        # An app's own callback page starts again after a denial or a spent link.
        "/wechat/authorize/retry",
        "/wechat/jwt",
        "/wechat/qrcode/login",
        "/wechat/qrcode/login/{scene}",
        "/wechat/subscribed",
        # An app's page asks for its wx.config values.
        "/wechat/jssdk/config",
        "/oidc/token",
        "/oidc/userinfo",
        # A browser app's OpenID Connect library reads these before it signs anyone in.
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    }
)

# The headers an app may send: its JWT, a JSON or form body's type, its own request id.
ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
# The headers an app reads beyond the safelisted ones: where to poll (Location, X-QR-Scene),
# when to retry (429's Retry-After), the request id to quote, 401's WWW-Authenticate.
EXPOSE_HEADERS = "Location, Retry-After, WWW-Authenticate, X-QR-Scene, X-Request-ID"
# Seconds a browser may reuse a preflight's answer (Chromium caps it at 7200).
MAX_AGE = "600"

PREFLIGHT_HEADERS = ("Origin", "Access-Control-Request-Method")


async def preflight(
    request: web.Request, settings: Settings, router: web.UrlDispatcher
) -> web.Response | None:
    """The answer to a CORS preflight for a listed route of `router`'s; None if this OPTIONS
    request is not one (it then meets the router's answer: 405, or 404). Raises Forbidden for
    an origin that may not call the route."""
    if not all(name in request.headers for name in PREFLIGHT_HEADERS):
        return None
    for resource in router.resources():
        if resource.canonical not in CORS_ROUTES:
            continue
        # resolve() tells whether the path is this route's: a match, or the methods it
        # serves (OPTIONS is none of them).
        match, methods = await resource.resolve(request)
        if match is None and not methods:
            continue
        # Access lines and metrics name the route asked about, not "unmatched".
        request[ANSWERED_ROUTE_KEY] = resource
        origin = request.headers["Origin"]
        if origin not in redirect_origins(settings):
            raise Forbidden(
                f"origin {origin} may not call this endpoint from a browser: it is not in "
                "ALLOWED_REDIRECT_ORIGINS",
                field="Origin",
                value=origin,
            )
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(sorted(methods - {"HEAD"})),
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
                "Vary": "Origin",
            },
        )
    return None


def add_headers(
    request: web.Request, headers: CIMultiDict[str], settings: Settings, pattern: str | None
) -> None:
    """An answer of a listed route (`pattern`, the matched route's): Vary: Origin, and the CORS
    headers if the request's origin is allowed. Nothing for other routes (one set lookup)."""
    if pattern not in CORS_ROUTES:
        return
    # aiohttp.hdrs' names (istr): looked up and set without case-folding them each time.
    vary = headers.get(hdrs.VARY)
    headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin in redirect_origins(settings):
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS
