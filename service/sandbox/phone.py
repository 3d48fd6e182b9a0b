"""The sandbox user's phone: scan a parametric QR code, follow or unfollow an account, chat
with it and use its menu (§8, §10).

A phone-sized page without JavaScript. The current sandbox user comes from the picker's cookie;
the Official Account from a select box (?appid=, default the first account; every form carries
it on). Each button is a form POST that performs the action, pushes what WeChat would to that
account's message_url
(a scan's event, a plain follow's subscribe, a text message, a menu's scancode_push,
location_select or pic_photo_or_album with their nested XML, or any push written as the JSON
POST /_sandbox/api/push takes), and shows what WeChat sent and what the account's server
answered. A scanned code is its own account's, whichever is selected: the page then shows
that account.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from yarl import URL

from service.sandbox import push
from service.sandbox.control import action_error
from service.sandbox.pages import current_user, render
from service.sandbox.records import PushRecord
from service.sandbox.state import SANDBOX_KEY, SandboxAccount, SandboxActionError, SandboxWeChat

routes = web.RouteTableDef()
RECENT = 5
MAX_PICTURES = 9  # WeChat's photo picker takes up to nine


class PhoneFormError(ValueError):
    """What the person typed cannot be sent; the page says why."""


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


def website_login_uuid(value: str) -> str | None:
    """The uuid of a website sign-in's QR code (…/connect/confirm?uuid=…), else None."""
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        return None
    target = URL(value)
    if target.path.endswith("/connect/confirm") and target.query.get("uuid"):
        return target.query["uuid"]
    return None


def chosen_account(wechat: SandboxWeChat, appid: str | None) -> SandboxAccount:
    """The account the phone's select box names; the first one if it names none we know."""
    try:
        return wechat.account(appid)
    except SandboxActionError:
        return wechat.account()


def phone_page(
    request: web.Request,
    *,
    appid: str | None = None,
    code: str = "",
    result: PushRecord | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    router = request.app.router
    account = chosen_account(wechat, appid or request.query.get("appid"))
    person = current_user(request)
    # The person as the chosen account sees them: their openid in it, whether they follow it.
    user = wechat.account_user(person.openid, account.appid) if person is not None else None
    here = router["sandbox_phone"].url_for()
    if account.appid != wechat.config.appid:
        here = here.with_query(appid=account.appid)
    recent: list[Any] = []
    if user is not None:
        mine = [
            r
            for r in wechat.pushes
            if r.fields.get("FromUserName") == user.openid
            and (r.appid or wechat.config.appid) == account.appid
        ]
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
            "accounts": wechat.config.official_accounts,
            "appid": account.appid,
            "original_id": account.original_id,
            "message_url": account.message_url,
            "message_mode": account.message_mode,
            "phone_url": router["sandbox_phone"].url_for(),
            "scan_url": router["sandbox_phone_scan"].url_for(),
            "unfollow_url": router["sandbox_phone_unfollow"].url_for(),
            "follow_url": router["sandbox_phone_follow"].url_for(),
            "push_url": router["sandbox_phone_push"].url_for(),
            "switch_url": router["sandbox_users"].url_for().with_query(next=str(here)),
            # Website sign-ins (qrconnect.py) waiting for a phone, as if their codes were in view.
            "website_logins": [
                router["qrconnect_confirm"].url_for().with_query(uuid=login.uuid)
                for login in wechat.website_logins.pending(wechat.clock.now())
            ],
        },
    )
    response.set_status(status)
    return response


@routes.get("/_sandbox/phone", name="sandbox_phone")
async def phone(request: web.Request) -> web.Response:
    """?url= or ?ticket= fills in the code to scan; ?appid= picks the Official Account."""
    code = request.query.get("url") or request.query.get("ticket") or ""
    return phone_page(request, code=code)


def _text(form: Mapping[str, Any], name: str, default: str = "") -> str:
    return str(form.get(name, "")).strip() or default


def _chat_text(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    content = str(form.get("content", ""))
    if not content.strip():
        raise PhoneFormError("Type a message first.")
    return "text", {"Content": content}  # as typed: WeChat keeps the spaces


def _menu_scan(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """扫码推事件: the menu's scanner read a code; WeChat pushes what it read."""
    result = _text(form, "result")
    if not result:
        raise PhoneFormError("Say what the scanned code contained.")
    return "event", {
        "Event": "scancode_push",
        "EventKey": _text(form, "key", "menu_scan"),
        "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": result},
    }


def _menu_location(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """弹出地理位置选择器: the person picked a place on the map."""
    x, y = _text(form, "latitude", "23.134521"), _text(form, "longitude", "113.358803")
    try:
        float(x), float(y)
    except ValueError:
        raise PhoneFormError("Latitude and longitude are numbers.") from None
    return "event", {
        "Event": "location_select",
        "EventKey": _text(form, "key", "menu_location"),
        "SendLocationInfo": {
            "Location_X": x,
            "Location_Y": y,
            "Scale": "15",
            "Label": _text(form, "label"),
            "Poiname": "",
        },
    }


def _menu_photo(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """弹出拍照或者相册发图: the person picked photos; WeChat pushes their MD5 sums."""
    try:
        count = int(_text(form, "count", "1"))
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_PICTURES:
        raise PhoneFormError(f"Pick 1 to {MAX_PICTURES} photos.")
    # A made-up photo's MD5 sum: 32 hex digits, as WeChat writes them.
    pictures = [{"PicMd5Sum": secrets.token_hex(16)} for _ in range(count)]
    return "event", {
        "Event": "pic_photo_or_album",
        "EventKey": _text(form, "key", "menu_photo"),
        "SendPicsInfo": {"Count": count, "PicList": {"item": pictures}},
    }


def _any_push(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Any push, written as POST /_sandbox/api/push's JSON (without the openid)."""
    try:
        body = json.loads(str(form.get("json", "")))
    except (ValueError, RecursionError):
        raise PhoneFormError("Write the push as a JSON object.") from None
    if not isinstance(body, dict) or not isinstance(body.get("msgType"), str):
        raise PhoneFormError('Write the push as a JSON object with its "msgType".')
    if "openid" in body:
        raise PhoneFormError("The push comes from this phone's user: leave out openid.")
    if "appid" in body:
        raise PhoneFormError("The push goes to the account chosen above: leave out appid.")
    msg_type = body.pop("msgType")
    return msg_type, body


PHONE_PUSHES: dict[str, Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]]]] = {
    "text": _chat_text,
    "scancode_push": _menu_scan,
    "location_select": _menu_location,
    "pic_photo_or_album": _menu_photo,
    "json": _any_push,
}


async def _act(
    request: web.Request, action: str, code: str = "", form: Mapping[str, Any] | None = None
) -> web.Response:
    form = form or {}
    wechat = request.config_dict[SANDBOX_KEY]
    appid = chosen_account(wechat, str(form.get("appid", "")) or None).appid
    user = current_user(request)
    if user is None:
        return phone_page(
            request, appid=appid, code=code, error="Pick a sandbox user first.", status=400
        )
    try:
        if action == "scan":
            uuid = website_login_uuid(code)
            if uuid is not None:  # a website's sign-in code: its confirm page (qrconnect.py)
                confirm = request.app.router["qrconnect_confirm"].url_for().with_query(uuid=uuid)
                raise web.HTTPSeeOther(location=str(confirm))
            ticket, url = parse_code(code)
            if ticket is None and url is None:
                return phone_page(
                    request, appid=appid, error="Paste a QR code's url or ticket.", status=400
                )
            # Whichever account is selected: the code is its own account's (the page follows).
            record = await push.scan(request, user.openid, ticket, url)
        elif action == "follow":
            record = await push.follow(request, user.openid, appid)
        elif action == "push":
            build = PHONE_PUSHES.get(str(form.get("kind", "")))
            if build is None:
                return phone_page(request, appid=appid, error="No such thing to send.", status=400)
            try:
                msg_type, extra = build(form)
            except PhoneFormError as exc:
                return phone_page(request, appid=appid, error=str(exc), status=400)
            record = await push.person(request, user.openid, msg_type, extra, appid)
        else:
            record = await push.unfollow(request, user.openid, appid)
    except SandboxActionError as exc:
        failure = action_error(exc)
        return phone_page(
            request, appid=appid, code=code, error=failure.message, status=failure.status
        )
    return phone_page(request, appid=record.appid or appid, code=code, result=record)


@routes.post("/_sandbox/phone/scan", name="sandbox_phone_scan")
async def phone_scan(request: web.Request) -> web.Response:
    form = await request.post()
    return await _act(request, "scan", str(form.get("code", "")), form)


@routes.post("/_sandbox/phone/unfollow", name="sandbox_phone_unfollow")
async def phone_unfollow(request: web.Request) -> web.Response:
    """不再关注 the selected account (the form's appid)."""
    return await _act(request, "unfollow", form=await request.post())


@routes.post("/_sandbox/phone/follow", name="sandbox_phone_follow")
async def phone_follow(request: web.Request) -> web.Response:
    """关注: a plain follow of the selected account (the form's appid), without a code."""
    return await _act(request, "follow", form=await request.post())


@routes.post("/_sandbox/phone/push", name="sandbox_phone_push")
async def phone_push(request: web.Request) -> web.Response:
    """kind=text|scancode_push|location_select|pic_photo_or_album|json and that form's fields."""
    return await _act(request, "push", form=await request.post())
