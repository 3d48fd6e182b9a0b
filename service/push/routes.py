"""/wechat/message: WeChat's server-URL check (GET) and its pushed messages (POST)."""

from __future__ import annotations

from aiohttp import hdrs, web

from service import keys
from service.account_services import OfficialServices
from service.openapi import documented
from service.push import contract, handling

routes = web.RouteTableDef()


def _push_handler(request: web.Request) -> handling.PushHandler:
    """/wechat/message is the first Official Account's (the default's); /wechat/message/{account}
    another's."""
    accounts = request.app[keys.ACCOUNTS]
    name = request.match_info.get("account")
    if name is None:
        officials = accounts.officials()
        if not officials:
            raise web.HTTPNotFound()  # website apps receive no pushes
        return officials[0].push
    found = accounts.find(name)
    if not isinstance(found, OfficialServices):
        raise web.HTTPNotFound()  # a path that names no Official Account: as any unknown path
    return found.push


@routes.get("/wechat/message")
@documented(contract.VERIFY_SERVER_URL)
async def verify_server_url(request: web.Request) -> web.Response:
    # Read in this order, so a missing parameter is named as before: timestamp first.
    check = handling.ServerUrlCheck(
        timestamp=contract.TIMESTAMP.value(request),
        nonce=contract.NONCE.value(request),
        signature=contract.SIGNATURE.value(request),
        echostr=contract.ECHOSTR.value(request),
    )
    echostr = await _push_handler(request).verify_server_url(check)
    return web.Response(text=echostr, content_type="text/plain")


@routes.post("/wechat/message")
@documented(contract.RECEIVE_PUSH)
async def receive_push(request: web.Request) -> web.Response:
    body = await request.read()  # client_max_size refuses bodies over MAX_BODY_BYTES (413)
    query = handling.PushQuery(
        timestamp=contract.TIMESTAMP.value(request),
        nonce=contract.NONCE.value(request),
        signature=contract.SIGNATURE.value(request),
        encrypted=contract.ENCRYPT_TYPE.read(request) == "aes",
        msg_signature=contract.MSG_SIGNATURE.read(request),
    )
    contract.OPENID.read(request)  # WeChat's copy of FromUserName: checked, not trusted
    reply = await _push_handler(request).receive(query, body)
    content_type = handling.reply_content_type(reply)
    return web.Response(body=reply.encode(), headers={hdrs.CONTENT_TYPE: content_type})


# Another account's server URL (服务器配置): the same check and pushes, its token and key.
@routes.get("/wechat/message/{account}")
@documented(contract.VERIFY_ACCOUNT_SERVER_URL)
async def verify_account_server_url(request: web.Request) -> web.StreamResponse:
    return await verify_server_url(request)


@routes.post("/wechat/message/{account}")
@documented(contract.RECEIVE_ACCOUNT_PUSH)
async def receive_account_push(request: web.Request) -> web.StreamResponse:
    return await receive_push(request)
