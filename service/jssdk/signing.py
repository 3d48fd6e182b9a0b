"""wx.config's signature, as WeChat's JS-SDK doc (附录1, JS-SDK使用权限签名算法) defines it.

SHA-1 over `jsapi_ticket=…&noncestr=…&timestamp=…&url=…`: the four keys in ASCII order, the
values raw (no URL escaping), the URL without its #fragment. The ticket is the kept one
(tokens/jsapi.py): a signature never costs a getticket call of its own.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from service.clock import Clock
from service.config import Settings
from service.signin.flow import app_url
from service.tokens.jsapi import TicketKeeper
from service.wechat.client import WeChatError
from service.wechat.upstream import upstream_error

NONCE_LENGTH = 16  # the doc's example nonceStr has 16 letters and digits


def jsapi_signature(ticket: str, noncestr: str, timestamp: int, url: str) -> str:
    """SHA-1 hex of the sorted key=value pairs (the doc's string1)."""
    fields = {"jsapi_ticket": ticket, "noncestr": noncestr, "timestamp": str(timestamp), "url": url}
    string1 = "&".join(f"{key}={fields[key]}" for key in sorted(fields))
    return hashlib.sha1(string1.encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


def page_url(settings: Settings, value: str | None) -> str:
    """The page's URL as signed: its #fragment dropped (as `location.href.split('#')[0]`),
    then held to the sign-in area's rules: absolute http(s), no credentials, and an origin in
    ALLOWED_REDIRECT_ORIGINS (the service's own too in sandbox mode)."""
    without_fragment = value.split("#", 1)[0] if value else value
    return app_url(settings, "url", without_fragment)


@dataclass(frozen=True, kw_only=True)
class JsSdk:
    """wx.config's four values for a page of an allowed origin."""

    settings: Settings
    tickets: TicketKeeper
    clock: Clock

    async def config(self, url: str | None) -> dict[str, Any]:
        signed_url = page_url(self.settings, url)
        try:
            ticket = await self.tickets.get()
        except WeChatError as exc:
            raise upstream_error(exc) from None
        timestamp = int(self.clock.now())
        nonce = secrets.token_urlsafe(NONCE_LENGTH)[:NONCE_LENGTH]
        return {
            "appId": self.tickets.appid,
            "timestamp": timestamp,
            "nonceStr": nonce,
            "signature": jsapi_signature(ticket, nonce, timestamp, signed_url),
        }
