"""create_app(): resources as cleanup contexts, templates, routes in the service's layer; no I/O at
import."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from service import keys, resources
from service.account import routes as account_routes
from service.app_jwt.issuer import JwtIssuer
from service.clock import Clock, SystemClock
from service.config import Settings, jwt_key_set, verify_files
from service.jssdk import routes as jssdk_routes
from service.oidc import pages as oidc_pages
from service.oidc import routes as oidc_routes
from service.openapi import ApiDocument
from service.ops import docs as ops_docs
from service.ops import health as ops_health
from service.ops import metrics as ops_metrics
from service.ops import status as ops_status
from service.pipeline import routing
from service.pipeline.layer import service_layer
from service.pipeline.metrics import Metrics
from service.pipeline.origins import follows_request_origin
from service.pipeline.ratelimit import Limit, RateLimiter, parse_networks
from service.pipeline.static import static_routes
from service.push import routes as push_routes
from service.push.background import SHUTDOWN_GRACE, Background
from service.qr import routes as qr_routes
from service.qr.login import LoginWaiters
from service.shared_token import routes as shared_token_routes
from service.signin import pages as signin_pages
from service.signin import routes as signin_routes
from service.store.connection import open_database
from service.store.queries import Store
from service.store.sealing import Sealer, parse_data_keys
from service.wiring import accounts_ctx

if TYPE_CHECKING:
    from service.sandbox import SandboxConfig

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
    # No middleware: each route's handler runs inside the service's layer (pipeline/routing.py).
    app = web.Application(client_max_size=settings.max_body_bytes, handler_args=SERVER_LIMITS)
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
    # WeChat's MP_verify_….txt files, read once; the service's layer serves them.
    app[keys.VERIFY_FILES] = verify_files(settings)
    layer = app[keys.LAYER] = service_layer(app)  # reads the keys set above
    # Names this instance in leases, claims and status: host, process, and a random suffix.
    app[keys.INSTANCE_ID] = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    app[keys.QR_WAITERS] = LoginWaiters(app[keys.CLOCK])
    # Long polls answer at shutdown's start, not when SHUTDOWN_TIMEOUT cuts them.
    app.on_shutdown.append(close_waiters)
    app[keys.JWT] = JwtIssuer(
        keys=jwt_key_set(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.jwt_ttl,
        clock=app[keys.CLOCK],
        # Verifies every account's JWTs; issues none itself (each account's issuer does).
        appid=settings.all_accounts[0].appid if settings.all_accounts else "",
    )

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings, mongo_client) as db:
            sealer = Sealer(parse_data_keys(settings.data_keys))
            default_appid = settings.all_accounts[0].appid if settings.all_accounts else ""
            store = Store(db, clock=app[keys.CLOCK], sealer=sealer, appid=default_appid)
            # Records from before several accounts belong to the first (queries.py).
            await store.ensure_indexes(default_appid=default_appid)
            app[keys.STORE] = store
            yield

    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(http_session_ctx)
    app.cleanup_ctx.append(background_ctx)
    app.cleanup_ctx.append(accounts_ctx)
    app.cleanup_ctx.append(qr_watch_ctx)
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
        routing.add_routes(app, area_routes, layer)
    routing.add_routes(app, static_routes(STATIC_DIR), layer)
    app[keys.API_DOCUMENT] = ApiDocument(settings.public_url, app.router)

    if settings.sandbox:
        from service.sandbox import create_sandbox_app

        # The emulator's requests pass the service's layer, as every request the service serves.
        sandbox = create_sandbox_app(_sandbox_config(settings), app[keys.CLOCK], layer=layer)
        app.add_subapp("/sandbox", sandbox)
    routing.add_unmatched(app, layer)  # last: what no route above takes
    return app


def _sandbox_config(settings: Settings) -> SandboxConfig:
    """The emulator knows the service's accounts: its Official Accounts (sandbox mode always has
    the default one) and its website app, with their development secrets."""
    from service.sandbox import SandboxAccount, SandboxConfig

    # The emulator pushes to the service over loopback, as WeChat would over the net:
    # /wechat/message for the first Official Account, /wechat/message/<name> for the others.
    loopback = f"http://127.0.0.1:{settings.port}/wechat/message"
    first, *others = [account for account in settings.all_accounts if account.official]
    websites = [account for account in settings.all_accounts if not account.official]
    config = SandboxConfig(
        appid=first.appid,
        secret=first.secret,
        authorized_domain=urlsplit(settings.public_url).hostname or "localhost",
        # Without PUBLIC_URL, the host each browser reaches it at too (origins.py).
        authorize_reached_host=follows_request_origin(settings),
        token=first.token,
        aes_key=first.aes_key,
        message_url=loopback,
        message_mode=first.message_mode,
        more_accounts=tuple(
            SandboxAccount(
                appid=account.appid,
                secret=account.secret,
                token=account.token,
                aes_key=account.aes_key,
                message_url=f"{loopback}/{account.name}",
                message_mode=account.message_mode,
            )
            for account in others
        ),
    )
    if websites:  # else the emulator's own website app, the same as sandbox mode's `web`
        config = dataclasses.replace(
            config, website_appid=websites[0].appid, website_secret=websites[0].secret
        )
    return config


async def qr_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """The long polls of this instance learn of sign-in sessions changed on others."""
    watch = asyncio.create_task(app[keys.QR_WAITERS].watch(app[keys.STORE], app[keys.CLOCK]))
    yield
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch


async def close_waiters(app: web.Application) -> None:
    """on_shutdown: aiohttp runs it before waiting for in-flight requests, so each long poll
    answers (200, its current state) instead of being cut when SHUTDOWN_TIMEOUT runs out."""
    app[keys.QR_WAITERS].close()


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    app[keys.BACKGROUND] = Background()
    yield
    await app[keys.BACKGROUND].drain(SHUTDOWN_GRACE)


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        headers={"User-Agent": "wechat-oa-auth"}, raise_for_status=False
    ) as session:
        app[keys.HTTP_SESSION] = session
        yield
