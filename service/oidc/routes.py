"""/.well-known/openid-configuration and /oidc/*: the OpenID Connect front door."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from service import keys
from service.app_jwt.issuer import bearer_token
from service.errors import BadRequest, response_for
from service.oidc import contract
from service.oidc.provider import (
    AuthorizationRefused,
    AuthorizeQuery,
    OidcError,
    PageError,
    TokenRequest,
    parse_basic,
)
from service.openapi import documented
from service.pipeline.pages import page

routes = web.RouteTableDef()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _error_page(request: web.Request, problem: PageError) -> web.Response:
    """400 in the one error shape; a browser (Accept: text/html) gets it as a page in its
    language, the error's id as its reference: no application can be told (RFC 6749
    §4.1.2.1)."""
    field = "" if problem.reason == "damaged" else problem.reason
    shaped = response_for(request, AuthorizationRefused(problem.message, field=field))
    if "text/html" not in request.headers.get("Accept", ""):
        return shaped
    body = json.loads(shaped.text or "{}")
    context = {"reason": problem.reason, "reference": body.get("id")}
    response = page(request, "oidc_error.html", context)
    response.set_status(400)
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, text="Continue", headers={"Location": location, **NO_STORE})


def _oauth_error(request: web.Request, exc: OidcError) -> web.Response:
    """The one error shape, with RFC 6749 §5.2's `error` and `error_description` beside it."""
    shaped = response_for(request, exc)
    body: dict[str, Any] = json.loads(shaped.text or "{}")
    body |= {"error": exc.error, "error_description": exc.message}
    return web.json_response(body, status=exc.status, headers={**exc.headers, **NO_STORE})


@routes.get("/.well-known/openid-configuration")
@documented(contract.DISCOVERY)
async def discovery(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[keys.OIDC].discovery(), headers={"Cache-Control": "public, max-age=300"}
    )


@routes.get("/oidc/authorize")
@documented(contract.AUTHORIZE)
async def authorize(request: web.Request) -> web.Response:
    provider = request.app[keys.OIDC]
    try:
        query = AuthorizeQuery(
            response_type=contract.RESPONSE_TYPE.read(request),
            client_id=contract.CLIENT_ID.read(request),
            redirect_uri=contract.REDIRECT_URI.read(request),
            scope=contract.SCOPE.read(request),
            state=contract.STATE.read(request),
            nonce=contract.NONCE.read(request),
            code_challenge=contract.CODE_CHALLENGE.read(request),
            code_challenge_method=contract.CODE_CHALLENGE_METHOD.read(request),
        )
    except BadRequest as exc:
        # A repeated or over-long parameter: no part of the request can be trusted with an
        # answer, the redirect_uri included.
        return _error_page(request, PageError("damaged", exc.message))
    try:
        return _redirect(await provider.authorize(query))
    except PageError as problem:
        return _error_page(request, problem)


@routes.get("/oidc/callback")
@documented(contract.CALLBACK)
async def callback(request: web.Request) -> web.Response:
    try:
        code = contract.WECHAT_CODE.read(request)
        state = contract.WECHAT_STATE.read(request)
        return _redirect(await request.app[keys.OIDC].callback(code, state))
    except BadRequest as exc:
        return _error_page(request, PageError("damaged", exc.message))
    except PageError as problem:
        return _error_page(request, problem)


async def _form(request: web.Request) -> dict[str, str]:
    """The token request's form; a parameter given twice is refused (RFC 6749 §3.2)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise OidcError("invalid_request", "the body must be application/x-www-form-urlencoded")
    posted = await request.post()
    form: dict[str, str] = {}
    for name in posted:
        values = posted.getall(name)
        if len(values) > 1 or not isinstance(values[0], str):
            raise OidcError("invalid_request", f"{name} must be given once, as text")
        form[name] = values[0]
    return form


@routes.post("/oidc/token")
@documented(contract.TOKEN)
async def token(request: web.Request) -> web.Response:
    try:
        basic, malformed = parse_basic(request.headers.get("Authorization"))
        answer = await request.app[keys.OIDC].token(
            TokenRequest(await _form(request), basic, malformed)
        )
    except OidcError as exc:
        return _oauth_error(request, exc)
    return web.json_response(answer, headers=NO_STORE)


async def _userinfo(request: web.Request) -> web.Response:
    try:
        claims = await request.app[keys.OIDC].userinfo(
            bearer_token(request.headers.get("Authorization"))
        )
    except OidcError as exc:
        return _oauth_error(request, exc)
    return web.json_response(claims, headers=NO_STORE)


@routes.get("/oidc/userinfo")
@documented(contract.USERINFO_GET)
async def userinfo(request: web.Request) -> web.Response:
    return await _userinfo(request)


@routes.post("/oidc/userinfo")
@documented(contract.USERINFO_POST)
async def userinfo_post(request: web.Request) -> web.Response:
    return await _userinfo(request)
