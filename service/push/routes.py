"""/wechat/message: WeChat's server-URL check (GET) and its pushed messages (POST)."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.params import query
from service.push import handling

routes = web.RouteTableDef()

PUSH_PARAMS = ("signature", "timestamp", "nonce", "openid", "encrypt_type", "msg_signature")


@routes.get("/wechat/message")
async def verify_server_url(request: web.Request) -> web.Response:
    app = request.app
    params = {name: query(request, name) for name in ("signature", "timestamp", "nonce", "echostr")}
    echostr = await handling.verify_server_url(
        app[keys.SETTINGS], app[keys.STORE], params, app[keys.CLOCK].now()
    )
    return web.Response(text=echostr, content_type="text/plain")


@routes.post("/wechat/message")
async def receive_push(request: web.Request) -> web.Response:
    app = request.app
    body = await request.read()  # client_max_size refuses bodies over MAX_BODY_BYTES (413)
    params = {name: query(request, name) for name in PUSH_PARAMS}
    reply = await handling.receive(
        handling.MessageServices(
            settings=app[keys.SETTINGS],
            clock=app[keys.CLOCK],
            store=app[keys.STORE],
            keeper=app[keys.BASE_TOKENS],
            wechat=app[keys.WECHAT],
            waiters=app[keys.QR_WAITERS],
            background=app[keys.BACKGROUND],
            crypto=app[keys.MESSAGE_CRYPTO],
            metrics=app[keys.METRICS],
        ),
        params,
        body,
    )
    return web.Response(text=reply, content_type=handling.reply_content_type(reply))
