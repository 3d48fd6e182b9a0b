"""Sandbox mode's OpenID Connect demo: a browser app (demo-spa, PKCE in the page's script) and a
backend (demo-backend, which keeps a secret and redeems its code here, over HTTP, as any backend
would: client_secret_basic against /oidc/token, then /oidc/userinfo)."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from yarl import URL

from service import keys
from service.oidc import contract
from service.oidc_config import SANDBOX_CLIENT_SECRET
from service.openapi import documented
from service.pipeline.pages import page

routes = web.RouteTableDef()

BACKEND = "demo-backend"
STATE_COOKIE = "oidc_demo_backend"
DEMO_PATH = "/demo/oidc"


def _sandbox_only(request: web.Request) -> None:
    if not request.app[keys.SETTINGS].sandbox:
        raise web.HTTPNotFound()


@routes.get(DEMO_PATH)
@documented(contract.DEMO)
async def demo(request: web.Request) -> web.Response:
    _sandbox_only(request)
    return page(request, "oidc_demo.html", {"result": None, "failure": None})


@routes.get(f"{DEMO_PATH}/backend/start")
@documented(contract.DEMO_BACKEND_START)
async def backend_start(request: web.Request) -> web.Response:
    """What a backend does to sign someone in: state and nonce in its own cookie, then off to
    the provider's authorization endpoint."""
    _sandbox_only(request)
    provider = request.app[keys.OIDC]
    scope = "openid profile" if contract.DEMO_SCOPE.read(request) == "openid profile" else "openid"
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    target = URL(f"{provider.issuer}/oidc/authorize").with_query(
        response_type="code",
        client_id=BACKEND,
        redirect_uri=f"{provider.issuer}{DEMO_PATH}/backend",
        scope=scope,
        state=state,
        nonce=nonce,
    )
    response = web.Response(status=302, text="Continue", headers={"Location": str(target)})
    response.set_cookie(
        STATE_COOKIE, f"{state}.{nonce}", path=DEMO_PATH, httponly=True, samesite="Lax"
    )
    return response


@routes.get(f"{DEMO_PATH}/backend")
@documented(contract.DEMO_BACKEND)
async def backend_callback(request: web.Request) -> web.Response:
    """The backend's redirect_uri: checks its state, redeems the code with its secret."""
    _sandbox_only(request)
    code = contract.DEMO_CODE.read(request)
    state = contract.DEMO_STATE.read(request)
    error = contract.DEMO_ERROR.read(request)
    expected_state, _, nonce = request.cookies.get(STATE_COOKIE, "").partition(".")
    context: dict[str, Any] = {"result": None, "failure": None}
    if error:
        context["failure"] = error
    elif not expected_state or state != expected_state or not code:
        context["failure"] = "state"
    else:
        try:
            context["result"] = await _redeem(request, code, nonce)
        except (aiohttp.ClientError, jwt.PyJWTError, KeyError) as exc:
            context["failure"] = f"{type(exc).__name__}: {exc}"
    response = page(request, "oidc_demo.html", context)
    response.del_cookie(STATE_COOKIE, path=DEMO_PATH)
    return response


async def _redeem(request: web.Request, code: str, nonce: str) -> dict[str, Any]:
    app = request.app
    provider, settings = app[keys.OIDC], app[keys.SETTINGS]
    # Over loopback, as the emulator is reached: the backend and the provider are one process
    # here only because this is a demo. The Host header names the issuer this page was
    # reached at, so the provider answers as that issuer (sandbox mode follows the origin).
    base = f"http://127.0.0.1:{settings.port}"
    host = {"Host": URL(provider.issuer).raw_authority}
    http = app[keys.HTTP_SESSION]
    async with http.post(
        f"{base}/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": f"{provider.issuer}{DEMO_PATH}/backend",
        },
        headers={
            **host,
            "Authorization": aiohttp.encode_basic_auth(BACKEND, SANDBOX_CLIENT_SECRET),
        },
    ) as resp:
        tokens = await resp.json()
        if resp.status != 200:
            raise KeyError(f"{tokens.get('error')}: {tokens.get('error_description')}")
    key = provider.key
    assert key is not None  # sandbox mode always has one
    claims = jwt.decode(
        tokens["id_token"],
        key.verifying,
        algorithms=[key.algorithm],
        audience=BACKEND,
        issuer=provider.issuer,
    )
    if claims.get("nonce") != nonce:
        raise KeyError("the ID token's nonce is not this sign-in's")
    async with http.get(
        f"{base}/oidc/userinfo",
        headers={**host, "Authorization": f"Bearer {tokens['access_token']}"},
    ) as resp:
        userinfo = await resp.json()
    return {"claims": claims, "userinfo": userinfo}
