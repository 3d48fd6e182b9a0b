"""The emulator's own controls, which WeChat does not have: counters, faults, clock, users.

Tests and benchmarks drive them over HTTP (or through SandboxWeChat in-process); they answer
errors in the service's one JSON shape.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..clock import ManualClock
from ..errors import InvalidParameter, ServiceError
from .state import SANDBOX_KEY, SCOPES

MAX_GRANTS = 1_000_000

routes = web.RouteTableDef()


class ClockNotManual(ServiceError):
    status = 409
    name = "CLOCK_NOT_MANUAL"


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise InvalidParameter("the body must be a JSON object", field="body") from None
    if not isinstance(body, dict):
        raise InvalidParameter("the body must be a JSON object", field="body", value=body)
    return body


@routes.get("/_stats")
async def stats(request: web.Request) -> web.Response:
    """Calls received per WeChat path since start (or the last reset)."""
    return web.json_response({"calls": dict(request.config_dict[SANDBOX_KEY].stats)})


@routes.delete("/_stats")
async def reset_stats(request: web.Request) -> web.Response:
    request.config_dict[SANDBOX_KEY].stats.clear()
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
    """{"count": n, "scope": "snsapi_base"}: n made-up users' web tokens, for load tests."""
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
    return web.json_response({"grants": wechat.grant_many(count, scope)})


@routes.get("/_sandbox/api/users")
async def users(request: web.Request) -> web.Response:
    wechat = request.config_dict[SANDBOX_KEY]
    return web.json_response({"users": [user.as_json() for user in wechat.users.values()]})
