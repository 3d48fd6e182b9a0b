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
from service.account.follow import FollowCheck
from service.app_jwt.issuer import JwtIssuer
from service.app_jwt.signing_keys import ephemeral_es256_key
from service.clock import Clock, SystemClock
from service.config import Settings, jwt_key_set, oidc_signing_key, verify_files
from service.jssdk import routes as jssdk_routes
from service.jssdk.signing import JsSdk
from service.oidc import pages as oidc_pages
from service.oidc import routes as oidc_routes
from service.oidc.provider import OidcProvider
from service.openapi import ApiDocument
from service.ops import docs as ops_docs
from service.ops import health as ops_health
from service.ops import metrics as ops_metrics
from service.ops import status as ops_status
from service.pipeline.metrics import Metrics
from service.pipeline.middleware import service_middleware
from service.pipeline.origins import follows_request_origin
from service.pipeline.ratelimit import Limit, RateLimiter, parse_networks
from service.pipeline.static import static_routes
from service.push import routes as push_routes
from service.push.background import SHUTDOWN_GRACE, Background
from service.push.handling import PushHandler, message_crypto
from service.qr import routes as qr_routes
from service.qr.codes import QrCodes
from service.qr.login import LoginWaiters, QrSignIn
from service.shared_token import routes as shared_token_routes
from service.shared_token.handout import SharedToken
from service.signin import pages as signin_pages
from service.signin import routes as signin_routes
from service.signin.flow import SignIn
from service.store.connection import open_database
from service.store.queries import Store
from service.store.sealing import Sealer, parse_data_keys
from service.tokens.upkeep import token_upkeep_ctx
from service.wechat.client import WeChatClient

log = logging.getLogger(__name__)

# Each area's routes, in the order of the layout; /openapi.json lists them in this order too.
AREA_ROUTES = (
    shared_token_routes.routes,
    account_routes.routes,
    signin_routes.routes,
    signin_pages.routes,
    jssdk_routes.routes,
    oidc_routes.routes,
    oidc_pages.routes,
    qr_routes.routes,
    push_routes.routes,
    ops_health.routes,
    ops_status.routes,
    ops_metrics.routes,
    ops_docs.routes,
)

# Room for a query with every parameter at its 4096-character limit (percent-encoded), so
# over-long input meets the service's own 400 in the one error shape, not aiohttp's parser.
SERVER_LIMITS = {"max_line_size": 65536, "max_field_size": 65536}

TEMPLATES_DIR = resources.TEMPLATES_DIR
STATIC_DIR = resources.STATIC_DIR


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    mongo_client: Any = None,
    metrics_socket: socket.socket | None = None,
) -> web.Application:
    """The service. `mongo_client` lets several app instances share one store (tests);
    `metrics_socket`, bound already, serves METRICS_PORT's listener (tests)."""
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
    # WeChat's MP_verify_….txt files, read once; the middleware serves them.
    app[keys.VERIFY_FILES] = verify_files(settings)
    # Names this instance in leases, claims and status: host, process, and a random suffix.
    app[keys.INSTANCE_ID] = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    app[keys.QR_WAITERS] = LoginWaiters()
    # Long polls answer at shutdown's start, not when SHUTDOWN_TIMEOUT cuts them.
    app.on_shutdown.append(close_waiters)
    app[keys.JWT] = JwtIssuer(
        keys=jwt_key_set(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.jwt_ttl,
        clock=app[keys.CLOCK],
        appid=settings.wechat_appid,
    )

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings, mongo_client) as db:
            sealer = Sealer(parse_data_keys(settings.data_keys))
            store = Store(db, clock=app[keys.CLOCK], sealer=sealer)
            await store.ensure_indexes()
            app[keys.STORE] = store
            yield

    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(http_session_ctx)
    app.cleanup_ctx.append(wechat_client_ctx)
    app.cleanup_ctx.append(token_upkeep_ctx)
    app.cleanup_ctx.append(background_ctx)
    app.cleanup_ctx.append(area_services_ctx)
    if settings.metrics_port:
        # Last: a scrape reads the resources the contexts above make.
        app.cleanup_ctx.append(
            ops_metrics.metrics_listener(settings.host, settings.metrics_port, metrics_socket)
        )

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    for area_routes in AREA_ROUTES:
        if area_routes is ops_metrics.routes and settings.metrics_port:
            continue  # /metrics is served on METRICS_PORT alone (metrics_listener)
        app.add_routes(area_routes)
    app.add_routes(static_routes(STATIC_DIR))
    app[keys.API_DOCUMENT] = ApiDocument(settings.public_url, app.router)

    if settings.sandbox:
        from service.sandbox import SandboxConfig, create_sandbox_app

        sandbox = create_sandbox_app(
            SandboxConfig(
                appid=settings.wechat_appid,
                secret=settings.wechat_secret,
                authorized_domain=urlsplit(settings.public_url).hostname or "localhost",
                # Without PUBLIC_URL, the host each browser reaches it at too (origins.py).
                authorize_reached_host=follows_request_origin(settings),
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


async def close_waiters(app: web.Application) -> None:
    """on_shutdown: aiohttp runs it before waiting for in-flight requests, so each long poll
    answers (200, its current state) instead of being cut when SHUTDOWN_TIMEOUT runs out."""
    app[keys.QR_WAITERS].close()


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    app[keys.BACKGROUND] = Background()
    yield
    await app[keys.BACKGROUND].drain(SHUTDOWN_GRACE)


async def area_services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Each area's service, built once from the resources the contexts before it made."""
    settings, clock, store = app[keys.SETTINGS], app[keys.CLOCK], app[keys.STORE]
    wechat, base_tokens = app[keys.WECHAT], app[keys.BASE_TOKENS]
    app[keys.SHARED_TOKEN] = SharedToken(
        api_keys=settings.api_keys,
        keeper=base_tokens,
        store=store,
        clock=clock,
        on_handout=app[keys.METRICS].shared_token_handout,
    )
    sign_in = SignIn(settings=settings, store=store, wechat=wechat, jwt=app[keys.JWT])
    app[keys.SIGN_IN] = sign_in
    # ID tokens: the configured key, else (sandbox mode only) one made for this process.
    id_token_key = oidc_signing_key(settings) or (
        ephemeral_es256_key() if settings.sandbox else None
    )
    app[keys.OIDC] = OidcProvider(
        settings=settings, store=store, sign_in=sign_in, clock=clock, key=id_token_key
    )
    follow = FollowCheck(store=store, base_tokens=base_tokens, wechat=wechat)
    app[keys.FOLLOW] = follow
    app[keys.JSSDK] = JsSdk(settings=settings, tickets=app[keys.JSAPI_TICKETS], clock=clock)
    codes = QrCodes(
        store=store,
        base_tokens=base_tokens,
        wechat=wechat,
        clock=clock,
        daily_budget=settings.qrcode_daily_budget,
        owner=app[keys.INSTANCE_ID],
        # A claimant's create may first wait for the base token (LEASE_TTL plus a fetch).
        claim_ttl=settings.lease_ttl + 2 * settings.wechat_timeout,
    )
    app[keys.QR_CODES] = codes
    qr_sign_in = QrSignIn(
        settings=settings,
        store=store,
        codes=codes,
        follow=follow,
        jwt=app[keys.JWT],
        clock=clock,
        waiters=app[keys.QR_WAITERS],
    )
    app[keys.QR_SIGN_IN] = qr_sign_in
    app[keys.PUSH] = PushHandler(
        settings=settings,
        clock=clock,
        store=store,
        qr_sign_in=qr_sign_in,
        background=app[keys.BACKGROUND],
        crypto=message_crypto(settings),
        metrics=app[keys.METRICS],
    )
    yield


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
