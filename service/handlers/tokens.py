"""/wechat/subscribed (for the signed-in user) and /wechat/tokens/status (for operators)."""

from __future__ import annotations

import hmac

from aiohttp import web

from .. import keys
from ..auth import bearer_token
from ..errors import Forbidden, Unauthorized
from ..follow import check_follow

routes = web.RouteTableDef()


def signed_in_openid(request: web.Request) -> str:
    """The openid of the app JWT in `Authorization: Bearer …`; 401 without a valid one."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized(
            "an Authorization: Bearer <token> header with the app's JWT is required",
            field="Authorization",
            value=None,
            headers={"WWW-Authenticate": 'Bearer realm="wechat"'},
        )
    return request.app[keys.JWT].verify(token)["sub"]


@routes.get("/wechat/subscribed")
async def subscribed(request: web.Request) -> web.Response:
    openid = signed_in_openid(request)
    result = await check_follow(
        request.app[keys.BASE_TOKENS],
        request.app[keys.WECHAT],
        request.app[keys.STORE],
        openid,
    )
    return web.json_response(result, headers={"Cache-Control": "no-store"})


def require_admin(request: web.Request, what: str = "the status endpoint") -> None:
    """X-Admin-Key must equal ADMIN_KEY: 401 without it, 403 if wrong or ADMIN_KEY is unset
    (then `what` is disabled)."""
    expected = request.app[keys.SETTINGS].admin_key
    given = request.headers.get("X-Admin-Key")
    if not expected:
        raise Forbidden(f"{what} is disabled: set ADMIN_KEY to enable it", field="X-Admin-Key")
    if not given:
        raise Unauthorized("the X-Admin-Key header is required", field="X-Admin-Key")
    # aiohttp hands header bytes that are not UTF-8 over as surrogate escapes; encoding them
    # back the same way compares the bytes that were sent (str.encode() would raise: a 500).
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise Forbidden("wrong admin key", field="X-Admin-Key", value="…")


@routes.get("/wechat/tokens/status")
async def tokens_status(request: web.Request) -> web.Response:
    """Ages, expiries, lease and errors; never a token value."""
    require_admin(request)
    keeper = request.app[keys.BASE_TOKENS]
    scheduler = request.app[keys.SCHEDULER]
    jobs = []
    if scheduler is not None:
        jobs = [
            {
                "id": job.id,
                "nextRunAt": job.next_run_time.isoformat() if job.next_run_time else None,
            }
            for job in scheduler.get_jobs()
        ]
    body = {
        "instance": request.app[keys.INSTANCE_ID],
        "baseToken": await keeper.status(),
        "webTokens": await request.app[keys.STORE].count_web_tokens_by_status(),
        "scheduler": {"running": scheduler is not None and scheduler.running, "jobs": jobs},
        "qrcodeBudget": request.app[keys.QR_MAKER].budget.status(),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})
