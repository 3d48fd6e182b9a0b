"""/wechat/authorize, /wechat/authorize/retry and /wechat/jwt."""

from __future__ import annotations

from typing import NoReturn

from aiohttp import web

from .. import keys, oauth
from ..auth import bearer_token, scope_covers
from ..errors import Unauthorized
from .params import query

routes = web.RouteTableDef()


def _authorization_needed(url: str) -> NoReturn:
    # The seed's contract: 401 whose details carry the URL to send the user to.
    raise Unauthorized(
        "UNAUTHORIZED",
        field="authorization url",
        value=url,
        headers={"WWW-Authenticate": 'Bearer realm="wechat"'},
    )


@routes.get("/wechat/authorize")
async def authorize(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    auth_request = oauth.parse_authorization_request(
        settings, query(request, "redirectUri"), query(request, "callback"), query(request, "scope")
    )
    token = bearer_token(request.headers.get("Authorization"))
    if token:
        try:
            claims = request.app[keys.JWT].verify(token)
        except Unauthorized:
            claims = None  # a stale token just means: sign in again
        if claims and scope_covers(claims["scope"], auth_request.scope):
            return web.json_response(claims)
    url = await oauth.begin_authorization(request.app[keys.STORE], settings, auth_request)
    _authorization_needed(url)


@routes.get("/wechat/authorize/retry")
async def retry(request: web.Request) -> web.Response:
    """Start again for the same app after a denial, an expired state or a used code."""
    url = await oauth.retry_authorization(
        request.app[keys.STORE], request.app[keys.SETTINGS], query(request, "state")
    )
    _authorization_needed(url)


@routes.get("/wechat/jwt")
async def jwt(request: web.Request) -> web.Response:
    result = await oauth.complete_authorization(
        request.app[keys.STORE],
        request.app[keys.WECHAT],
        request.app[keys.JWT],
        query(request, "state"),
        query(request, "code"),
    )
    return web.json_response(result, headers={"Cache-Control": "no-store"})


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify the app's JWTs (RS256/ES256); empty for HS256."""
    return web.json_response(
        request.app[keys.JWT].keys.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )
