"""The sandbox user's phone: scan a parametric QR code, unfollow the account (§8, §10).

A phone-sized page without JavaScript. The current sandbox user comes from the picker's cookie;
each button is a form POST that performs the action, pushes the event to message_url, and
shows what WeChat sent and what the account's server answered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web
from yarl import URL

from . import push
from .control import action_error
from .pages import current_user, render
from .state import SANDBOX_KEY, SandboxActionError

routes = web.RouteTableDef()
RECENT = 5


def parse_code(value: str) -> tuple[str | None, str | None]:
    """(ticket, url) from what was pasted: a QR url (http://weixin.qq.com/q/…), a showqrcode
    link (its ticket), or a ticket, URL-encoded or not."""
    value = value.strip()
    if value.startswith(("http://", "https://")):
        target = URL(value)
        if "ticket" in target.query:
            return target.query["ticket"], None
        return None, value
    return (unquote(value) if "%" in value else value) or None, None


def phone_page(
    request: web.Request,
    *,
    code: str = "",
    result: push.PushRecord | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    router = request.app.router
    user = current_user(request)
    here = str(router["sandbox_phone"].url_for())
    recent: list[Any] = []
    if user is not None:
        mine = [r for r in wechat.pushes if r.fields.get("FromUserName") == user.openid]
        recent = list(reversed(mine[-RECENT:]))
    response = render(
        request,
        "sandbox/phone.html",
        {
            "user": user,
            "code": code,
            "result": result,
            "error": error,
            "recent": recent,
            "original_id": wechat.config.original_id,
            "message_url": wechat.config.message_url,
            "message_mode": wechat.config.message_mode,
            "scan_url": router["sandbox_phone_scan"].url_for(),
            "unfollow_url": router["sandbox_phone_unfollow"].url_for(),
            "switch_url": router["sandbox_users"].url_for().with_query(next=here),
        },
    )
    response.set_status(status)
    return response


@routes.get("/_sandbox/phone", name="sandbox_phone")
async def phone(request: web.Request) -> web.Response:
    """?url= or ?ticket= fills in the code to scan."""
    code = request.query.get("url") or request.query.get("ticket") or ""
    return phone_page(request, code=code)


async def _act(request: web.Request, action: str, code: str = "") -> web.Response:
    user = current_user(request)
    if user is None:
        return phone_page(request, code=code, error="Pick a sandbox user first.", status=400)
    try:
        if action == "scan":
            ticket, url = parse_code(code)
            if ticket is None and url is None:
                return phone_page(request, error="Paste a QR code's url or ticket.", status=400)
            record = await push.scan(request, user.openid, ticket, url)
        else:
            record = await push.unfollow(request, user.openid)
    except SandboxActionError as exc:
        failure = action_error(exc)
        return phone_page(request, code=code, error=failure.message, status=failure.status)
    return phone_page(request, code=code, result=record)


@routes.post("/_sandbox/phone/scan", name="sandbox_phone_scan")
async def phone_scan(request: web.Request) -> web.Response:
    form = await request.post()
    return await _act(request, "scan", str(form.get("code", "")))


@routes.post("/_sandbox/phone/unfollow", name="sandbox_phone_unfollow")
async def phone_unfollow(request: web.Request) -> web.Response:
    return await _act(request, "unfollow")
