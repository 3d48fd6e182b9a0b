"""WeChat's JSON API (api.weixin.qq.com) over HTTP, with its conventions (§0 of wechat-api.md).

Every answer is HTTP 200 with `{"errcode", "errmsg"}` on failure and a ` rid: …` suffix on the
errmsg; the content type is WeChat's own `application/json; encoding=utf-8`. Each call is
counted per path, may be refused by the per-minute limit, and may meet an injected fault.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .state import SANDBOX_KEY, SNS_CALLS_PER_MINUTE, ApiError, SandboxWeChat

CONTENT_TYPE = "application/json; encoding=utf-8"

ApiHandler = Callable[[web.Request, SandboxWeChat], Awaitable[dict[str, Any]]]

routes = web.RouteTableDef()


def rid() -> str:
    return "-".join(secrets.token_hex(4) for _ in range(3))


def wechat_json(body: dict[str, Any]) -> web.Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


def wechat_error(errcode: int, errmsg: str) -> web.Response:
    return wechat_json({"errcode": errcode, "errmsg": f"{errmsg} rid: {rid()}"})


def wechat_api(method: str, path: str, *, per_minute: int) -> Callable[[ApiHandler], ApiHandler]:
    """Register `path` (WeChat's, without a leading slash) with the conventions above."""

    def register(handler: ApiHandler) -> ApiHandler:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            wechat = request.config_dict[SANDBOX_KEY]
            fault = wechat.faults.take(path)
            if fault is not None:
                if fault.kind == "busy":
                    wechat.stats[path] += 1
                    return wechat_error(-1, "system error")
                if fault.kind == "http_error":
                    wechat.stats[path] += 1
                    return web.Response(
                        status=fault.status,
                        text=f"<html><body><h1>{fault.status}</h1></body></html>",
                        content_type="text/html",
                    )
                await asyncio.sleep(fault.delay)
            try:
                wechat.count_call(path, per_minute)
                return wechat_json(await handler(request, wechat))
            except ApiError as exc:
                return wechat_error(exc.errcode, exc.errmsg)

        routes.route(method, f"/{path}")(endpoint)
        return handler

    return register


@wechat_api("GET", "sns/oauth2/access_token", per_minute=SNS_CALLS_PER_MINUTE)
async def sns_access_token(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    q = request.query
    return wechat.exchange_code(q.get("appid"), q.get("secret"), q.get("code"), q.get("grant_type"))


@wechat_api("GET", "sns/oauth2/refresh_token", per_minute=SNS_CALLS_PER_MINUTE)
async def sns_refresh_token(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    q = request.query
    return wechat.refresh(q.get("appid"), q.get("grant_type"), q.get("refresh_token"))


@wechat_api("GET", "sns/userinfo", per_minute=SNS_CALLS_PER_MINUTE)
async def sns_userinfo(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    return wechat.user_info(request.query.get("access_token"), request.query.get("openid"))


@wechat_api("GET", "sns/auth", per_minute=SNS_CALLS_PER_MINUTE)
async def sns_auth(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    return wechat.check_web_token(request.query.get("access_token"), request.query.get("openid"))
