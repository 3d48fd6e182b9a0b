"""/wechat/access_token: the kept base access_token for the team's other backends."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service import keys
from service.errors import Forbidden, InvalidParameter, MissingParameter
from service.openapi import documented
from service.shared_token import contract
from service.shared_token.handout import API_KEY_HEADER, SharedToken

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store"}


def _caller_and_token(request: web.Request, account: str | None) -> tuple[str, SharedToken]:
    """Who calls (401/403 first, so an unknown caller learns nothing of the accounts), and the
    named Official Account's shared token."""
    accounts = request.app[keys.ACCOUNTS]
    officials = accounts.officials()
    if not officials:  # website apps only: there is no base token to hand out
        raise Forbidden(
            "no Official Account is configured: there is no access token to hand out",
            field=API_KEY_HEADER,
        )
    # Every account's SharedToken holds the same API_KEYS.
    caller = officials[0].shared_token.caller(request.headers.get(API_KEY_HEADER))
    services = accounts.official(account, "base access tokens")
    return caller, services.shared_token


@routes.get("/wechat/access_token")
@documented(contract.ACCESS_TOKEN)
async def access_token(request: web.Request) -> web.Response:
    caller, shared = _caller_and_token(request, contract.ACCOUNT.read(request))
    return web.json_response(await shared.hand_out(caller), headers=NO_STORE)


@routes.post("/wechat/access_token/invalidate")
@documented(contract.INVALIDATE)
async def invalidate(request: web.Request) -> web.Response:
    caller, shared = _caller_and_token(request, contract.ACCOUNT.read(request))
    token = await _reported_token(request)
    return web.json_response(await shared.invalidate(caller, token), headers=NO_STORE)


async def _reported_token(request: web.Request) -> str:
    """The body's accessToken; never echoed in an error (it is a credential)."""
    try:
        body: Any = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidParameter(
            "the body must be a JSON object with accessToken", field="accessToken"
        )
    token = body.get("accessToken")
    if token is None or token == "":
        raise MissingParameter("accessToken is required", field="accessToken")
    if not isinstance(token, str) or len(token) > 512:
        raise InvalidParameter(
            "accessToken must be a string of 1 to 512 characters", field="accessToken"
        )
    return token
