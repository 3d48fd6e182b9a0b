"""The JS-SDK's side of WeChat: cgi-bin/ticket/getticket and the check wx.config makes.

WeChat's JS-SDK doc (附录1): a jsapi_ticket is got with the base access_token
(`GET cgi-bin/ticket/getticket?access_token=…&type=jsapi`), answers
`{"errcode":0,"errmsg":"ok","ticket":"…","expires_in":7200}` and lives 7200 s; getticket's
calls are "very limited", so the ticket must be cached centrally. Modelled here: every call
issues a new ticket, valid 7200 s from then, and the earlier ones stay valid until their own
end (a refetch never breaks pages signed a moment ago). type `wx_card` is WeChat's other ticket
(the card API's), issued the same way; any other type answers 40097 invalid args. A ticket is
the account's whose access_token asked for it (each Official Account has its own, and its own
daily quota).

wx.config's check is what jweixin.js has WeChat do: the signature must be the SHA-1 of
`jsapi_ticket=…&noncestr=…&timestamp=…&url=…` (keys in ASCII order, raw values, the URL
without its #fragment) with a ticket this WeChat issued to the account wx.config names (appId)
that is still valid. It answers
`config:ok` or `config:invalid signature`, as the JS-SDK's error callback reports them.
This module implements it on its own, apart from the service's signing (jssdk/signing.py).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from service.sandbox.state import SandboxWeChat, fail

JSAPI_TICKET_TTL = 7200  # the JS-SDK doc: expires_in 7200
# The JS-SDK doc says only that getticket's calls are "very limited" (非常有限); each account's
# daily figure is on its 接口权限 page. An assumption, as cgi-bin/qrcode/create's figure is.
GETTICKET_DAILY_QUOTA = 100_000
INVALID_ARGS = (40097, "invalid args")  # the global errcode list: 参数错误
TICKET_TYPES = ("jsapi", "wx_card")
TICKET_MEMORY = 4096  # tickets remembered; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    kind: str  # jsapi | wx_card
    end: float
    appid: str  # the Official Account whose access_token asked for it


@dataclass
class JsapiTickets:
    """Every ticket issued, with its end and account; the newest last."""

    issued: dict[str, IssuedTicket] = field(default_factory=dict)

    def getticket(
        self, wechat: SandboxWeChat, access_token: str | None, ticket_type: str | None
    ) -> dict[str, Any]:
        """The errcodes in the order WeChat checks: the base token (41001, 40001, 42001),
        the type (40097), then the daily quota (45009)."""
        token = wechat.check_base_token(access_token)
        if ticket_type not in TICKET_TYPES:
            raise fail(INVALID_ARGS)
        wechat.use_daily_quota("cgi-bin/ticket/getticket", GETTICKET_DAILY_QUOTA, token.appid)
        now = wechat.clock.now()
        if len(self.issued) >= TICKET_MEMORY:
            del self.issued[next(iter(self.issued))]
        ticket = secrets.token_urlsafe(64)  # 86 of [A-Za-z0-9_-], the shape of WeChat's
        self.issued[ticket] = IssuedTicket(ticket_type, now + JSAPI_TICKET_TTL, token.appid)
        return {"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": JSAPI_TICKET_TTL}

    def expire(self, ticket: str) -> None:
        """Tests: end a ticket now, as its 7200 s would."""
        issued = self.issued[ticket]
        self.issued[ticket] = IssuedTicket(issued.kind, 0.0, issued.appid)

    def live_jsapi_tickets(self, now: float, appid: str | None = None) -> list[str]:
        """The jsapi_tickets still valid: every account's, or only the account `appid`'s."""
        return [
            ticket
            for ticket, issued in self.issued.items()
            if issued.kind == "jsapi" and issued.end > now and appid in (None, issued.appid)
        ]


def signature_of(ticket: str, noncestr: str, timestamp: str, url: str) -> str:
    string1 = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(string1.encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


def check_config(
    wechat: SandboxWeChat, tickets: JsapiTickets, config: dict[str, Any]
) -> dict[str, Any]:
    """wx.config's verdict for {appId, url, timestamp, nonceStr, signature}: appId any Official
    Account's, the signature made with a live jsapi_ticket of that account."""
    fields = {name: config.get(name) for name in ("appId", "url", "timestamp", "nonceStr")}
    signature = config.get("signature")
    if any(v is None or str(v) == "" for v in fields.values()) or not signature:
        return {"ok": False, "errMsg": "config:invalid signature"}
    account = wechat.config.official_account(str(fields["appId"]))
    if account is None:
        return {"ok": False, "errMsg": "config:invalid signature"}
    url = str(fields["url"]).split("#", 1)[0]
    for ticket in tickets.live_jsapi_tickets(wechat.clock.now(), account.appid):
        expected = signature_of(ticket, str(fields["nonceStr"]), str(fields["timestamp"]), url)
        if secrets.compare_digest(expected, str(signature).lower()):
            return {"ok": True, "errMsg": "config:ok"}
    return {"ok": False, "errMsg": "config:invalid signature"}


JSAPI_KEY = web.AppKey("sandbox_jsapi_tickets", JsapiTickets)
