"""/wechat/message: WeChat's server-URL check (GET) and its pushed messages (POST)."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.openapi import documented
from service.push import contract, handling

routes = web.RouteTableDef()


@routes.get("/wechat/message")
@documented(contract.VERIFY_SERVER_URL)
async def verify_server_url(request: web.Request) -> web.Response:
    app = request.app
    # Read in this order, so a missing parameter is named as before: timestamp first.
    check = handling.ServerUrlCheck(
        timestamp=contract.TIMESTAMP.value(request),
        nonce=contract.NONCE.value(request),
        signature=contract.SIGNATURE.value(request),
        echostr=contract.ECHOSTR.value(request),
    )
    echostr = await app[keys.PUSH].verify_server_url(check)
    return web.Response(text=echostr, content_type="text/plain")


@routes.post("/wechat/message")
@documented(contract.RECEIVE_PUSH)
async def receive_push(request: web.Request) -> web.Response:
    app = request.app
    body = await request.read()  # client_max_size refuses bodies over MAX_BODY_BYTES (413)
    query = handling.PushQuery(
        timestamp=contract.TIMESTAMP.value(request),
        nonce=contract.NONCE.value(request),
        signature=contract.SIGNATURE.value(request),
        encrypted=contract.ENCRYPT_TYPE.read(request) == "aes",
        msg_signature=contract.MSG_SIGNATURE.read(request),
    )
    contract.OPENID.read(request)  # WeChat's copy of FromUserName: checked, not trusted
    reply = await app[keys.PUSH].receive(query, body)
    return web.Response(text=reply, content_type=handling.reply_content_type(reply))
