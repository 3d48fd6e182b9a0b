"""Every AppKey in one place, each typed with the class of what it holds.

keys.py sits between the logic and the wiring: it imports the classes of the resources, and
only the wiring (routes, cleanup contexts, the service's layer, app.py) imports keys. A logic module
never reads the app, so it never imports this module, and no import circle can form.

The service's handlers run in the main app and read these from `request.app` (its layer from
the app it was made for), a dict lookup; `request.config_dict` would build a ChainMapProxy on
every access, which was 6% of an authorization's server time (bench/README.md).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.account_services import Accounts
from service.app_jwt.issuer import JwtIssuer
from service.clock import Clock
from service.config import Settings
from service.oidc.provider import OidcProvider
from service.openapi import ApiDocument
from service.pipeline.metrics import Metrics
from service.pipeline.ratelimit import Network, RateLimiter
from service.pipeline.routing import Layer
from service.push.background import Background
from service.qr.login import LoginWaiters
from service.signin.flow import SignIns
from service.store.queries import Store

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
# The layer every route's handler runs in (pipeline/layer.py); a route added after create_app
# joins it with pipeline.routing.add_routes (the tests' probes do).
LAYER: web.AppKey[Layer] = web.AppKey("layer")

# Resources with a lifetime, each made and closed by a cleanup context.
# The default account's view of the store; Store.for_account gives another's (queries.py).
STORE = web.AppKey("store", Store)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
# Absent while TOKEN_UPKEEP is off (tests run the jobs themselves): read it with app.get().
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
BACKGROUND = web.AppKey("background", Background)

# Each account's services (wiring.py): its WeChat client, token keepers and every area's
# logic, found by the name or appid a request gives.
ACCOUNTS = web.AppKey("accounts", Accounts)
# Finishing a sign-in: the state names its account.
SIGN_INS = web.AppKey("sign_ins", SignIns)
OIDC = web.AppKey("oidc", OidcProvider)
