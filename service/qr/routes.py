"""/wechat/qrcode (the account's parametric QR codes) and /wechat/qrcode/login (scan to sign in)."""

from __future__ import annotations

from email.utils import formatdate

from aiohttp import web

from service import keys
from service.access import require_admin
from service.errors import InvalidParameter
from service.params import query
from service.qr import codes
from service.qr.login import MAX_WAIT, login_status, start_qr_login

routes = web.RouteTableDef()

CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
QR_PARAMS = ("type", "scene", "expireSeconds", "format", "scale", "border")


def _cache_headers(seconds: int, now: float) -> dict[str, str]:
    # The image is valid exactly as long as its ticket: caches may keep it that long, no longer.
    return {
        "Cache-Control": f"private, max-age={seconds}",
        "Expires": formatdate(now + seconds, usegmt=True),
    }


def _answer(doc: dict, request_format: str, scale: int, border: int, now: float) -> web.Response:
    headers = _cache_headers(codes.cache_seconds(doc, now), now)
    if request_format == "json":
        return web.json_response(codes.public_ticket(doc, scale, border), headers=headers)
    image = codes.render(doc["url"], request_format, scale, border)
    return web.Response(body=image, content_type=CONTENT_TYPES[request_format], headers=headers)


@routes.get("/wechat/qrcode")
async def qr_code(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    if query(request, "type") == "permanent":
        # The account may hold 100,000 permanent codes in its whole life (§8): operators only.
        require_admin(request, "creating permanent QR codes")
    wanted = codes.parse_qr_request(
        {name: query(request, name) for name in QR_PARAMS}, settings.qrcode_expire_seconds
    )
    doc = await codes.obtain_ticket(
        app[keys.STORE],
        app[keys.BASE_TOKENS],
        app[keys.WECHAT],
        app[keys.QR_MAKER],
        wanted.kind,
        wanted.scene,
        wanted.expire_seconds,
    )
    return _answer(doc, wanted.format, wanted.scale, wanted.border, app[keys.CLOCK].now())


@routes.post("/wechat/qrcode/login")
async def start_login(request: web.Request) -> web.Response:
    """A sign-in session and its QR code: `format=json` (default), png or svg."""
    app = request.app
    settings = app[keys.SETTINGS]
    wanted = codes.parse_qr_request(
        {
            "format": query(request, "format") or "json",
            "scale": query(request, "scale"),
            "border": query(request, "border"),
        },
        settings.qr_login_ttl,
        scene_required=False,
    )
    doc = await start_qr_login(
        app[keys.STORE],
        app[keys.BASE_TOKENS],
        app[keys.WECHAT],
        app[keys.QR_MAKER],
        settings,
        query(request, "redirectUri"),
    )
    poll = str(request.app.router["qr_login_status"].url_for(scene=doc["_id"]))
    headers = {"Cache-Control": "no-store", "Location": poll, "X-QR-Scene": doc["_id"]}
    if wanted.format != "json":
        image = codes.render(doc["url"], wanted.format, wanted.scale, wanted.border)
        return web.Response(
            status=201, body=image, content_type=CONTENT_TYPES[wanted.format], headers=headers
        )
    body = {
        "scene": doc["_id"],
        "status": "pending",
        "ticket": doc["ticket"],
        "url": doc["url"],
        "expiresAt": doc["expiresAt"].isoformat(),
        "poll": poll,
        "image": codes.data_uri(doc["url"], wanted.scale, wanted.border),
    }
    return web.json_response(body, status=201, headers=headers)


@routes.get("/wechat/qrcode/login/{scene}", name="qr_login_status")
async def login_state(request: web.Request) -> web.Response:
    """pending, scanned, expired, or confirmed with the JWT (handed out once); `wait` long-polls."""
    app = request.app
    raw_wait = query(request, "wait") or "0"
    if not (raw_wait.isascii() and raw_wait.isdigit()) or int(raw_wait) > MAX_WAIT:
        raise InvalidParameter(
            f"wait is a whole number of seconds from 0 to {MAX_WAIT}", field="wait", value=raw_wait
        )
    body = await login_status(
        app[keys.STORE],
        app[keys.JWT],
        app[keys.CLOCK],
        app[keys.QR_WAITERS],
        request.match_info["scene"],
        int(raw_wait),
    )
    return web.json_response(body, headers={"Cache-Control": "no-store"})
