"""create_app(): resources as cleanup contexts, templates, routes, middlewares; no I/O at import."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from service import keys, resources
from service.account import routes as account_routes
from service.app_jwt.issuer import JwtIssuer
from service.clock import Clock, SystemClock
from service.config import Settings, jwt_key_set
from service.ops import docs as ops_docs
from service.ops import health as ops_health
from service.ops import metrics as ops_metrics
from service.ops import status as ops_status
from service.pipeline.metrics import Metrics
from service.pipeline.middleware import service_middleware
from service.pipeline.ratelimit import Limit, RateLimiter, parse_networks
from service.push import routes as push_routes
from service.push.background import background_ctx
from service.push.handling import message_crypto
from service.qr import routes as qr_routes
from service.qr.codes import TicketMaker
from service.qr.login import LoginWaiters, close_waiters
from service.signin import pages as signin_pages
from service.signin import routes as signin_routes
from service.store.connection import open_database
from service.store.queries import Store
from service.store.sealing import Sealer, parse_data_keys
from service.tokens.upkeep import token_upkeep_ctx
from service.wechat.client import WeChatClient

log = logging.getLogger(__name__)

# Each area's routes, in the order the OpenAPI document lists them.
AREA_ROUTES = (
    signin_routes.routes,
    push_routes.routes,
    ops_health.routes,
    account_routes.routes,
    ops_status.routes,
    qr_routes.routes,
    ops_metrics.routes,
    signin_pages.routes,
    ops_docs.routes,
)

# Room for a query with every parameter at its 4096-character limit (percent-encoded), so
# over-long input meets the service's own 400 in the one error shape, not aiohttp's parser.
SERVER_LIMITS = {"max_line_size": 65536, "max_field_size": 65536}

TEMPLATES_DIR = resources.TEMPLATES_DIR
STATIC_DIR = resources.STATIC_DIR


def create_app(
    settings: Settings, *, clock: Clock | None = None, mongo_client: Any = None
) -> web.Application:
    """The service. `mongo_client` lets several app instances share one store (tests)."""
    app = web.Application(
        middlewares=[service_middleware],
        client_max_size=settings.max_body_bytes,
        handler_args=SERVER_LIMITS,
    )
    app[keys.SETTINGS] = settings
    app[keys.METRICS] = Metrics()
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.RATE_LIMITER] = RateLimiter(
        {
            "authorize": Limit(settings.rate_limit_authorize, settings.rate_limit_burst),
            "jwt": Limit(settings.rate_limit_jwt, settings.rate_limit_burst),
            "qrcode": Limit(settings.rate_limit_qrcode, settings.rate_limit_burst),
        },
        app[keys.CLOCK],
    )
    app[keys.TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    # Names this instance in leases, claims and status: host, process, and a random suffix.
    app[keys.INSTANCE_ID] = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    app[keys.QR_WAITERS] = LoginWaiters()
    # Long polls answer at shutdown's start, not when SHUTDOWN_TIMEOUT cuts them.
    app.on_shutdown.append(close_waiters)
    app[keys.QR_MAKER] = TicketMaker(
        app[keys.CLOCK],
        settings.qrcode_daily_budget,
        app[keys.INSTANCE_ID],
        # A claimant's create may first wait for the base token (LEASE_TTL plus a fetch).
        claim_ttl=settings.lease_ttl + 2 * settings.wechat_timeout,
    )
    app[keys.MESSAGE_CRYPTO] = message_crypto(settings)
    app[keys.JWT] = JwtIssuer(
        keys=jwt_key_set(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.jwt_ttl,
        clock=app[keys.CLOCK],
    )

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings, mongo_client) as db:
            store = Store(db, app[keys.CLOCK], Sealer(parse_data_keys(settings.data_keys)))
            await store.ensure_indexes()
            app[keys.STORE] = store
            yield

    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(http_session_ctx)
    app.cleanup_ctx.append(wechat_client_ctx)
    app.cleanup_ctx.append(token_upkeep_ctx)
    app.cleanup_ctx.append(background_ctx)

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    for area_routes in AREA_ROUTES:
        app.add_routes(area_routes)
    app.router.add_static("/static/", STATIC_DIR, name="static")

    if settings.sandbox:
        from service.sandbox import SandboxConfig, create_sandbox_app

        sandbox = create_sandbox_app(
            SandboxConfig(
                appid=settings.wechat_appid,
                secret=settings.wechat_secret,
                authorized_domain=urlsplit(settings.public_url).hostname or "localhost",
                token=settings.wechat_token,
                aes_key=settings.wechat_aes_key,
                # The emulator pushes to the service over loopback, as WeChat would over the net.
                message_url=f"http://127.0.0.1:{settings.port}/wechat/message",
                message_mode=settings.wechat_message_mode,
            ),
            app[keys.CLOCK],
        )
        app.add_subapp("/sandbox", sandbox)
    return app


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        headers={"User-Agent": "wechat-oa-auth"}, raise_for_status=False
    ) as session:
        app[keys.HTTP_SESSION] = session
        yield


async def wechat_client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    app[keys.WECHAT] = WeChatClient(
        app[keys.HTTP_SESSION],
        api_base=settings.api_base,
        appid=settings.wechat_appid,
        secret=settings.wechat_secret,
        timeout=settings.wechat_timeout,
        observe=app[keys.METRICS].wechat_call,
    )
    yield
