"""open.weixin.qq.com in the browser: the authorize redirect, consent, and the sandbox user picker.

WeChat shows its refusals as HTML pages (HTTP 200) in the in-app browser and never redirects
back to the app; the emulator does the same, quoting WeChat's page-level error codes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from yarl import URL

from service.errors import InvalidParameter
from service.sandbox.state import SANDBOX_KEY, SCOPES, SandboxActionError, SandboxWeChat
from service.sandbox.users import SandboxUser

routes = web.RouteTableDef()

TEMPLATES_KEY = web.AppKey("sandbox_jinja2", jinja2.Environment)
USER_COOKIE = "sandbox_openid"
# §1: WeChat checks the parameter order strictly, appid first; state is optional.
AUTHORIZE_ORDER = ("appid", "redirect_uri", "response_type", "scope", "state")
STATE_PATTERN = re.compile(r"[A-Za-z0-9]{0,128}")
ACTIONS = ("allow", "deny", "close")


class AuthorizePageError(Exception):
    """A refusal WeChat shows as a page: its page-level errcode and its text."""

    def __init__(self, code: str, title: str, detail: str) -> None:
        super().__init__(title)
        self.code, self.title, self.detail = code, title, detail


def render(request: web.Request, template: str, context: dict[str, Any]) -> web.Response:
    base = {
        "css_url": request.app.router["sandbox_static"].url_for(path="sandbox.css"),
        "home_url": request.app.router["sandbox_home"].url_for(),
        "users_url": request.app.router["sandbox_users"].url_for(),
    }
    response = aiohttp_jinja2.render_template(
        template, request, base | context, app_key=TEMPLATES_KEY
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The sandbox's pages run no script at all. No form-action: the consent form's answer
    # redirects to the app's callback, which may be on any origin, as on WeChat.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data: https:; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return response


def current_user(request: web.Request) -> SandboxUser | None:
    openid = request.cookies.get(USER_COOKIE, "")
    return request.config_dict[SANDBOX_KEY].users.get(openid)


def authorized_domains(request: web.Request, wechat: SandboxWeChat) -> tuple[str, ...]:
    """The accounts' 网页授权域名 (one for all of them, an emulator choice), and with
    authorize_reached_host the host this page was reached at too (the service's sandbox mode
    without PUBLIC_URL: the demo on any host)."""
    config = wechat.config
    reached = request.url.host
    if config.authorize_reached_host and reached and reached != config.authorized_domain:
        return (config.authorized_domain, reached)
    return (config.authorized_domain,)


def check_authorize_request(query: Any, wechat: SandboxWeChat, domains: tuple[str, ...]) -> None:
    """WeChat's checks, in its order; each failure is a page, never a redirect."""
    keys = [key for key, _ in query.items()]  # .keys() would hide repeated parameters
    documented = [key for key in keys if key in AUTHORIZE_ORDER]
    expected = [key for key in AUTHORIZE_ORDER if key in query]
    if documented != expected or keys[: len(documented)] != documented:
        raise AuthorizePageError(
            "",
            "参数错误 (parameter error)",
            "The parameters must come first, in the order appid, redirect_uri, response_type, "
            "scope, state, each once.",
        )
    appid = query.get("appid", "")
    if not appid:
        raise AuthorizePageError("10012", "appid 不能为空", "appid is missing.")
    if wechat.config.official_account(appid) is None:  # any Official Account, no other app
        raise AuthorizePageError("40013", "invalid appid", f"Unknown appid {appid!r}.")
    redirect_uri = query.get("redirect_uri", "")
    if not redirect_uri:
        raise AuthorizePageError("10011", "redirect_uri 不能为空", "redirect_uri is missing.")
    target = URL(redirect_uri)
    if target.scheme not in ("http", "https") or target.host not in domains:
        raise AuthorizePageError(
            "10003",
            "redirect_uri 域名与后台配置不一致",
            f"redirect_uri's domain is not the authorized domain {' or '.join(domains)!r}.",
        )
    if query.get("response_type") != "code":
        raise AuthorizePageError("", "参数错误 (parameter error)", "response_type must be code.")
    scope = query.get("scope", "")
    if not scope:
        raise AuthorizePageError("10010", "scope 不能为空", "scope is missing.")
    if scope not in SCOPES:
        raise AuthorizePageError(
            "10005", "Scope 参数错误或没有 Scope 权限", f"Unknown scope {scope!r}."
        )
    if not STATE_PATTERN.fullmatch(query.get("state", "")):
        raise AuthorizePageError(
            "", "state 参数错误", "state is at most 128 characters of a-z, A-Z and 0-9."
        )


def back_to_app(redirect_uri: str, **params: str) -> web.HTTPFound:
    return web.HTTPFound(location=str(URL(redirect_uri).update_query(params)))


@routes.get("/connect/oauth2/authorize", name="authorize")
async def authorize(request: web.Request) -> web.StreamResponse:
    """snsapi_base answers at once; snsapi_userinfo asks the user first (§1). The code is
    for the Official Account the appid names: only its appid and secret exchange it."""
    wechat = request.config_dict[SANDBOX_KEY]
    query = request.query
    user: SandboxUser | None
    try:
        check_authorize_request(query, wechat, authorized_domains(request, wechat))
        action = query.get("sandbox_action", "")
        if action and action not in ACTIONS:
            raise AuthorizePageError(
                "", "sandbox_action", "sandbox_action is allow, deny or close."
            )
        if "sandbox_openid" in query:
            try:  # the sandbox openid, or the person's openid in any app
                user = wechat.person(query["sandbox_openid"])
            except SandboxActionError:
                raise AuthorizePageError(
                    "", "Unknown sandbox user", f"No sandbox user {query['sandbox_openid']!r}."
                ) from None
        else:
            user = current_user(request)
    except AuthorizePageError as exc:
        return render(request, "sandbox/error.html", {"error": exc})

    if user is None:
        # A real WeChat user is always signed in; here the person at the browser picks one.
        users = request.app.router["sandbox_users"].url_for().with_query(next=request.raw_path)
        raise web.HTTPFound(location=str(users))

    appid = query["appid"]
    redirect_uri, scope, state = query["redirect_uri"], query["scope"], query.get("state", "")
    if user.snapshot and scope != "snsapi_userinfo":
        # §1: WeChat opens the snapshot page for irregular snsapi_userinfo requests only; a
        # silent snsapi_base authorization always names the person's real account.
        error = AuthorizePageError(
            "",
            "No snapshot page for snsapi_base",
            "WeChat shows the snapshot page (快照页) only for snsapi_userinfo; snsapi_base "
            "answers with the person's real account. Pick a real sandbox user.",
        )
        return render(request, "sandbox/error.html", {"error": error})
    if scope == "snsapi_userinfo" and action != "allow":
        if action == "deny":
            raise back_to_app(redirect_uri, state=state)
        if action == "close":
            # Also documented (§1): on refusal many clients just close the page.
            return render(request, "sandbox/closed.html", {})
        return render(
            request,
            "sandbox/consent.html",
            {
                "user": user,
                "openid": wechat.account_user(user.openid, appid).openid,
                "appid": appid,
                "action": request.path,
                "fields": [(key, value) for key, value in query.items() if key != "sandbox_action"],
                # Back here without the scripted user, or the choice would not stick.
                "switch_url": request.app.router["sandbox_users"]
                .url_for()
                .with_query(next=str(request.rel_url.without_query_params("sandbox_openid"))),
            },
        )
    code = wechat.issue_code(user.openid, scope, appid)
    raise back_to_app(redirect_uri, code=code, state=state)


def safe_next(value: str) -> str | None:
    """Only a path on this server: anything else would make the picker an open redirect."""
    if value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return None


@routes.get("/_sandbox/users", name="sandbox_users")
async def users_page(request: web.Request) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    user = current_user(request)
    return render(
        request,
        "sandbox/users.html",
        {
            "users": list(wechat.users.values()),
            "current": user.openid if user else None,
            "next": safe_next(request.query.get("next", "")) or "",
            "select_url": request.app.router["sandbox_select_user"].url_for(),
        },
    )


@routes.post("/_sandbox/users/select", name="sandbox_select_user")
async def select_user(request: web.Request) -> web.Response:
    form = await request.post()
    openid = str(form.get("openid", ""))
    if openid not in request.config_dict[SANDBOX_KEY].users:
        raise InvalidParameter("no such sandbox user", field="openid", value=openid)
    location = safe_next(str(form.get("next", ""))) or str(
        request.app.router["sandbox_users"].url_for()
    )
    response = web.HTTPSeeOther(location=location)
    response.set_cookie(USER_COOKIE, openid, path="/", httponly=True, samesite="Lax")
    raise response


@routes.get("/", name="sandbox_home")
async def home(request: web.Request) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    user = current_user(request)
    return render(
        request,
        "sandbox/index.html",
        {
            "config": dataclasses.replace(
                wechat.config, authorized_domain=", ".join(authorized_domains(request, wechat))
            ),
            "user": user,
            "users": list(wechat.users.values()),
            "accounts": wechat.config.official_accounts,
            "base": str(request.url.origin()) + str(request.app.router["sandbox_home"].url_for()),
            "phone_url": request.app.router["sandbox_phone"].url_for(),
        },
    )
