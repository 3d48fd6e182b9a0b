"""Every AppKey in one place, each typed with the class of what it holds.

keys.py sits between the logic and the wiring: it imports the classes of the resources, and
only the wiring (routes, cleanup contexts, the middleware, app.py) imports keys. A logic module
never reads the app, so it never imports this module, and no import circle can form.

The service's handlers and middleware run in the main app and read these from `request.app`
(a dict lookup); `request.config_dict` would build a ChainMapProxy on every access, which was
6% of an authorization's server time (bench/README.md).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.account.follow import FollowCheck
from service.app_jwt.issuer import JwtIssuer
from service.clock import Clock
from service.config import Settings
from service.jssdk.signing import JsSdk
from service.oidc.provider import OidcProvider
from service.openapi import ApiDocument
from service.pipeline.metrics import Metrics
from service.pipeline.ratelimit import Network, RateLimiter
from service.push.background import Background
from service.push.handling import PushHandler
from service.qr.codes import QrCodes
from service.qr.login import LoginWaiters, QrSignIn
from service.shared_token.handout import SharedToken
from service.signin.flow import SignIn
from service.store.queries import Store
from service.tokens.base import BaseTokenKeeper
from service.tokens.jsapi import TicketKeeper
from service.tokens.web import WebTokenSweeper
from service.wechat.client import WeChatClient

# Foundations, made in create_app().
SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
INSTANCE_ID = web.AppKey("instance_id", str)
METRICS = web.AppKey("metrics", Metrics)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])
JWT = web.AppKey("jwt", JwtIssuer)
API_DOCUMENT = web.AppKey("api_document", ApiDocument)
QR_WAITERS = web.AppKey("qr_waiters", LoginWaiters)
# WECHAT_VERIFY_FILES read at start: each MP_verify_….txt name and its content.
VERIFY_FILES = web.AppKey("verify_files", dict[str, bytes])

# Resources with a lifetime, each made and closed by a cleanup context.
STORE = web.AppKey("store", Store)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
WECHAT = web.AppKey("wechat", WeChatClient)
BASE_TOKENS = web.AppKey("base_tokens", BaseTokenKeeper)
JSAPI_TICKETS = web.AppKey("jsapi_tickets", TicketKeeper)
WEB_TOKENS = web.AppKey("web_tokens", WebTokenSweeper)
# Absent while TOKEN_UPKEEP is off (tests run the jobs themselves): read it with app.get().
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
BACKGROUND = web.AppKey("background", Background)

# Each area's service, built once from the resources above.
SIGN_IN = web.AppKey("sign_in", SignIn)
FOLLOW = web.AppKey("follow", FollowCheck)
JSSDK = web.AppKey("jssdk", JsSdk)
QR_CODES = web.AppKey("qr_codes", QrCodes)
QR_SIGN_IN = web.AppKey("qr_sign_in", QrSignIn)
PUSH = web.AppKey("push", PushHandler)
OIDC = web.AppKey("oidc", OidcProvider)
SHARED_TOKEN = web.AppKey("shared_token", SharedToken)
