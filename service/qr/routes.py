"""/wechat/qrcode (the account's parametric QR codes) and /wechat/qrcode/login (scan to sign in)."""

from __future__ import annotations

from email.utils import formatdate

from aiohttp import web

from service import keys
from service.access import require_admin
from service.openapi import documented
from service.qr import codes, contract

routes = web.RouteTableDef()

CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def _cache_headers(seconds: int, now: float) -> dict[str, str]:
    # The image is valid exactly as long as its ticket: caches may keep it that long, no longer.
    return {
        "Cache-Control": f"private, max-age={seconds}",
        "Expires": formatdate(now + seconds, usegmt=True),
    }


def _answer(
    ticket: codes.Ticket, request_format: str, scale: int, border: int, now: float
) -> web.Response:
    headers = _cache_headers(ticket.cache_seconds(now), now)
    if request_format == "json":
        return web.json_response(ticket.public(scale, border), headers=headers)
    image = codes.render(ticket.url, request_format, scale, border)
    return web.Response(body=image, content_type=CONTENT_TYPES[request_format], headers=headers)


@routes.get("/wechat/qrcode")
@documented(contract.QR_CODE)
async def qr_code(request: web.Request) -> web.Response:
    app = request.app
    kind = contract.TYPE.value(request)
    if kind == "permanent":
        # The account may hold 100,000 permanent codes in its whole life (§8): operators only.
        require_admin(request, "creating permanent QR codes")
    scene = codes.scene_of(kind, contract.SCENE.value(request))
    expire_seconds = codes.expiry_of(
        kind, contract.EXPIRE_SECONDS.read(request), app[keys.SETTINGS].qrcode_expire_seconds
    )
    image_format = contract.FORMAT.value(request)
    scale, border = contract.SCALE.value(request), contract.BORDER.value(request)
    services = app[keys.ACCOUNTS].official(contract.ACCOUNT.read(request), "QR codes")
    ticket = await services.qr_codes.obtain(kind, scene, expire_seconds)
    return _answer(ticket, image_format, scale, border, app[keys.CLOCK].now())


@routes.post("/wechat/qrcode/login")
@documented(contract.START_QR_LOGIN)
async def start_login(request: web.Request) -> web.Response:
    """A sign-in session and its QR code: `format=json` (default), png or svg."""
    app = request.app
    redirect_uri = contract.LOGIN_REDIRECT_URI.read(request)
    image_format = contract.LOGIN_FORMAT.value(request)
    scale, border = contract.SCALE.value(request), contract.BORDER.value(request)
    account = contract.ACCOUNT.read(request)
    services = app[keys.ACCOUNTS].official(account, "QR sign-in codes")
    started = await services.qr_sign_in.start(redirect_uri)
    poll_url = request.app.router["qr_login_status"].url_for(scene=started.scene)
    # The session is the account's: its poll names it (the default's needs no name).
    if services is not app[keys.ACCOUNTS].default:
        poll_url = poll_url.with_query(account=services.account.name)
    poll = str(poll_url)
    headers = {"Cache-Control": "no-store", "Location": poll, "X-QR-Scene": started.scene}
    if image_format != "json":
        image = codes.render(started.url, image_format, scale, border)
        return web.Response(
            status=201, body=image, content_type=CONTENT_TYPES[image_format], headers=headers
        )
    body = {
        "scene": started.scene,
        "status": "pending",
        "ticket": started.ticket,
        "url": started.url,
        "expiresAt": started.expires_at.isoformat(),
        "poll": poll,
        "image": codes.data_uri(started.url, scale, border),
    }
    return web.json_response(body, status=201, headers=headers)


@routes.get("/wechat/qrcode/login/{scene}", name="qr_login_status")
@documented(contract.QR_LOGIN_STATUS)
async def login_state(request: web.Request) -> web.Response:
    """pending, scanned, expired, or confirmed with the JWT (handed out once); `wait` long-polls."""
    app = request.app
    wait = contract.WAIT.value(request)
    services = app[keys.ACCOUNTS].official(contract.ACCOUNT.read(request), "QR sign-in sessions")
    body = await services.qr_sign_in.status(request.match_info["scene"], wait)
    return web.json_response(body, headers={"Cache-Control": "no-store"})
