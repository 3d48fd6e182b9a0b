"""create_sandbox_app(): the offline WeChat, mountable under /sandbox or served alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web

from service import resources
from service.clock import Clock, SystemClock
from service.errors import error_layer
from service.pipeline import routing
from service.pipeline.static import static_routes
from service.sandbox import api, control, pages, phone, qrconnect
from service.sandbox.faults import Faults
from service.sandbox.jsapi import JSAPI_KEY, JsapiTickets
from service.sandbox.pages import TEMPLATES_KEY
from service.sandbox.push import push_session_ctx
from service.sandbox.state import SANDBOX_KEY, SandboxAccount, SandboxConfig, SandboxWeChat

__all__ = [
    "SANDBOX_KEY",
    "Faults",
    "SandboxAccount",
    "SandboxConfig",
    "SandboxWeChat",
    "create_sandbox_app",
]

STATIC_DIR = resources.STATIC_DIR / "sandbox"


def create_sandbox_app(
    config: SandboxConfig,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    layer: routing.Layer = error_layer,
) -> web.Application:
    """WeChat's paths sit unchanged below wherever this app is mounted, so SDKs work as-is.

    `sleep` is how push retries wait (asyncio.sleep); tests pass one that moves a ManualClock.
    `layer` runs around each handler: the error shape alone, or the service's when mounted.
    """
    app = web.Application(client_max_size=64 * 1024)
    wechat = SandboxWeChat(config, clock or SystemClock())
    if sleep is not None:
        wechat.sleep = sleep
    app[SANDBOX_KEY] = wechat
    app[JSAPI_KEY] = JsapiTickets()  # the JS-SDK's tickets (getticket) and wx.config's check
    app.cleanup_ctx.append(push_session_ctx)  # the session event pushes go out on (§10)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(resources.TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        app_key=TEMPLATES_KEY,
    )
    for area_routes in (api.routes, pages.routes, control.routes, phone.routes, qrconnect.routes):
        routing.add_routes(app, area_routes, layer)
    routing.add_routes(app, static_routes(STATIC_DIR, "/_sandbox/static", "sandbox_static"), layer)
    routing.add_unmatched(app, layer)  # last: what no route above takes
    app.on_shutdown.append(close_website_polls)  # long polls answer rather than hang on
    return app


async def close_website_polls(app: web.Application) -> None:
    app[SANDBOX_KEY].website_logins.close()
