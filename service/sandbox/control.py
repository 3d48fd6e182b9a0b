"""The emulator's own controls, which WeChat does not have: counters, faults, clock, users, the
account's IP whitelist, and the user's side of the phone: scanning a QR code, following,
unfollowing, sending a message or doing anything else WeChat pushes to the account (§10).

Tests and benchmarks drive them over HTTP (or through SandboxWeChat in-process); they answer
errors in the service's one JSON shape. Whatever concerns one Official Account takes an optional
`appid` (a JSON field, or a query parameter on GET): the first account when left out; an appid
that is no Official Account's is a 400 INVALID_PARAMETER on `appid`. Where a route takes an
`openid`, it is the person's openid in that account or their sandbox openid (the first
account's, as /_sandbox/users lists them).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from service.clock import ManualClock
from service.errors import BadRequest, InvalidParameter, ServiceError
from service.sandbox import push
from service.sandbox.jsapi import JSAPI_KEY, check_config
from service.sandbox.records import PushRecord
from service.sandbox.state import SANDBOX_KEY, SCOPES, SandboxActionError, SandboxWeChat

MAX_GRANTS = 1_000_000

routes = web.RouteTableDef()


class ClockNotManual(ServiceError):
    status = 409
    name = "CLOCK_NOT_MANUAL"


class QrCodeExpired(BadRequest):
    """WeChat would show "二维码已过期" and push nothing."""

    name = "QR_CODE_EXPIRED"


class NoMessageUrl(ServiceError):
    status = 409
    name = "NO_MESSAGE_URL"


def action_error(exc: SandboxActionError) -> ServiceError:
    """The service's error for a sandbox action the state refused."""
    if exc.reason == "no_message_url":
        return NoMessageUrl(exc.message, field="message_url")
    if exc.reason == "expired_ticket":
        return QrCodeExpired(exc.message, field=exc.field, value=exc.value)
    return InvalidParameter(exc.message, field=exc.field, value=exc.value)


def scan_answer(record: PushRecord) -> dict[str, Any]:
    """What a scripted scan or unfollow answers: the event pushed, to which account, and how
    delivery went."""
    return {
        "appid": record.appid,
        "openid": record.fields["FromUserName"],
        "event": record.fields["Event"],
        "eventKey": record.fields["EventKey"],
        "delivered": record.delivered,
        "attempts": record.attempts,
        "reply": record.reply,
        "replyFields": record.reply_fields,
        "status": record.status,
        "error": record.error,
    }


def push_answer(record: PushRecord) -> dict[str, Any]:
    """What POST /_sandbox/api/push answers: a scan's answer, with the message's type, and
    its MsgId for a message (an event has none) or its Event and EventKey for an event."""
    fields = record.fields
    answer: dict[str, Any] = {
        "appid": record.appid,
        "openid": fields["FromUserName"],
        "msgType": fields["MsgType"],
    }
    if "MsgId" in fields:
        answer["msgId"] = str(fields["MsgId"])
    if fields["MsgType"] == "event":
        answer["event"] = fields["Event"]
        answer["eventKey"] = fields.get("EventKey", "")
    return answer | {
        "delivered": record.delivered,
        "attempts": record.attempts,
        "reply": record.reply,
        "replyFields": record.reply_fields,
        "status": record.status,
        "error": record.error,
    }


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, or nested past the parser
        raise InvalidParameter("the body must be a JSON object", field="body") from None
    if not isinstance(body, dict):
        raise InvalidParameter("the body must be a JSON object", field="body", value=body)
    return body


def string_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = set(body) - set(allowed)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameter(f"unknown field {name!r}", field=name, value=body[name])
    for name, value in body.items():
        if value is not None and not (isinstance(value, str) and value):
            raise InvalidParameter(f"{name} is a non-empty string", field=name, value=value)
    return {name: value for name, value in body.items() if value is not None}


def query_account(request: web.Request, wechat: SandboxWeChat) -> str:
    """The Official Account a GET names with ?appid= (default the first)."""
    try:
        return wechat.account(request.query.get("appid")).appid
    except SandboxActionError as exc:
        raise action_error(exc) from None


def body_account(wechat: SandboxWeChat, body: dict[str, Any]) -> str | None:
    """A JSON body's optional "appid", checked: an Official Account's (None: the first)."""
    appid = body.get("appid")
    if appid is None:
        return None
    if not (isinstance(appid, str) and appid):
        raise InvalidParameter("appid is a non-empty string", field="appid", value=appid)
    try:
        return wechat.account(appid).appid
    except SandboxActionError as exc:
        raise action_error(exc) from None


@routes.get("/_stats")
async def stats(request: web.Request) -> web.Response:
    """Calls received per WeChat path since start (or the last reset); ?appid= those for one
    app (an Official Account or the website app) only."""
    wechat = request.config_dict[SANDBOX_KEY]
    appid = request.query.get("appid")
    if appid is None:
        return web.json_response({"calls": dict(wechat.stats)})
    return web.json_response({"calls": dict(wechat.account_stats.get(appid, {}))})


@routes.delete("/_stats")
async def reset_stats(request: web.Request) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    wechat.stats.clear()
    wechat.account_stats.clear()
    return web.Response(status=204)


@routes.get("/_sandbox/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.config_dict[SANDBOX_KEY].faults.as_json()})


@routes.post("/_sandbox/faults")
async def add_fault(request: web.Request) -> web.Response:
    """{"kind": "busy"|"errcode"|"http_error"|"slow", "paths": [...], "count": n, "delay": s,
    "status": n, "errcode": n}"""
    body = await json_object(request)
    unknown = set(body) - {"kind", "paths", "count", "delay", "status", "errcode"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameter(f"unknown field {name!r}", field=name, value=body[name])
    paths = body.get("paths")
    if paths is not None and not (
        isinstance(paths, list) and all(isinstance(p, str) and p for p in paths)
    ):
        raise InvalidParameter("paths is a list of WeChat paths", field="paths", value=paths)
    for name, kinds in (("count", (int,)), ("delay", (int, float)), ("status", (int,))):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise InvalidParameter(f"{name} must be a number", field=name, value=value)
    try:
        fault = request.config_dict[SANDBOX_KEY].faults.set(
            str(body.get("kind", "")),
            paths=paths,
            count=body.get("count"),
            delay=float(body.get("delay", 0.0)),
            status=body.get("status", 500),
            errcode=body.get("errcode"),
        )
    except ValueError as exc:
        field = str(exc).split(" ", 1)[0]
        raise InvalidParameter(str(exc), field=field, value=body.get(field)) from None
    return web.json_response(fault.as_json(), status=201)


@routes.delete("/_sandbox/faults")
async def clear_faults(request: web.Request) -> web.Response:
    request.config_dict[SANDBOX_KEY].faults.clear()
    return web.Response(status=204)


@routes.post("/_sandbox/clock")
async def advance_clock(request: web.Request) -> web.Response:
    """{"advance": seconds}: only when the emulator runs on a manual clock (--manual-clock)."""
    clock = request.config_dict[SANDBOX_KEY].clock
    if not isinstance(clock, ManualClock):
        raise ClockNotManual("the emulator runs on the system clock; start it with --manual-clock")
    body = await json_object(request)
    seconds = body.get("advance")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise InvalidParameter(
            "advance is a non-negative number of seconds", field="advance", value=seconds
        )
    clock.advance(seconds)
    return web.json_response({"now": clock.now()})


@routes.post("/_sandbox/grants")
async def grants(request: web.Request) -> web.Response:
    """{"count": n, "scope": "snsapi_base", "appid"?}: n made-up users' web tokens (for that
    Official Account, default the first), for load tests."""
    body = await json_object(request)
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GRANTS:
        raise InvalidParameter(
            f"count is a whole number from 1 to {MAX_GRANTS}", field="count", value=count
        )
    scope = body.get("scope", "snsapi_base")
    if scope not in SCOPES:
        raise InvalidParameter(
            "scope is snsapi_base or snsapi_userinfo", field="scope", value=scope
        )
    wechat = request.config_dict[SANDBOX_KEY]
    appid = body_account(wechat, body)
    return web.json_response({"grants": wechat.grant_many(count, scope, appid)})


@routes.post("/_sandbox/api/followers")
async def followers(request: web.Request) -> web.Response:
    """{"count": n}: n made-up followers of the first account, for load tests; their openids."""
    body = await json_object(request)
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GRANTS:
        raise InvalidParameter(
            f"count is a whole number from 1 to {MAX_GRANTS}", field="count", value=count
        )
    return web.json_response({"openids": request.config_dict[SANDBOX_KEY].add_followers(count)})


@routes.get("/_sandbox/api/users")
async def users(request: web.Request) -> web.Response:
    """The people; ?appid= as that Official Account sees them (their openid and unionid in it,
    whether they follow it), each with their sandbox openid; default the first account."""
    wechat = request.config_dict[SANDBOX_KEY]
    if "appid" not in request.query:
        return web.json_response({"users": [user.as_json() for user in wechat.users.values()]})
    appid = query_account(request, wechat)
    seen = [
        user.as_json() | {"sandbox_openid": wechat.person(user.openid).openid}
        for user in wechat.account_users(appid)
    ]
    return web.json_response({"appid": appid, "users": seen})


@routes.post("/_sandbox/api/scan")
async def scan(request: web.Request) -> web.Response:
    """{"openid": ..., "ticket": ...} or {"openid": ..., "url": ...}: the user scans the code.

    The code says which account (an "appid" given must be that one); a follower's scan pushes
    SCAN; anyone else follows through the code and subscribe is pushed (§10), to the code's
    account. Answers once the push is delivered or has run out of attempts.
    """
    fields = string_fields(await json_object(request), ("openid", "ticket", "url", "appid"))
    if "openid" not in fields:
        raise InvalidParameter("openid is required", field="openid")
    if ("ticket" in fields) == ("url" in fields):
        raise InvalidParameter(
            "give the code's ticket or its url, not both",
            field="ticket",
            value=fields.get("ticket"),
        )
    ticket = fields.get("ticket")
    if ticket is not None and "%" in ticket:
        ticket = unquote(ticket)  # §8: tickets travel URL-encoded; base64 has no "%" of its own
    try:
        record = await push.scan(
            request, fields["openid"], ticket, fields.get("url"), fields.get("appid")
        )
    except SandboxActionError as exc:
        raise action_error(exc) from None
    return web.json_response(scan_answer(record))


@routes.post("/_sandbox/api/unfollow")
async def unfollow(request: web.Request) -> web.Response:
    """{"openid": ..., "appid"?}: the user unfollows the account; unsubscribe is pushed (§10)."""
    fields = string_fields(await json_object(request), ("openid", "appid"))
    if "openid" not in fields:
        raise InvalidParameter("openid is required", field="openid")
    try:
        record = await push.unfollow(request, fields["openid"], fields.get("appid"))
    except SandboxActionError as exc:
        raise action_error(exc) from None
    return web.json_response(scan_answer(record))


@routes.post("/_sandbox/api/follow")
async def follow(request: web.Request) -> web.Response:
    """{"openid": ..., "appid"?}: the user follows the account without a code (search,
    profile page); subscribe is pushed with an empty EventKey (§10) and user/info says they
    follow (§9)."""
    fields = string_fields(await json_object(request), ("openid", "appid"))
    if "openid" not in fields:
        raise InvalidParameter("openid is required", field="openid")
    try:
        record = await push.follow(request, fields["openid"], fields.get("appid"))
    except SandboxActionError as exc:
        raise action_error(exc) from None
    return web.json_response(scan_answer(record))


@routes.post("/_sandbox/api/push")
async def person_push(request: web.Request) -> web.Response:
    """{"openid": ..., "msgType": "text"|"image"|…|"event", "appid"?, ...fields}: the user
    does it, in that account's chat (default the first account's).

    The other keys are the push's XML fields in order: {"msgType": "text", "Content": "hi"},
    {"msgType": "event", "Event": "scancode_push", "EventKey": "k", "ScanCodeInfo":
    {"ScanType": "qrcode", "ScanResult": "x"}}; objects nest, lists repeat an element (§10).
    ToUserName, FromUserName, CreateTime, MsgType and a message's MsgId are filled in as
    WeChat does (SandboxWeChat.person_push has the rules). Answers once the push is delivered
    or has run out of attempts, like /_sandbox/api/scan.
    """
    body = await json_object(request)
    appid = body_account(request.config_dict[SANDBOX_KEY], body)
    body.pop("appid", None)
    openid, msg_type = body.pop("openid", None), body.pop("msgType", None)
    for name, value in (("openid", openid), ("msgType", msg_type)):
        if not (isinstance(value, str) and value):
            raise InvalidParameter(f"{name} is a non-empty string", field=name, value=value)
    try:
        record = await push.person(request, openid, msg_type, body, appid)
    except SandboxActionError as exc:
        raise action_error(exc) from None
    return web.json_response(push_answer(record))


@routes.post("/_sandbox/jssdk/verify")
async def verify_jssdk_config(request: web.Request) -> web.Response:
    """What the JS-SDK has WeChat check on wx.config: {appId, url, timestamp, nonceStr,
    signature} (the JSON wx.config was given, and the page's URL) against the jsapi_tickets
    this WeChat issued to that appId's account and that are still valid (any Official
    Account's appId, each with its own tickets). 200 {"ok", "errMsg"}: config:ok, or
    config:invalid signature; the emulator's jweixin.js stand-in calls it."""
    body = await json_object(request)
    wechat = request.config_dict[SANDBOX_KEY]
    wechat.stats["_sandbox/jssdk/verify"] += 1
    return web.json_response(check_config(wechat, request.config_dict[JSAPI_KEY], body))


@routes.get("/_sandbox/ip-whitelist")
async def ip_whitelist(request: web.Request) -> web.Response:
    """The account's IP whitelist for cgi-bin/token and stable_token; [] is none configured.
    ?appid= another Official Account's (default the first's)."""
    wechat = request.config_dict[SANDBOX_KEY]
    account = wechat.account(query_account(request, wechat))
    return web.json_response({"addresses": list(account.ip_whitelist)})


@routes.put("/_sandbox/ip-whitelist")
async def set_ip_whitelist(request: web.Request) -> web.Response:
    """{"addresses": ["203.0.113.7", ...], "appid"?}: callers elsewhere get 40164 (§6, §7) from
    that account (default the first); [] lifts it."""
    body = await json_object(request)
    unknown = set(body) - {"addresses", "appid"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameter(f"unknown field {name!r}", field=name, value=body[name])
    addresses = body.get("addresses")
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise InvalidParameter(
            "addresses is a list of IPv4 addresses", field="addresses", value=addresses
        )
    for address in addresses:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise InvalidParameter(
                "addresses is a list of IPv4 addresses", field="addresses", value=address
            ) from None
    wechat = request.config_dict[SANDBOX_KEY]
    wechat.set_ip_whitelist(tuple(addresses), body_account(wechat, body))
    return web.json_response({"addresses": addresses})


@routes.get("/_sandbox/api/pushes")
async def pushes(request: web.Request) -> web.Response:
    """The last pushes (at most 200), oldest first, each with the appid of the account it
    went to; ?appid= only that account's."""
    wechat = request.config_dict[SANDBOX_KEY]
    appid = query_account(request, wechat) if "appid" in request.query else None
    records = [r for r in wechat.pushes if appid is None or r.appid == appid]
    return web.json_response({"pushes": [record.as_json() for record in records]})


@routes.delete("/_sandbox/api/pushes")
async def clear_pushes(request: web.Request) -> web.Response:
    request.config_dict[SANDBOX_KEY].pushes.clear()
    return web.Response(status=204)
