"""WeChat's JSON API (api.weixin.qq.com) over HTTP, with its conventions (§0 of wechat-api.md).

sns/* for web authorization (§2-§5); cgi-bin/token, cgi-bin/stable_token and cgi-bin/user/info
(§6, §7, §9), whose base access_token every later cgi-bin endpoint checks the same way
(SandboxWeChat.check_base_token); cgi-bin/qrcode/create and showqrcode (§8).

One API host for every Official Account (SandboxConfig.official_accounts) and the website app:
the appid a call names, or the access_token issued to an appid, says which one it is for.

Every answer is HTTP 200 with `{"errcode", "errmsg"}` on failure and a ` rid: …` suffix on the
errmsg; the content type is WeChat's own `application/json; encoding=utf-8`. Each call is
counted per path and per account, may be refused by that account's per-minute limit, and may
meet an injected fault. cgi-bin/token and cgi-bin/stable_token check the account's IP whitelist
when one is configured (SandboxConfig.ip_whitelist, SandboxAccount.ip_whitelist: 40164), and
stable_token asked with another method than POST
answers 43002 `require POST method`, as WeChat does, rather than an HTTP 405.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from service.sandbox.jsapi import JSAPI_KEY
from service.sandbox.qrcodes import qr_png
from service.sandbox.state import (
    CGI_CALLS_PER_MINUTE,
    DATA_FORMAT_ERROR,
    REQUIRE_POST,
    SANDBOX_KEY,
    SNS_CALLS_PER_MINUTE,
    STABLE_TOKEN_PER_MINUTE,
    ApiError,
    SandboxActionError,
    SandboxWeChat,
    errmsg_for,
    fail,
)

CONTENT_TYPE = "application/json; encoding=utf-8"
SNS_CONTENT_TYPE = "text/plain"  # §1: the sns endpoints label their JSON so; decode it anyway

ApiHandler = Callable[[web.Request, SandboxWeChat], Awaitable[dict[str, Any]]]

routes = web.RouteTableDef()


def rid() -> str:
    return "-".join(secrets.token_hex(4) for _ in range(3))


def wechat_json(body: dict[str, Any], content_type: str = CONTENT_TYPE) -> web.Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(body=text.encode(), headers={"Content-Type": content_type})


def wechat_error(errcode: int, errmsg: str, content_type: str = CONTENT_TYPE) -> web.Response:
    return wechat_json({"errcode": errcode, "errmsg": f"{errmsg} rid: {rid()}"}, content_type)


def caller_ipv4(request: web.Request) -> str:
    """The caller's IPv4 address as 40164's errmsg names it (loopback when there is none)."""
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return "127.0.0.1"
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or ipaddress.IPv4Address("127.0.0.1")
    return str(address)


async def call_account(request: web.Request, wechat: SandboxWeChat, path: str) -> str:
    """The app a call is for: the appid it names (the query's, or stable_token's JSON body's),
    else the one its access_token was issued to (SandboxWeChat.call_account)."""
    appid = request.query.get("appid")
    if path == "cgi-bin/stable_token" and request.method == "POST":
        try:
            body = json.loads(await request.read())  # read once: the handler gets it again
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("appid"), str):
            appid = body["appid"]
    return wechat.call_account(appid, request.query.get("access_token"))


def wechat_api(method: str, path: str, *, per_minute: int) -> Callable[[ApiHandler], ApiHandler]:
    """Register `path` (WeChat's, without a leading slash) with the conventions above."""

    content_type = SNS_CONTENT_TYPE if path.startswith("sns/") else CONTENT_TYPE

    def register(handler: ApiHandler) -> ApiHandler:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            wechat = request.config_dict[SANDBOX_KEY]
            appid = await call_account(request, wechat, path)
            fault = wechat.faults.take(path)
            if fault is not None:
                # Every call received is counted, faulted or not (GET /_stats).
                if fault.errcode is not None:  # busy (-1) and errcode faults
                    wechat.note_call(path, appid)
                    errmsg = errmsg_for(fault.errcode, caller_ipv4(request))
                    return wechat_error(fault.errcode, errmsg, content_type)
                if fault.kind == "http_error":
                    wechat.note_call(path, appid)
                    return web.Response(
                        status=fault.status,
                        text=f"<html><body><h1>{fault.status}</h1></body></html>",
                        content_type="text/html",
                    )
                await asyncio.sleep(fault.delay)
            try:
                wechat.count_call(path, per_minute, appid)
                return wechat_json(await handler(request, wechat), content_type)
            except ApiError as exc:
                return wechat_error(exc.errcode, exc.errmsg, content_type)

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


@wechat_api("GET", "cgi-bin/token", per_minute=CGI_CALLS_PER_MINUTE)
async def cgi_token(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    wechat.check_caller_ip(caller_ipv4(request), request.query.get("appid"))
    q = request.query
    return wechat.fetch_token(q.get("appid"), q.get("secret"), q.get("grant_type"))


@wechat_api("POST", "cgi-bin/stable_token", per_minute=STABLE_TOKEN_PER_MINUTE)
async def cgi_stable_token(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    """§7: POST with a JSON body only; anything else is 47001 data format error."""
    try:
        body = json.loads(await request.read())
    except ValueError:  # bad JSON or bad UTF-8
        body = None
    named = body.get("appid") if isinstance(body, dict) else None
    wechat.check_caller_ip(caller_ipv4(request), named if isinstance(named, str) else None)
    if not isinstance(body, dict):
        raise fail(DATA_FORMAT_ERROR)
    fields = [body.get(name) for name in ("appid", "secret", "grant_type")]
    force = body.get("force_refresh")
    if any(v is not None and not isinstance(v, str) for v in fields) or not isinstance(
        force, bool | None
    ):
        raise fail(DATA_FORMAT_ERROR)
    appid, secret, grant_type = fields
    return wechat.stable_token(appid, secret, grant_type, force_refresh=bool(force))


@routes.route("*", "/cgi-bin/stable_token")
async def cgi_stable_token_not_post(request: web.Request) -> web.StreamResponse:
    """§7 "POST only": WeChat answers another method with errcode JSON (43002, listed on the
    stable_token page's errcode table), not an HTTP 405. Counted in GET /_stats like any call;
    faults and quotas are left to real calls."""
    request.config_dict[SANDBOX_KEY].note_call("cgi-bin/stable_token")
    return wechat_error(*REQUIRE_POST)


@wechat_api("GET", "cgi-bin/user/info", per_minute=CGI_CALLS_PER_MINUTE)
async def cgi_user_info(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    return wechat.cgi_user_info(request.query.get("access_token"), request.query.get("openid"))


@wechat_api("POST", "cgi-bin/qrcode/create", per_minute=CGI_CALLS_PER_MINUTE)
async def cgi_qrcode_create(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    """§8: a JSON body; SandboxWeChat.create_qrcode checks it and answers WeChat's errcodes."""
    return wechat.create_qrcode(request.query.get("access_token"), await request.read())


@wechat_api("GET", "cgi-bin/ticket/getticket", per_minute=CGI_CALLS_PER_MINUTE)
async def cgi_getticket(request: web.Request, wechat: SandboxWeChat) -> dict[str, Any]:
    """The JS-SDK's jsapi_ticket (and the card API's wx_card): see jsapi.py."""
    q = request.query
    return request.config_dict[JSAPI_KEY].getticket(wechat, q.get("access_token"), q.get("type"))


@routes.get("/cgi-bin/showqrcode")
async def showqrcode(request: web.Request) -> web.StreamResponse:
    """§8: on WeChat this is mp.weixin.qq.com/cgi-bin/showqrcode; here it sits under the same
    base as the API. No access_token. HTTP 200 with the image for a live ticket, a bare
    HTTP 404 (no errcode JSON) for an unknown or expired one. The query string must carry
    the ticket URL-encoded: an unencoded "+" arrives as a space and the ticket is unknown.
    Counted in GET /_stats; faults don't apply (they answer WeChat's JSON API errors)."""
    wechat = request.config_dict[SANDBOX_KEY]
    try:
        code = wechat.find_qrcode(ticket=request.query.get("ticket", ""))
    except SandboxActionError:
        wechat.note_call("cgi-bin/showqrcode")
        return web.Response(status=404, text="404 Not Found", content_type="text/plain")
    wechat.note_call("cgi-bin/showqrcode", code.appid)  # the code's account
    # WeChat answers image/jpg; segno writes PNG without Pillow, so the emulator sends PNG.
    return web.Response(body=qr_png(code.url), content_type="image/png")
