"""/wechat/authorize, /wechat/login, /wechat/authorize/retry and /wechat/jwt."""

from __future__ import annotations

from typing import NoReturn

from aiohttp import web

from service import keys
from service.app_jwt.issuer import bearer_token, scope_covers
from service.errors import Unauthorized
from service.params import query
from service.signin import flow

routes = web.RouteTableDef()


def _authorization_needed(started: flow.Started) -> NoReturn:
    # The seed's contract: 401 whose details carry the URL to send the user to.
    headers = {"WWW-Authenticate": 'Bearer realm="wechat"'}
    if started.cookie is not None:
        # The retry of a browser-bound state binds the new one to this browser: the callback
        # page asks same-origin, so the browser stores the cookie from this answer too.
        headers["Set-Cookie"] = _cookie_header(started.cookie)
    raise Unauthorized(
        "UNAUTHORIZED", field="authorization url", value=started.url, headers=headers
    )


def _cookie_header(cookie: flow.BindingCookie) -> str:
    # An error answer carries headers, not a response's cookies: the same attributes, as text.
    response = web.Response()
    _set_binding_cookie(response, cookie)
    return response.cookies[cookie.name].OutputString()


def _set_binding_cookie(response: web.StreamResponse, cookie: flow.BindingCookie) -> None:
    # HttpOnly: no script reads it; SameSite=Lax: sent on WeChat's top-level redirect back to
    # the callback page, never on another site's subrequests; Path=/ as __Host- demands.
    response.set_cookie(
        cookie.name,
        cookie.value,
        max_age=cookie.max_age,
        path="/",
        secure=cookie.secure,
        httponly=True,
        samesite="Lax",
    )


@routes.get("/wechat/authorize")
async def authorize(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    auth_request = flow.parse_authorization_request(
        settings,
        query(request, "redirectUri"),
        query(request, "callback"),
        query(request, "scope"),
        query(request, "codeChallenge"),
        query(request, "codeChallengeMethod"),
    )
    token = bearer_token(request.headers.get("Authorization"))
    if token:
        try:
            claims = request.app[keys.JWT].verify(token)
        except Unauthorized:
            claims = None  # a stale token just means: sign in again
        if claims and scope_covers(claims["scope"], auth_request.scope):
            return web.json_response(claims)
    url = await flow.begin_authorization(request.app[keys.STORE], settings, auth_request)
    _authorization_needed(flow.Started(url))


@routes.get("/wechat/login")
async def login(request: web.Request) -> web.Response:
    """A top-level navigation: bind a state to this browser, then off to WeChat."""
    settings = request.app[keys.SETTINGS]
    auth_request = flow.parse_login_request(
        settings, query(request, "redirectUri"), query(request, "scope")
    )
    started = await flow.begin_login(
        request.app[keys.STORE],
        settings,
        auth_request,
        request.cookies.get(flow.binding_cookie_name(settings)),
    )
    response = web.Response(
        status=302,
        text="Continue at WeChat",
        headers={"Location": started.url, "Cache-Control": "no-store"},
    )
    if started.cookie is not None:  # always: begin_login binds
        _set_binding_cookie(response, started.cookie)
    return response


@routes.get("/wechat/authorize/retry")
async def retry(request: web.Request) -> web.Response:
    """Start again for the same app after a denial, an expired state or a used code."""
    settings = request.app[keys.SETTINGS]
    started = await flow.retry_authorization(
        request.app[keys.STORE],
        settings,
        query(request, "state"),
        request.cookies.get(flow.binding_cookie_name(settings)),
        query(request, "codeVerifier"),
    )
    _authorization_needed(started)


@routes.get("/wechat/jwt")
async def jwt(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    cookie_name = flow.binding_cookie_name(settings)
    completed = await flow.complete_authorization(
        request.app[keys.STORE],
        request.app[keys.WECHAT],
        request.app[keys.JWT],
        query(request, "state"),
        query(request, "code"),
        code_verifier=query(request, "codeVerifier"),
        presented_secret=request.cookies.get(cookie_name),
        cookie_name=cookie_name,
    )
    response = web.json_response(completed.answer, headers={"Cache-Control": "no-store"})
    if completed.browser_bound:
        # Spent: nothing is left for the cookie to bind.
        _set_binding_cookie(response, flow.cleared_binding_cookie(settings))
    return response


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify the app's JWTs (RS256/ES256); empty for HS256."""
    return web.json_response(
        request.app[keys.JWT].keys.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )
