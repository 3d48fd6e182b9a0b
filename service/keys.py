"""Every AppKey in one place, so resources are typed.

The service's handlers and middleware run in the main app and read these from `request.app`
(a dict lookup); `request.config_dict` would build a ChainMapProxy on every access, which was
6% of an authorization's server time (bench/README.md)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

SETTINGS = web.AppKey("settings", "Settings")
CLOCK = web.AppKey("clock", "Clock")
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
STORE = web.AppKey("store", "Store")
WECHAT = web.AppKey("wechat", "WeChatClient")
JWT = web.AppKey("jwt", "JwtIssuer")
INSTANCE_ID = web.AppKey("instance_id", str)
BASE_TOKENS = web.AppKey("base_tokens", "BaseTokenKeeper")
WEB_TOKENS = web.AppKey("web_tokens", "WebTokenSweeper")
SCHEDULER = web.AppKey("scheduler", "AsyncIOScheduler | None")
BACKGROUND = web.AppKey("background", "Background")
QR_WAITERS = web.AppKey("qr_waiters", "LoginWaiters")
QR_MAKER = web.AppKey("qr_maker", "TicketMaker")
MESSAGE_CRYPTO = web.AppKey("message_crypto", "MessageCrypto | None")
METRICS = web.AppKey("metrics", "Metrics")
RATE_LIMITER = web.AppKey("rate_limiter", "RateLimiter")
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)
