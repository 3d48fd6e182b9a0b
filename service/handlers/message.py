"""/wechat/message: WeChat's server-URL check (GET)."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..errors import InvalidSignature, MissingParameter
from ..signature import signature_matches, wechat_signature
from .params import query

routes = web.RouteTableDef()


@routes.get("/wechat/message")
async def verify_server_url(request: web.Request) -> web.Response:
    settings = request.config_dict[keys.SETTINGS]
    values = {}
    for name in ("signature", "timestamp", "nonce", "echostr"):
        value = query(request, name)
        if not value:
            raise MissingParameter(f"{name} is required", field=name, value=value)
        values[name] = value
    expected = wechat_signature(settings.wechat_token, values["timestamp"], values["nonce"])
    if not signature_matches(expected, values["signature"]):
        raise InvalidSignature(
            "signature does not match WECHAT_TOKEN", field="signature", value=values["signature"]
        )
    return web.Response(text=values["echostr"], content_type="text/plain")
