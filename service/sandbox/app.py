"""create_sandbox_app(): the offline WeChat, mountable under /sandbox or served alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web

from service import resources
from service.clock import Clock, SystemClock
from service.errors import error_middleware
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
) -> web.Application:
    """WeChat's paths sit unchanged below wherever this app is mounted, so SDKs work as-is.

    `sleep` is how push retries wait (asyncio.sleep); tests pass one that moves a ManualClock.
    """
    app = web.Application(middlewares=[error_middleware], client_max_size=64 * 1024)
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
    app.add_routes(api.routes)
    app.add_routes(pages.routes)
    app.add_routes(control.routes)
    app.add_routes(phone.routes)
    app.add_routes(qrconnect.routes)
    app.on_shutdown.append(close_website_polls)  # long polls answer rather than hang on
    app.router.add_static("/_sandbox/static/", STATIC_DIR, name="sandbox_static")
    return app


async def close_website_polls(app: web.Application) -> None:
    app[SANDBOX_KEY].website_logins.close()
