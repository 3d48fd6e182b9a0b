"""open.weixin.qq.com/connect/qrconnect: the website app's QR sign-in (WeChat_Login, website.py).

The desktop page checks the request in WeChat's order (each refusal a page, never a redirect),
then shows a QR code whose content is this emulator's own confirm page (WeChat's QR holds
https://open.weixin.qq.com/connect/confirm?uuid=…), and a small local script long-polls the
session: once the phone confirms (确认登录) it goes to redirect_uri?code=CODE&state=STATE; on
取消 to redirect_uri?state=STATE; an unanswered code expires (二维码已失效). The phone opens
the confirm page (scanning it, or from the phone page's list); tests answer through the control
API instead: GET /_sandbox/api/qrconnect, POST /_sandbox/api/qrconnect/confirm and /cancel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from aiohttp import web
from yarl import URL

from service.errors import InvalidParameter
from service.sandbox.control import QrCodeExpired, action_error, json_object, string_fields
from service.sandbox.pages import (
    STATE_PATTERN,
    AuthorizePageError,
    current_user,
    render,
)
from service.sandbox.qrcodes import qr_png
from service.sandbox.state import SANDBOX_KEY, WEBSITE_SCOPE, SandboxActionError, SandboxWeChat
from service.sandbox.website import WebsiteLogin, WebsiteLoginError

routes = web.RouteTableDef()

POLL_WAIT = 20.0  # seconds a poll is held while nothing changes (real time)
# The desktop page runs one local script that polls this server; no other origin is reached.
DESKTOP_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CANNOT_OPEN = "该链接无法访问"  # WeChat_Login: WeChat's page for a wrong parameter


def website_domains(request: web.Request, wechat: SandboxWeChat) -> tuple[str, ...]:
    """The website app's 授权回调域 (website_domain, else the account's domain), and with
    authorize_reached_host the host this page was reached at too."""
    config = wechat.config
    domain = config.website_domain or config.authorized_domain
    reached = request.url.host
    if config.authorize_reached_host and reached and reached != domain:
        return (domain, reached)
    return (domain,)


def check_qrconnect_request(query: Any, wechat: SandboxWeChat, domains: tuple[str, ...]) -> None:
    """WeChat_Login's parameters in their documented order: appid, redirect_uri,
    response_type, scope, state. WeChat shows "该链接无法访问" for a wrong one
    ("如redirect_uri的域名与审核时填写的授权域名不一致或scope不为snsapi_login"); the detail
    says which, with the authorize page's page-level codes where one applies."""
    appid = query.get("appid", "")
    if not appid:
        raise AuthorizePageError("10012", CANNOT_OPEN, "appid is missing (appid 不能为空).")
    if not wechat.config.website_appid or appid != wechat.config.website_appid:
        raise AuthorizePageError(
            "40013", CANNOT_OPEN, f"{appid!r} is not a website app's appid (invalid appid)."
        )
    redirect_uri = query.get("redirect_uri", "")
    if not redirect_uri:
        raise AuthorizePageError(
            "10011", CANNOT_OPEN, "redirect_uri is missing (redirect_uri 不能为空)."
        )
    target = URL(redirect_uri)
    if target.scheme not in ("http", "https") or target.host not in domains:
        raise AuthorizePageError(
            "10003",
            CANNOT_OPEN,
            "redirect_uri 参数错误: its domain is not the website app's 授权回调域 "
            f"{' or '.join(domains)!r}.",
        )
    if query.get("response_type") != "code":
        raise AuthorizePageError("", CANNOT_OPEN, "response_type must be code.")
    scope = query.get("scope", "")
    if not scope:
        raise AuthorizePageError("10010", CANNOT_OPEN, "scope is missing (scope 不能为空).")
    if WEBSITE_SCOPE not in scope.split(","):
        raise AuthorizePageError(
            "10005",
            CANNOT_OPEN,
            f"Scope 参数错误或没有 Scope 权限: a website app asks for snsapi_login, not {scope!r}.",
        )
    if not STATE_PATTERN.fullmatch(query.get("state", "")):
        raise AuthorizePageError(
            "", CANNOT_OPEN, "state is at most 128 characters of a-z, A-Z and 0-9."
        )


def confirm_url(request: web.Request, login: WebsiteLogin) -> str:
    path = request.app.router["qrconnect_confirm"].url_for().with_query(uuid=login.uuid)
    return str(request.url.origin().join(path))


@routes.get("/connect/qrconnect", name="qrconnect")
async def qrconnect(request: web.Request) -> web.Response:
    """The desktop page: a new QR code for every visit, as WeChat's (a refresh is a reload)."""
    wechat = request.config_dict[SANDBOX_KEY]
    try:
        check_qrconnect_request(request.query, wechat, website_domains(request, wechat))
    except AuthorizePageError as exc:
        return render(request, "sandbox/error.html", {"error": exc})
    login = wechat.website_logins.open(
        request.query["redirect_uri"], request.query.get("state", ""), wechat.clock.now()
    )
    content = confirm_url(request, login)
    image = "data:image/png;base64," + base64.b64encode(qr_png(content)).decode()
    router = request.app.router
    response = render(
        request,
        "sandbox/qrconnect.html",
        {
            "login": login,
            "appid": wechat.config.website_appid,
            "qr_image": image,
            "qr_content": content,
            "phone_url": router["sandbox_phone"].url_for().with_query(url=content),
            "poll_url": router["qrconnect_poll"].url_for().with_query(uuid=login.uuid),
            "script_url": router["sandbox_static"].url_for(path="qrconnect.js"),
            "reload_url": request.raw_path,
        },
    )
    response.headers["Content-Security-Policy"] = DESKTOP_CSP
    return response


@routes.get("/_sandbox/qrconnect/poll", name="qrconnect_poll")
async def poll(request: web.Request) -> web.Response:
    """{"status", "location"}; with ?last=STATUS held up to POLL_WAIT s while that stays so."""
    wechat = request.config_dict[SANDBOX_KEY]
    login = wechat.website_logins.get(request.query.get("uuid", ""))
    if login is None:
        raise InvalidParameter("no such website login", field="uuid")
    last = request.query.get("last", "")
    status = login.current(wechat.clock.now())
    if status == last and status in ("waiting", "scanned"):
        wait = min(POLL_WAIT, max(0.0, login.expires_at - wechat.clock.now()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(login.changed.wait(), timeout=wait)
        status = login.current(wechat.clock.now())
    response = web.json_response({"status": status, "location": login.location})
    response.headers["Cache-Control"] = "no-store"
    return response


def phone_answer(
    request: web.Request, login: WebsiteLogin | None, error: str = "", status: int = 200
) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    user = current_user(request)
    here = request.app.router["qrconnect_confirm"].url_for()
    response = render(
        request,
        "sandbox/qrconnect_confirm.html",
        {
            "login": login,
            "status": login.current(wechat.clock.now()) if login else "",
            "user": user,
            "appid": wechat.config.website_appid,
            "error": error,
            "action": here,
            "switch_url": request.app.router["sandbox_users"]
            .url_for()
            .with_query(next=str(here.with_query(uuid=login.uuid)) if login else str(here)),
            "phone_url": request.app.router["sandbox_phone"].url_for(),
        },
    )
    response.set_status(status)
    return response


@routes.get("/connect/confirm", name="qrconnect_confirm")
async def confirm_page(request: web.Request) -> web.Response:
    """What the phone opens on scanning: 确认登录 or cancel. Opening it is the scan."""
    wechat = request.config_dict[SANDBOX_KEY]
    user = current_user(request)
    uuid = request.query.get("uuid", "")
    login = wechat.website_logins.get(uuid)
    if login is None:
        return phone_answer(request, None, "No such website login: scan the code again.", 404)
    if user is None:
        return phone_answer(request, login, "Pick a sandbox user first.")
    try:
        wechat.website_user(user.openid)
        wechat.website_logins.scan(uuid, user.openid, wechat.clock.now())
    except (WebsiteLoginError, SandboxActionError) as exc:
        return phone_answer(request, login, exc.message)
    return phone_answer(request, login)


@routes.post("/connect/confirm", name="qrconnect_answer")
async def confirm_answer(request: web.Request) -> web.Response:
    """The phone's answer: action=allow (确认登录) or cancel (取消登录)."""
    wechat = request.config_dict[SANDBOX_KEY]
    form = await request.post()
    uuid = str(form.get("uuid", ""))
    user = current_user(request)
    login = wechat.website_logins.get(uuid)
    try:
        if str(form.get("action", "")) == "allow":
            if user is None:
                return phone_answer(request, login, "Pick a sandbox user first.", 400)
            wechat.website_confirm(uuid, user.openid)
        else:
            wechat.website_cancel(uuid)
    except (WebsiteLoginError, SandboxActionError) as exc:
        return phone_answer(request, login, exc.message, 400 if login else 404)
    return phone_answer(request, login)


# The control API: answer a website login without a phone.


def login_error(exc: WebsiteLoginError) -> Exception:
    if exc.reason == "expired":
        return QrCodeExpired(exc.message, field="uuid")
    return InvalidParameter(exc.message, field="uuid")


@routes.get("/_sandbox/api/qrconnect")
async def pending_logins(request: web.Request) -> web.Response:
    """The website logins whose QR code is still waiting for an answer, oldest first."""
    wechat = request.config_dict[SANDBOX_KEY]
    now = wechat.clock.now()
    logins = [login.as_json(now) for login in wechat.website_logins.pending(now)]
    return web.json_response({"logins": logins})


@routes.post("/_sandbox/api/qrconnect/confirm")
async def api_confirm(request: web.Request) -> web.Response:
    """{"uuid": ..., "openid": ...}: that user scans the code and taps 确认登录."""
    fields = string_fields(await json_object(request), ("uuid", "openid"))
    wechat = request.config_dict[SANDBOX_KEY]
    try:
        login = wechat.website_confirm(fields.get("uuid", ""), fields.get("openid"))
    except WebsiteLoginError as exc:
        raise login_error(exc) from None
    except SandboxActionError as exc:
        raise action_error(exc) from None
    return web.json_response(login.as_json(wechat.clock.now()))


@routes.post("/_sandbox/api/qrconnect/cancel")
async def api_cancel(request: web.Request) -> web.Response:
    """{"uuid": ...}: the person scans the code and cancels."""
    fields = string_fields(await json_object(request), ("uuid",))
    wechat = request.config_dict[SANDBOX_KEY]
    try:
        login = wechat.website_cancel(fields.get("uuid", ""))
    except WebsiteLoginError as exc:
        raise login_error(exc) from None
    return web.json_response(login.as_json(wechat.clock.now()))
