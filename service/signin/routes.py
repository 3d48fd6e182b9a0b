"""/wechat/authorize, /wechat/login, /wechat/authorize/retry and /wechat/jwt."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import hdrs, web

from service import keys
from service.app_jwt.issuer import bearer_token, scope_covers
from service.config import Settings
from service.errors import Unauthorized, error_answer
from service.openapi import documented
from service.pipeline.origins import public_url, redirect_origins
from service.signin import contract, flow

routes = web.RouteTableDef()


def _authorization_needed(
    request: web.Request, url: flow.AuthorizationUrl, cookie: flow.BindingCookie | None = None
) -> web.Response:
    """The seed's contract: 401 whose details carry the URL to send the user to. Answered, not
    raised: it is authorize's every answer, and raising it through the service's layer cost a
    traceback per request; the answer and its log line are the layer's own."""
    headers: dict[str, str] = {hdrs.WWW_AUTHENTICATE: 'Bearer realm="wechat"'}
    if cookie is not None:
        # The retry of a browser-bound state binds the new one to this browser: the callback
        # page asks same-origin, so the browser stores the cookie from this answer too.
        headers[hdrs.SET_COOKIE] = cookie.header()
    return error_answer(
        request,
        Unauthorized.status,
        Unauthorized.name,
        "UNAUTHORIZED",
        field="authorization url",
        headers=headers,
        encoded_value=url.json(),
    )


def _presented_secret(request: web.Request, settings: Settings) -> str | None:
    """The binding cookie's value, if the browser sent one. The binding cookie is the only
    cookie this host sets, and it is cleared when its sign-in completes, so a browser's first
    /wechat/login carries no Cookie header at all; aiohttp's request.cookies cost 2 to 3 µs
    even then (a third of what login adds to a bare request), so it is read only when there
    is a header to parse."""
    if hdrs.COOKIE not in request.headers:
        return None
    return request.cookies.get(flow.binding_cookie_name(settings))


def _prepared(
    request: web.Request,
    settings: Settings,
    sign_in: flow.SignIn,
    route: str,
    parse: Callable[[], flow.AuthorizationRequest],
) -> flow.Prepared:
    """The request's sign-in parameters as `parse` checks them, remembered by the exact query
    (raw, not decoded: two queries that decode alike may split into parameters differently),
    the origins they were checked against and the service's public URL (the built-in callback
    page's; in sandbox mode both follow the request's origin). Queries with a PKCE challenge
    are checked every time."""
    if contract.CODE_CHALLENGE.name in request.query:
        # A PKCE challenge is new with every sign-in: its query never comes again, and
        # remembering it would only push out those that do.
        return sign_in.prepare(parse())
    key = (
        route,
        request.rel_url.raw_query_string,
        redirect_origins(settings),
        public_url(settings),
    )
    found = sign_in.prepared.get(key)
    if found is None:
        found = sign_in.prepare(parse())
        sign_in.prepared.put(key, found)
    return found


@routes.get("/wechat/authorize")
@documented(contract.AUTHORIZE)
async def authorize(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    services = request.app[keys.ACCOUNTS].get(contract.ACCOUNT.read(request))
    prepared = _prepared(
        request,
        settings,
        services.sign_in,
        "authorize",
        lambda: flow.parse_authorization_request(
            settings,
            contract.REDIRECT_URI.value(request),
            contract.CALLBACK.value(request),
            flow.account_scope(services.account, contract.SCOPE.read(request)),
            contract.CODE_CHALLENGE.read(request),
            contract.CODE_CHALLENGE_METHOD.read(request),
        ),
    )
    auth_request = prepared.request
    token = bearer_token(request.headers.get(hdrs.AUTHORIZATION))
    if token:
        try:
            claims = request.app[keys.JWT].verify(token)
        except Unauthorized:
            claims = None  # a stale token just means: sign in again
        # Only a token of this account: an openid means nothing in another one.
        if (
            claims
            and claims.get("appid", services.account.appid) == services.account.appid
            and scope_covers(claims["scope"], auth_request.scope)
        ):
            return web.json_response(claims)
    return _authorization_needed(request, await services.sign_in.begin_prepared(prepared))


@routes.get("/wechat/login")
@documented(contract.LOGIN)
async def login(request: web.Request) -> web.Response:
    """A top-level navigation: bind a state to this browser, then off to WeChat."""
    settings = request.app[keys.SETTINGS]
    services = request.app[keys.ACCOUNTS].get(contract.ACCOUNT.read(request))
    prepared = _prepared(
        request,
        settings,
        services.sign_in,
        "login",
        lambda: flow.parse_login_request(
            settings,
            contract.REDIRECT_URI.value(request),
            flow.account_scope(services.account, contract.SCOPE.read(request)),
        ),
    )
    started = await services.sign_in.begin_login(prepared, _presented_secret(request, settings))
    headers = {
        hdrs.LOCATION: str(started.url),
        hdrs.CACHE_CONTROL: "no-store",
        # Written out: text= would parse and rebuild the header (pipeline: errors.py).
        hdrs.CONTENT_TYPE: "text/plain; charset=utf-8",
    }
    if started.cookie is not None:  # always: begin_login binds
        headers[hdrs.SET_COOKIE] = started.cookie.header()
    return web.Response(status=302, body=b"Continue at WeChat", headers=headers)


@routes.get("/wechat/authorize/retry")
@documented(contract.RETRY)
async def retry(request: web.Request) -> web.Response:
    """Start again for the same app after a denial, an expired state or a used code."""
    settings = request.app[keys.SETTINGS]
    state = contract.STATE.value(request)
    code_verifier = contract.CODE_VERIFIER.read(request)
    started = await request.app[keys.SIGN_INS].retry(
        state, _presented_secret(request, settings), code_verifier
    )
    return _authorization_needed(request, started.url, started.cookie)


@routes.get("/wechat/jwt")
@documented(contract.EXCHANGE_CODE)
async def jwt(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    cookie_name = flow.binding_cookie_name(settings)
    state = contract.STATE.value(request)
    code = contract.CODE.value(request)
    code_verifier = contract.CODE_VERIFIER.read(request)
    completed = await request.app[keys.SIGN_INS].complete(
        state,
        code,
        code_verifier=code_verifier,
        presented_secret=_presented_secret(request, settings),
        cookie_name=cookie_name,
    )
    response = web.json_response(completed.answer, headers={"Cache-Control": "no-store"})
    if completed.browser_bound:
        # Spent: nothing is left for the cookie to bind.
        response.headers["Set-Cookie"] = flow.cleared_binding_cookie(settings).header()
    return response


@routes.get("/.well-known/jwks.json")
@documented(contract.JWKS)
async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify the app's JWTs (RS256/ES256); empty for HS256."""
    jwks = request.app[keys.JWT].keys.jwks()
    # The OpenID Connect ID tokens' key too, when it is not the app JWT's own.
    id_token_key = request.app[keys.OIDC].key
    published = {key.get("kid") for key in jwks["keys"]}
    if id_token_key is not None and id_token_key.jwk and id_token_key.kid not in published:
        jwks["keys"].append(id_token_key.jwk)
    return web.json_response(
        jwks,
        headers={"Cache-Control": "public, max-age=300"},
    )
